//! IDX files (the MNIST format), gzip-compressed or raw, read and written over any stream.
//!
//! An IDX file is a 4-byte magic number `0x00 0x00 dtype rank`, `rank` big-endian u32
//! dimensions, then the elements. maxprune reads unsigned bytes only: labels (magic 2049,
//! rank 1) and images (magic 2051, rank 3). Every check names the stream, what was expected and
//! what was found.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::{Error, Result};

/// Magic number of an IDX file of unsigned-byte labels (rank 1).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of unsigned-byte images (rank 3).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// The largest IDX file maxprune reads, compressed or not: 2 GiB (Fashion-MNIST's training
/// images are 47 MB uncompressed).
pub const MAX_IDX_BYTES: u64 = 2 << 30;

/// Images as stored in an IDX file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of rows of each image.
    pub rows: usize,
    /// Number of columns of each image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The number of images.
    pub fn count(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols).max(1)
    }
}

fn format_err(name: &str, what: &str, expected: impl ToString, found: impl ToString) -> Error {
    Error::Format {
        path: name.to_string(),
        what: what.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Reads the whole stream, transparently un-gzipping it when it starts with the gzip magic
/// (every member of a multi-member gzip file, as `gzip -d` does). Either form may hold at most
/// [`MAX_IDX_BYTES`], so a small file that inflates without end is refused, not read until the
/// memory runs out.
fn read_all(reader: impl Read, name: &str) -> Result<Vec<u8>> {
    read_at_most(reader, name, MAX_IDX_BYTES)
}

fn read_at_most(reader: impl Read, name: &str, limit: u64) -> Result<Vec<u8>> {
    let bounded = |mut r: Box<dyn Read + '_>, what: &str| {
        let mut out = Vec::new();
        r.by_ref()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| format_err(name, what, format!("a complete {what}"), e))?;
        if out.len() as u64 > limit {
            return Err(format_err(
                name,
                "size",
                format!("at most {limit} bytes (uncompressed)"),
                "more",
            ));
        }
        Ok(out)
    };
    let raw = bounded(Box::new(reader), "stream")?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        bounded(Box::new(MultiGzDecoder::new(raw.as_slice())), "gzip stream")
    } else {
        Ok(raw)
    }
}

