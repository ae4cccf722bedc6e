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

/// Creates a directory and its parents, naming it in the error.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("creating directory", path, e))
}

/// The absolute form of `path` (relative paths are taken from the current directory), for
/// references stored in files that may be read from another directory.
pub fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("resolving", path, e))
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
}
