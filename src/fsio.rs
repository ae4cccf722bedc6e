//! File helpers: atomic writes (temp file + rename) and reads with errors that name the file.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over `path`, so readers see the old or the new file, never a
/// partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".maxprune-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o644);
        tmp.as_file()
            .set_permissions(mode)
            .map_err(|e| Error::io("setting permissions of", tmp.path(), e))?;
    }
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into place", path, e.error))?;
    Ok(())
}

/// Reads a UTF-8 file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

/// Reads and parses a JSON file; a parse error names the file and keeps serde's error as its source.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_str(&read_text(path)?).map_err(|e| Error::parse(path.display().to_string(), e))
}

/// Creates a directory and its parents, naming it in the error.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("creating directory", path, e))
}

/// The absolute form of `path` (relative paths are taken from the current directory), for
/// references stored in files that may be read from another directory.
pub fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("resolving", path, e))
}

/// An advisory lock on one output (a run directory, a schedule directory or a file), held for
/// as long as the value lives, so that two processes never write the same output: the second
/// is refused with a message naming the first. The lock is a hidden file beside the output,
/// `.<name>.maxprune-lock`, locked with [`std::fs::File::try_lock`] (`flock` on Linux, released by the kernel when the holder exits,
/// even by `kill -9`) and holding the holder's process id and command line; it is removed when
/// the lock is dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: std::path::PathBuf,
    _file: std::fs::File,
}

impl OutputLock {
    /// The lock file of `output`.
    pub fn path_for(output: &Path) -> std::path::PathBuf {
        let name = output
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let dir = match output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        dir.join(format!(".{name}.maxprune-lock"))
    }

    /// Takes the lock on `output` for `holder` (a line naming the command), or fails at once if
    /// another process holds it. The directory that holds `output` is created if needed.
    pub fn acquire(output: &Path, holder: &str) -> Result<OutputLock> {
        let path = Self::path_for(output);
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io("opening the lock file", &path, e))?;
            if file.try_lock().is_err() {
                let held_by = std::fs::read_to_string(&path).unwrap_or_default();
                let held_by = held_by.trim();
                return Err(Error::invalid(
                    "output",
                    format!(
                        "{} is being written by another process ({}); expected no other writer, wait for it or choose \
                         another output",
                        output.display(),
                        if held_by.is_empty() { "holder unknown" } else { held_by }
                    ),
                ));
            }
            // The holder before us may have removed the file between our open and our lock:
            // then we hold a lock on a file nobody else can find, so start again.
            if same_file(&file, &path) {
                use std::io::{Seek, Write};
                let mut f = &file;
                let line = format!("pid {}: {holder}\n", std::process::id());
                f.set_len(0)
                    .and_then(|_| f.seek(std::io::SeekFrom::Start(0)))
                    .and_then(|_| f.write_all(line.as_bytes()))
                    .map_err(|e| Error::io("writing", &path, e))?;
                return Ok(OutputLock { path, _file: file });
            }
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so a waiting process never locks a file that is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let first = OutputLock::acquire(&out, "maxprune train").unwrap();
        let e = OutputLock::acquire(&out, "maxprune prune apply")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("being written by another process") && e.contains("maxprune train"),
            "{e}"
        );
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        assert!(!OutputLock::path_for(&out).exists());
        let _again = OutputLock::acquire(&out, "maxprune prune apply").unwrap();
    }
}