/// Parses the header of `bytes`, checking magic and rank, and returns the dims and the body.
fn parse(bytes: &[u8], name: &str, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let rank = (magic & 0xff) as usize;
    let header_len = 4 + 4 * rank;
    if bytes.len() < 4 {
        return Err(format_err(
            name,
            "header",
            format!("a 4-byte magic number ({magic})"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let found_magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found_magic != magic {
        return Err(format_err(name, "magic number", magic, found_magic));
    }
    if bytes.len() < header_len {
        return Err(format_err(
            name,
            "header",
            format!("{header_len} bytes ({rank} dimensions)"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let dims_text = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let body = &bytes[header_len..];
    let Some(expected) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
        return Err(format_err(
            name,
            "declared dims",
            "dims whose product is a byte count",
            format!("{dims_text} (overflows)"),
        ));
    };
    if body.len() != expected {
        return Err(format_err(
            name,
            "data length",
            format!("{expected} bytes for declared dims {dims_text}"),
            format!("{} bytes", body.len()),
        ));
    }
    Ok((dims, body.to_vec()))
}

/// Reads an IDX label file (magic 2049), checking every label is below `classes`.
///
/// `name` is used in error messages (usually the file's path).
pub fn read_labels(reader: impl Read, name: &str, classes: usize) -> Result<Vec<u8>> {
    let bytes = read_all(reader, name)?;
    let (_, labels) = parse(&bytes, name, LABELS_MAGIC)?;
    if let Some((i, &bad)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
        return Err(format_err(
            name,
            &format!("label {i}"),
            format!("a class in 0..{classes}"),
            bad,
        ));
    }
    Ok(labels)
}

/// Reads an IDX image file (magic 2051).
///
/// `name` is used in error messages (usually the file's path).
///
/// ```
/// use maxprune::data::idx::{IdxImages, read_images, write_images};
///
/// let images = IdxImages { rows: 2, cols: 3, pixels: (0..12).collect() };
/// let mut file = Vec::new();
/// write_images(&mut file, &images, true).unwrap(); // gzip, as the datasets ship
/// let back = read_images(&file[..], "two.idx.gz").unwrap();
/// assert_eq!((back.count(), back.pixels), (2, images.pixels));
/// let e = read_images(&file[..5], "cut.idx.gz").unwrap_err().to_string();
/// assert!(e.contains("cut.idx.gz"), "{e}");
/// ```
pub fn read_images(reader: impl Read, name: &str) -> Result<IdxImages> {
    let bytes = read_all(reader, name)?;
    let (dims, pixels) = parse(&bytes, name, IMAGES_MAGIC)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(format_err(
            name,
            "image size",
            "positive rows and columns",
            format!("{}x{}", dims[1], dims[2]),
        ));
    }
    Ok(IdxImages {
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

fn write_idx(mut writer: impl Write, magic: u32, dims: &[usize], body: &[u8], gzip: bool) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(4 + 4 * dims.len() + body.len());
    bytes.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| std::io::Error::other("IDX dimension exceeds u32"))?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(body);
    if gzip {
        let mut enc = GzEncoder::new(writer, Compression::best());
        enc.write_all(&bytes)?;
        enc.finish()?.flush()
    } else {
        writer.write_all(&bytes)?;
        writer.flush()
    }
}

/// Writes labels as an IDX file (magic 2049), gzip-compressed when `gzip` is set.
pub fn write_labels(writer: impl Write, labels: &[u8], gzip: bool) -> std::io::Result<()> {
    write_idx(writer, LABELS_MAGIC, &[labels.len()], labels, gzip)
}

/// Writes images as an IDX file (magic 2051), gzip-compressed when `gzip` is set.
pub fn write_images(writer: impl Write, images: &IdxImages, gzip: bool) -> std::io::Result<()> {
    let dims = [images.count(), images.rows, images.cols];
    write_idx(writer, IMAGES_MAGIC, &dims, &images.pixels, gzip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn images(count: usize) -> IdxImages {
        IdxImages {
            rows: 3,
            cols: 2,
            pixels: (0..count * 6).map(|i| (i * 7 % 256) as u8).collect(),
        }
    }

    fn labels_bytes(labels: &[u8], gzip: bool) -> Vec<u8> {
        let mut out = Vec::new();
        write_labels(&mut out, labels, gzip).unwrap();
        out
    }

    proptest! {
        #[test]
        fn write_then_read_is_identity(labels in proptest::collection::vec(0u8..10, 0..50), gzip: bool) {
            let bytes = labels_bytes(&labels, gzip);
            prop_assert_eq!(read_labels(bytes.as_slice(), "l", 10).unwrap(), labels.clone());
            let imgs = images(labels.len());
            let mut out = Vec::new();
            write_images(&mut out, &imgs, gzip).unwrap();
            prop_assert_eq!(read_images(out.as_slice(), "i").unwrap(), imgs);
        }
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn bad_magic_is_named() {
        let bytes = labels_bytes(&[1, 2], false);
        let e = err(read_images(bytes.as_slice(), "x.idx"));
        assert!(
            e.contains("x.idx") && e.contains("magic number") && e.contains("2051") && e.contains("2049"),
            "{e}"
        );
    }

    #[test]
    fn truncated_is_named() {
        let mut bytes = Vec::new();
        write_images(&mut bytes, &images(4), false).unwrap();
        bytes.truncate(bytes.len() - 5);
        let e = err(read_images(bytes.as_slice(), "t.idx"));
        assert!(
            e.contains("data length") && e.contains("24 bytes") && e.contains("found 19 bytes"),
            "{e}"
        );
        let e = err(read_images(&bytes[..10], "t.idx"));
        assert!(e.contains("header") && e.contains("16 bytes"), "{e}");
    }

    #[test]
    fn regression_dims_whose_product_overflows_are_refused_not_read_as_0_images() {
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [65_536u32, 16_777_216, 16_777_216] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        let e = err(read_images(bytes.as_slice(), "big.idx"));
        assert!(
            e.contains("big.idx") && e.contains("65536x16777216x16777216 (overflows)"),
            "{e}"
        );
    }

    #[test]
    fn a_stream_or_gzip_that_inflates_past_the_limit_is_refused() {
        let zeros = vec![0u8; 10_000];
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 100);
        for bytes in [&zeros, &gz] {
            let e = read_at_most(bytes.as_slice(), "f.gz", 9_999).unwrap_err().to_string();
            assert!(e.contains("f.gz") && e.contains("at most 9999 bytes"), "{e}");
            assert_eq!(read_at_most(bytes.as_slice(), "f.gz", 10_000).unwrap(), zeros);
        }
    }

    #[test]
    fn regression_a_multi_member_gzip_reads_whole() {
        let plain = labels_bytes(&[1, 2, 3, 4, 5, 6], false);
        let member = |b: &[u8]| {
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(b).unwrap();
            gz.finish().unwrap()
        };
        let two = [member(&plain[..9]), member(&plain[9..])].concat();
        assert_eq!(read_labels(two.as_slice(), "l.gz", 10).unwrap(), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn truncated_gzip_is_named() {
        let bytes = labels_bytes(&[1; 100], true);
        let e = err(read_labels(&bytes[..bytes.len() / 2], "g.gz", 10));
        assert!(e.contains("g.gz") && e.contains("gzip"), "{e}");
    }

    #[test]
    fn count_mismatch_is_named() {
        let mut bytes = labels_bytes(&[1, 2, 3], false);
        bytes[7] = 5; // declare 5 labels, hold 3
        let e = err(read_labels(bytes.as_slice(), "c.idx", 10));
        assert!(e.contains("5 bytes") && e.contains("found 3 bytes"), "{e}");
    }

    #[test]
    fn label_out_of_range_is_named() {
        let bytes = labels_bytes(&[1, 12, 3], false);
        let e = err(read_labels(bytes.as_slice(), "r.idx", 10));
        assert!(
            e.contains("label 1") && e.contains("0..10") && e.contains("found 12"),
            "{e}"
        );
    }

    #[test]
    fn empty_file_is_named() {
        let e = err(read_labels(&[][..], "empty.idx", 10));
        assert!(e.contains("empty.idx") && e.contains("found 0 bytes"), "{e}");
    }
}
