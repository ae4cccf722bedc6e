//! How pixels become network inputs ([`Normalization`]) and how training varies them
//! ([`Augment`]): both are data of a run, read from its `train.toml`.

use serde::{Deserialize, Serialize};

use super::split::Split;
use crate::rng::SplitMix64;

/// Per-channel normalisation of pixels: input channel `c` of pixel byte `p` is
/// `(p / 255 - mean[c]) / std[c]` in `f32`, torchvision's `ToTensor` then `Normalize`. A list of
/// one value applies to every channel. The default (mean 0, std 1) is exactly `p / 255`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            mean: vec![0.0],
            std: vec![1.0],
        }
    }
}

impl Normalization {
    /// ImageNet's per-channel mean and std (RGB), which torchvision's pretrained weights expect.
    pub const IMAGENET: ([f64; 3], [f64; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

    /// The normalisation with these per-channel values (`None`: 0 and 1); each list holds one
    /// value or one per input channel, and every std is positive (checked by
    /// [`crate::train::TrainConfig::check_input`]).
    pub fn new(mean: Option<&[f64]>, std: Option<&[f64]>) -> Normalization {
        let f32s = |v: Option<&[f64]>, none: f32| v.map_or(vec![none], |v| v.iter().map(|&x| x as f32).collect());
        Normalization {
            mean: f32s(mean, 0.0),
            std: f32s(std, 1.0),
        }
    }

    /// Whether it is the default, `p / 255`.
    pub fn is_identity(&self) -> bool {
        *self == Normalization::default()
    }

    /// Mean and std of input channel `c`.
    pub fn channel(&self, c: usize) -> (f32, f32) {
        let at = |v: &[f32]| {
            v.get(c)
                .or(v.first())
                .copied()
                .expect("a normalisation holds at least one value")
        };
        (at(&self.mean), at(&self.std))
    }

    /// The values of every byte in each of `channels` input channels: `table[c][p]`.
    pub fn table(&self, channels: usize) -> Vec<[f32; 256]> {
        (0..channels)
            .map(|c| {
                let (m, s) = self.channel(c);
                std::array::from_fn(|p| (p as f32 / 255.0 - m) / s)
            })
            .collect()
    }
}

/// Random variations of training images, drawn per image and epoch from the run's seed (so a
/// run reproduces, and resumes, bit for bit). Evaluation never augments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Pad every side with this many zero pixels, then cut a window of the image's size at a
    /// uniformly random offset (0: no crop).
    pub crop: usize,
}

impl Augment {
    /// The examples at `indices` as a new split, each image varied with draws from `rng`: first
    /// the flip (if on), then the crop's row and column offsets (if on).
    pub fn apply(&self, split: &Split, indices: &[usize], rng: &mut SplitMix64) -> Split {
        let mut out = split.subset(indices);
        let (rows, cols, plane) = (split.rows, split.cols, split.rows * split.cols);
        let size = split.channels * plane;
        for image in out.pixels.chunks_mut(size.max(1)) {
            let flip = self.flip && rng.below(2) == 1;
            let (dy, dx) = if self.crop > 0 {
                let span = 2 * self.crop + 1;
                (rng.below(span), rng.below(span))
            } else {
                (0, 0)
            };
            let source = image.to_vec();
            // Output (y, x) reads the padded image at (y + dy, x + dx): the image at
            // (y + dy - crop, x + dx - crop), or a zero outside it.
            let at = |v: usize, d: usize, size: usize| (v + d).checked_sub(self.crop).filter(|&s| s < size);
            for y in 0..rows {
                for x in 0..cols {
                    let from = at(y, dy, rows).zip(at(x, dx, cols));
                    for c in 0..split.channels {
                        image[c * plane + y * cols + x] = from.map_or(0, |(sy, sx)| {
                            let sx = if flip { cols - 1 - sx } else { sx };
                            source[c * plane + sy * cols + sx]
                        });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalisation_is_pixels_over_255_and_channels_broadcast() {
        let t = Normalization::default().table(2);
        for p in 0..=255u8 {
            assert_eq!(t[1][usize::from(p)].to_bits(), (f32::from(p) / 255.0).to_bits());
        }
        let n = Normalization::new(Some(&[0.5]), Some(&[0.25, 0.5]));
        assert_eq!(n.channel(0), (0.5, 0.25));
        assert_eq!(n.channel(1), (0.5, 0.5));
        assert_eq!(n.table(2)[1][255], 1.0);
        assert!(!n.is_identity() && Normalization::new(None, None).is_identity());
    }

    #[test]
    fn augmentation_flips_and_crops_with_zero_padding() {
        // One 2-channel 2x3 image: 1 2 3 / 4 5 6, and the same plus 10.
        let split = Split {
            channels: 2,
            rows: 2,
            cols: 3,
            pixels: vec![1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16],
            labels: vec![7],
        };
        let flip = Augment { flip: true, crop: 0 };
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = SplitMix64::new(1);
        for _ in 0..20 {
            seen.insert(flip.apply(&split, &[0], &mut rng).pixels);
        }
        let mirrored = vec![3, 2, 1, 6, 5, 4, 13, 12, 11, 16, 15, 14];
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [split.pixels.clone(), mirrored]);
        let crop = Augment { flip: false, crop: 1 };
        let mut shifts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let out = crop.apply(&split, &[0], &mut rng);
            assert_eq!(out.labels, [7]);
            shifts.insert(out.pixels);
        }
        // 3 x 3 offsets, each a distinct shifted image; offset (0, 0) moves the image down-right.
        assert_eq!(shifts.len(), 9);
        assert!(shifts.contains(&vec![0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 11, 12]));
        assert!(shifts.contains(&split.pixels));
        // The same seed, the same images.
        let both = Augment { flip: true, crop: 1 };
        let draw = |seed| both.apply(&split, &[0, 0, 0], &mut SplitMix64::new(seed)).pixels;
        assert_eq!(draw(5), draw(5));
    }
}
