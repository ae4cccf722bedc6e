//! Downloads of the named datasets: every file is streamed to a temporary file beside its
//! destination while its SHA-256 is computed, checked, and only then renamed into place.
//! CIFAR-10's archive is then unpacked beside itself ([`fetch`]).

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::dataset::DatasetName;
use crate::error::{BoxError, Error, Result, error_chain};
use crate::fsio;
use crate::progress::Observer;

/// One file of a dataset, with the SHA-256 of its published bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, appended to a mirror's base address.
    pub name: &'static str,
    /// Lower-case hex SHA-256.
    pub sha256: &'static str,
}

/// The mirrors (base addresses, tried in order) and files of a downloadable dataset.
pub fn sources(name: &DatasetName) -> Option<(&'static [&'static str], Vec<RemoteFile>)> {
    let f = |name, sha256| RemoteFile { name, sha256 };
    match name {
        DatasetName::Mnist => Some((
            &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            vec![
                f(
                    "train-images-idx3-ubyte.gz",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                f(
                    "train-labels-idx1-ubyte.gz",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                f(
                    "t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                f(
                    "t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            ],
        )),
        DatasetName::FashionMnist => Some((
            &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            vec![
                f(
                    "train-images-idx3-ubyte.gz",
                    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                ),
                f(
                    "train-labels-idx1-ubyte.gz",
                    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                ),
                f(
                    "t10k-images-idx3-ubyte.gz",
                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                ),
                f(
                    "t10k-labels-idx1-ubyte.gz",
                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                ),
            ],
        )),
        DatasetName::Cifar10(_) => Some((
            &["https://www.cs.toronto.edu/~kriz/"],
            vec![f(
                CIFAR10_ARCHIVE,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            )],
        )),
        _ => None,
    }
}

/// The file name of CIFAR-10's binary release.
const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// Downloads the `files` of dataset `name` into `dest` ([`fetch_files`]) and leaves them ready to
/// load: CIFAR-10's archive (the first file) is unpacked into `dest` as well.
pub fn fetch(
    name: &DatasetName,
    files: &[RemoteFile],
    mirrors: &[String],
    dest: &Path,
    progress: &mut dyn Observer<FetchEvent>,
) -> Result<()> {
    fetch_files(files, mirrors, dest, progress)?;
    if let (DatasetName::Cifar10(_), Some(archive)) = (name, files.first()) {
        super::cifar::unpack(&dest.join(archive.name), dest)?;
    }
    Ok(())
}

/// Download progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// A file starts downloading; `total` is its announced size.
    Start {
        /// File name.
        name: String,
        /// Content length, if the server sent one.
        total: Option<u64>,
    },
    /// Bytes received so far for the current file.
    Progress(u64),
    /// The current file is verified and in place (or already was).
    Done {
        /// File name.
        name: String,
        /// Whether it was already present with the right checksum.
        cached: bool,
    },
}

fn sha256_file(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `files` into `dest`, trying `mirrors` in order for each file. A file already
/// present with the right checksum is kept. Nothing unverified is ever left at a final path.
pub fn fetch_files(
    files: &[RemoteFile],
    mirrors: &[String],
    dest: &Path,
    progress: &mut dyn Observer<FetchEvent>,
) -> Result<()> {
    fsio::create_dir(dest)?;
    for file in files {
        let target = dest.join(file.name);
        if sha256_file(&target).as_deref() == Some(file.sha256) {
            progress.event(&FetchEvent::Done {
                name: file.name.into(),
                cached: true,
            });
            continue;
        }
        let mut failures = Vec::new();
        let ok = mirrors.iter().any(|mirror| {
            let url = format!("{mirror}{}", file.name);
            match download(&url, file, &target, progress) {
                Ok(()) => true,
                Err(e) => {
                    failures.push(error_chain(&e));
                    false
                }
            }
        });
        if !ok {
            return Err(Error::Download {
                url: file.name.into(),
                message: format!("every mirror failed:\n  {}", failures.join("\n  ")),
                source: None,
            });
        }
        progress.event(&FetchEvent::Done {
            name: file.name.into(),
            cached: false,
        });
    }
    Ok(())
}

fn download(url: &str, file: &RemoteFile, target: &Path, progress: &mut dyn Observer<FetchEvent>) -> Result<()> {
    let fail = |message: String, source: Option<BoxError>| Error::Download {
        url: url.to_string(),
        message,
        source,
    };
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| fail("request failed".into(), Some(e.into())))?;
    let total = response.body().content_length();
    progress.event(&FetchEvent::Start {
        name: file.name.into(),
        total,
    });
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".maxprune-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| fail(format!("reading after {received} bytes"), Some(e.into())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
        received += n as u64;
        progress.event(&FetchEvent::Progress(received));
    }
    if let Some(t) = total.filter(|&t| t != received) {
        return Err(fail(format!("connection ended after {received} of {t} bytes"), None));
    }
    let got = hex(&hasher.finalize());
    if got != file.sha256 {
        return Err(fail(
            format!("SHA-256 mismatch: expected {}, found {got}", file.sha256),
            None,
        ));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    tmp.persist(target)
        .map_err(|e| Error::io("renaming into place", target, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// Serves `replies` (one per connection, in order) on 127.0.0.1 and returns the base URL.
    fn serve(replies: Vec<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for reply in replies {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let _ = stream.write_all(&reply);
            }
        });
        format!("http://{addr}/")
    }

    fn ok_reply(body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    const BODY: &[u8] = b"hello maxprune";
    // sha256("hello maxprune")
    fn file() -> RemoteFile {
        RemoteFile {
            name: "f.gz",
            sha256: Box::leak(hex(&Sha256::digest(BODY)).into_boxed_str()),
        }
    }

    #[test]
    fn downloads_verifies_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(vec![ok_reply(BODY)]);
        let mut events = Vec::new();
        fetch_files(
            &[file()],
            std::slice::from_ref(&url),
            dir.path(),
            &mut |e: &FetchEvent| events.push(e.clone()),
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("f.gz")).unwrap(), BODY);
        assert!(events.contains(&FetchEvent::Done {
            name: "f.gz".into(),
            cached: false
        }));
        // second time: no server needed
        events.clear();
        fetch_files(&[file()], &[url], dir.path(), &mut |e: &FetchEvent| {
            events.push(e.clone())
        })
        .unwrap();
        assert_eq!(
            events,
            vec![FetchEvent::Done {
                name: "f.gz".into(),
                cached: true
            }]
        );
    }

    #[test]
    fn checksum_mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(vec![ok_reply(b"tampered bytes")]);
        let e = fetch_files(&[file()], &[url], dir.path(), &mut crate::progress::Silent)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SHA-256 mismatch"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn dropped_connection_is_an_error_and_next_mirror_is_tried() {
        let dir = tempfile::tempdir().unwrap();
        let mut cut = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            1000
        )
        .into_bytes();
        cut.extend_from_slice(&BODY[..5]);
        let bad = serve(vec![cut.clone()]);
        let e = fetch_files(&[file()], &[bad], dir.path(), &mut crate::progress::Silent)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every mirror failed") && e.contains("127.0.0.1"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let (bad, good) = (serve(vec![cut]), serve(vec![ok_reply(BODY)]));
        fetch_files(&[file()], &[bad, good], dir.path(), &mut crate::progress::Silent).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f.gz")).unwrap(), BODY);
    }

    #[test]
    fn cifar10_archive_is_downloaded_verified_and_unpacked() {
        let batches: [Vec<u8>; 6] = std::array::from_fn(|i| {
            let mut record = vec![i as u8; 3073];
            record[0] = i as u8 % 10;
            record
        });
        let archive = crate::data::cifar::tests::tarball(&batches);
        let (_, official) = sources(&DatasetName::Cifar10("x".into())).unwrap();
        let local = RemoteFile {
            sha256: Box::leak(hex(&Sha256::digest(&archive)).into_boxed_str()),
            ..official[0]
        };
        let dir = tempfile::tempdir().unwrap();
        let name = DatasetName::Cifar10(dir.path().into());
        let url = serve(vec![ok_reply(&archive)]);
        fetch(&name, &[local], &[url], dir.path(), &mut crate::progress::Silent).unwrap();
        let data = crate::data::dataset::Dataset::load(&name, None).unwrap();
        assert_eq!((data.train.len(), data.test.len(), data.classes), (5, 1, 10));
        // The official archive's checksum is the one a download is held to.
        let url = serve(vec![ok_reply(&archive)]);
        let other = tempfile::tempdir().unwrap();
        let e = fetch(&name, &official, &[url], other.path(), &mut crate::progress::Silent)
            .unwrap_err()
            .to_string();
        assert!(e.contains("every mirror failed"), "{e}");
    }
}
