//! CIFAR-10 in its binary version: `data_batch_1.bin` .. `data_batch_5.bin` (train) and
//! `test_batch.bin` (test), each a run of records of one label byte (0..=9) and 3,072 pixel
//! bytes, the red, green and blue 32x32 planes (row-major) in that order. The release ships them
//! in a gzip-compressed tar file under `cifar-10-batches-bin/`; [`unpack`] takes them out.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::split::Split;
use crate::error::{Error, Result};
use crate::fsio;

/// Number of classes of CIFAR-10.
pub const CLASSES: usize = 10;

/// Image side of CIFAR-10.
pub const SIDE: usize = 32;

/// Bytes of one record: the label, then three 32x32 planes.
const RECORD: usize = 1 + 3 * SIDE * SIDE;

/// The training batches, in the order their records are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test batch.
pub const TEST_FILE: &str = "test_batch.bin";

/// The folder inside the release's tar file that holds the batches.
const RELEASE_DIR: &str = "cifar-10-batches-bin";

/// Decodes the records of one batch file; `name` names it in errors.
pub fn read_batch(bytes: &[u8], name: &str, split: &mut Split) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::Format {
            path: name.to_string(),
            what: "CIFAR-10 batch".into(),
            expected: format!("a whole number (at least 1) of {RECORD}-byte records"),
            found: format!("{} bytes", bytes.len()),
        });
    }
    for (i, record) in bytes.chunks(RECORD).enumerate() {
        if usize::from(record[0]) >= CLASSES {
            return Err(Error::Format {
                path: name.to_string(),
                what: format!("label of record {i}"),
                expected: format!("a class below {CLASSES}"),
                found: record[0].to_string(),
            });
        }
        split.labels.push(record[0]);
        split.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// The directory holding the batches: `dir` itself, or the release's `cifar-10-batches-bin/`
/// inside it.
fn batches_dir(dir: &Path) -> PathBuf {
    let inner = dir.join(RELEASE_DIR);
    if !dir.join(TEST_FILE).is_file() && inner.join(TEST_FILE).is_file() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// Loads `(train, test)` from `dir` (or `dir/cifar-10-batches-bin`): all five training batches
/// and the test batch must be there.
pub fn load(dir: &Path) -> Result<(Split, Split)> {
    let dir = batches_dir(dir);
    let read = |name: &str, split: &mut Split| -> Result<()> {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::Format {
                path: dir.display().to_string(),
                what: "CIFAR-10 directory".into(),
                expected: format!("{} and {TEST_FILE}", TRAIN_FILES.join(", ")),
                found: format!("no {name}"),
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
        read_batch(&bytes, &path.display().to_string(), split)
    };
    let empty = || Split {
        channels: 3,
        rows: SIDE,
        cols: SIDE,
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    let (mut train, mut test) = (empty(), empty());
    for name in TRAIN_FILES {
        read(name, &mut train)?;
    }
    read(TEST_FILE, &mut test)?;
    Ok((train, test))
}

/// Writes the batches found in the gzip-compressed tar file `tarball` into `dest` (each file
/// atomically), and returns how many; it is an error when any of the six is missing. Entries
/// are matched by file name, whatever folder holds them; nothing else is written.
pub fn unpack(tarball: &Path, dest: &Path) -> Result<usize> {
    let file = std::fs::File::open(tarball).map_err(|e| Error::io("opening", tarball, e))?;
    let mut tar = Vec::new();
    GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut tar)
        .map_err(|e| Error::io("decompressing", tarball, e))?;
    let wanted: Vec<&str> = TRAIN_FILES.iter().copied().chain([TEST_FILE]).collect();
    let mut written = Vec::new();
    for (name, bytes) in tar_entries(&tar, &tarball.display().to_string())? {
        let base = name.rsplit('/').next().unwrap_or_default();
        if let Some(&w) = wanted.iter().find(|&&w| w == base) {
            fsio::write_atomic(&dest.join(w), bytes)?;
            written.push(w);
        }
    }
    if let Some(missing) = wanted.iter().find(|w| !written.contains(*w)) {
        return Err(Error::Format {
            path: tarball.display().to_string(),
            what: "CIFAR-10 archive".into(),
            expected: format!("{} and {TEST_FILE}", TRAIN_FILES.join(", ")),
            found: format!("no {missing}"),
        });
    }
    Ok(written.len())
}

/// The regular files of a tar archive (POSIX ustar or GNU) as `(path, contents)`; `name` names the
/// archive in errors.
fn tar_entries<'a>(tar: &'a [u8], name: &str) -> Result<Vec<(String, &'a [u8])>> {
    let bad = |what: &str, found: String| Error::Format {
        path: name.to_string(),
        what: what.to_string(),
        expected: "a tar archive".into(),
        found,
    };
    let field = |header: &'a [u8], range: std::ops::Range<usize>| {
        let f = &header[range];
        &f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())]
    };
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size_text = String::from_utf8_lossy(field(header, 124..136)).trim().to_string();
        let size = usize::from_str_radix(&size_text, 8)
            .map_err(|_| bad(&format!("size of the entry at byte {at}"), format!("{size_text:?}")))?;
        let start = at + 512;
        let Some(body) = start.checked_add(size).and_then(|end| tar.get(start..end)) else {
            return Err(bad(
                &format!("entry at byte {at}"),
                format!("{size} bytes announced, {} left", tar.len() - start),
            ));
        };
        let mut path = String::from_utf8_lossy(field(header, 0..100)).into_owned();
        let prefix = field(header, 345..500);
        if &header[257..262] == b"ustar" && !prefix.is_empty() {
            path = format!("{}/{path}", String::from_utf8_lossy(prefix));
        }
        if matches!(header[156], b'0' | 0) {
            entries.push((path, body));
        }
        at = start + size.div_ceil(512) * 512;
    }
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ustar header and body for a regular file `path` holding `bytes`.
    pub(crate) fn tar_file(path: &str, bytes: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", bytes.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h.extend_from_slice(bytes);
        h.resize(h.len().div_ceil(512) * 512, 0);
        h
    }

    /// The gzip-compressed tar file of a release whose batches are `batches` (train 1..5, test).
    pub(crate) fn tarball(batches: &[Vec<u8>; 6]) -> Vec<u8> {
        use std::io::Write;
        let mut tar = tar_file("cifar-10-batches-bin/batches.meta.txt", b"airplane\n");
        for (name, bytes) in TRAIN_FILES.iter().chain([&TEST_FILE]).zip(batches) {
            tar.extend(tar_file(&format!("{RELEASE_DIR}/{name}"), bytes));
        }
        tar.extend([0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    /// One record of class `label` whose planes are filled with `rgb`.
    fn record(label: u8, rgb: [u8; 3]) -> Vec<u8> {
        std::iter::once(label)
            .chain(rgb.iter().flat_map(|&v| std::iter::repeat_n(v, SIDE * SIDE)))
            .collect()
    }

    #[test]
    fn unpacks_and_loads_a_release() {
        let tmp = tempfile::tempdir().unwrap();
        let batches: [Vec<u8>; 6] = std::array::from_fn(|i| record(i as u8, [i as u8, 7, 200]));
        std::fs::write(tmp.path().join("c.tar.gz"), tarball(&batches)).unwrap();
        let dest = tmp.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        assert_eq!(unpack(&tmp.path().join("c.tar.gz"), &dest).unwrap(), 6);
        assert!(!dest.join("batches.meta.txt").exists());
        let (train, test) = load(&dest).unwrap();
        assert_eq!((train.len(), test.len(), train.channels), (5, 1, 3));
        assert_eq!(train.labels, [0, 1, 2, 3, 4]);
        let image = test.image(0);
        assert_eq!((image[0], image[SIDE * SIDE], image[2 * SIDE * SIDE]), (5, 7, 200));
    }

    #[test]
    fn bad_batches_and_archives_are_errors_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("no data_batch_1.bin"), "{e}");
        for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
            std::fs::write(tmp.path().join(name), record(1, [0; 3])).unwrap();
        }
        assert!(load(tmp.path()).is_ok());
        std::fs::write(tmp.path().join(TEST_FILE), [0u8; 100]).unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("test_batch.bin") && e.contains("3073-byte records") && e.contains("100 bytes"),
            "{e}"
        );
        std::fs::write(tmp.path().join(TEST_FILE), record(10, [0; 3])).unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("label of record 0") && e.contains("10"), "{e}");
        let mut batches: [Vec<u8>; 6] = std::array::from_fn(|_| record(0, [0; 3]));
        batches[5] = Vec::new();
        let mut gz = tarball(&batches);
        std::fs::write(tmp.path().join("ok.tar.gz"), &gz).unwrap();
        assert_eq!(unpack(&tmp.path().join("ok.tar.gz"), tmp.path()).unwrap(), 6);
        gz.truncate(gz.len() / 2);
        std::fs::write(tmp.path().join("cut.tar.gz"), &gz).unwrap();
        let e = crate::error::error_chain(&unpack(&tmp.path().join("cut.tar.gz"), tmp.path()).unwrap_err());
        assert!(e.contains("cut.tar.gz"), "{e}");
    }
}
