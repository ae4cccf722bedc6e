//! Where piece `j` of maxout unit `u` lives. The only code that maps units and pieces to tensor
//! indices, including the channel-to-feature mapping of a `flatten` between a conv and a dense
//! layer.

use super::spec::Pieces;

/// Index, in the producer's outputs (dense rows or conv channels), of piece `j` of unit `u`.
///
/// Pieces are contiguous: unit `u` owns `offset(u) .. offset(u) + count(u)`.
///
/// # Panics
/// If `u` or `j` is out of range (an internal invariant: callers validate plans first).
pub fn piece_index(pieces: &Pieces, u: usize, j: usize) -> usize {
    assert!(
        u < pieces.units() && j < pieces.count(u),
        "piece ({u}, {j}) out of range"
    );
    unit_offset(pieces, u) + j
}

/// Index of unit `u`'s first piece.
pub fn unit_offset(pieces: &Pieces, u: usize) -> usize {
    match pieces {
        Pieces::Uniform { k, .. } => u * k,
        Pieces::Ragged { per_unit } => per_unit[..u].iter().sum(),
    }
}

/// For a ragged layer, the gather index that lays the producer's outputs out as
/// `[units, k_max]`, with `padding` (the index of an extra `-inf` column) filling the slots of
/// units that have fewer than `k_max` pieces. Slot `(u, j)` is at `u * k_max + j`.
pub fn padded_gather_index(pieces: &Pieces, padding: usize) -> Vec<usize> {
    let k_max = pieces.k_max();
    let mut index = Vec::with_capacity(pieces.units() * k_max);
    let mut offset = 0;
    for u in 0..pieces.units() {
        let c = pieces.count(u);
        index.extend(offset..offset + c);
        index.extend(std::iter::repeat_n(padding, k_max - c));
        offset += c;
    }
    index
}

/// The flattened feature indices of `channels` (in order) of a `[channels_total, h, w]` map,
/// flattened in `C, H, W` order: the inputs of a dense consumer that belong to those channels.
pub fn flat_features(channels: &[usize], spatial: usize) -> Vec<usize> {
    channels.iter().flat_map(|&c| c * spatial..(c + 1) * spatial).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_ragged_offsets() {
        let p = Pieces::Uniform { units: 3, k: 4 };
        assert_eq!(piece_index(&p, 2, 1), 9);
        let r = Pieces::from_counts(vec![2, 1, 3]);
        assert_eq!(piece_index(&r, 2, 0), 3);
        assert_eq!(padded_gather_index(&r, 6), vec![0, 1, 6, 2, 6, 6, 3, 4, 5]);
        assert_eq!(padded_gather_index(&p, 12), (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn flatten_mapping() {
        assert_eq!(flat_features(&[0, 2], 3), vec![0, 1, 2, 6, 7, 8]);
    }
}
