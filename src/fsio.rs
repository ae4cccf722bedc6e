//! File helpers: capped reads of regular files, atomic writes (temp file + rename), the checks
//! an output passes before a command writes it, and the output lock.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::error::{Error, Result};

/// Most bytes read from a JSON or TOML document (spec, config, plan, relevance, chart data,
/// schedule and pair lists).
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Most bytes read from a tensor file (`model.safetensors`, `checkpoint.safetensors`, `.mxs`,
/// imported safetensors): three `f32` values (weight, velocity, mask) for each of the 2^31
/// parameters a spec may have, and a header of up to [`MAX_DOCUMENT_BYTES`].
pub const MAX_TENSOR_FILE_BYTES: u64 = 3 * 4 * (1 << 31) + MAX_DOCUMENT_BYTES;

/// Reads the regular file `path` whole: anything else (a FIFO, a device, a directory) is
/// refused without reading it, and so is a file over `cap` bytes. `what` names what the file
/// should hold ("a JSON document") in errors.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO for reading would wait for a writer; non-blocking, the type is checked first.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io("reading", path, e))?;
    let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
    let format = |field: &str, expected: String, found: String| Error::Format {
        path: path.display().to_string(),
        what: field.into(),
        expected,
        found,
    };
    if !meta.is_file() {
        return Err(format(
            "file type",
            format!("a regular file ({what})"),
            file_type_name(&meta.file_type()).into(),
        ));
    }
    let too_big = |len: u64| format("size", format!("at most {cap} bytes ({what})"), format!("{len} bytes"));
    if meta.len() > cap {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read still stops at one byte past the cap.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading", path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

fn file_type_name(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads a UTF-8 document of at most [`MAX_DOCUMENT_BYTES`] (see [`read_capped`]), naming the
/// file in errors.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_capped(path, MAX_DOCUMENT_BYTES, "a JSON or TOML document")?;
    String::from_utf8(bytes)
        .map_err(|e| Error::io("reading", path, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Reads and parses a JSON file; a parse error names the file and keeps serde's error as its source.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_str(&read_text(path)?).map_err(|e| Error::parse(path.display().to_string(), e))
}

/// Reads a tensor file of at most [`MAX_TENSOR_FILE_BYTES`] (see [`read_capped`]).
pub fn read_tensor_file(path: &Path) -> Result<Vec<u8>> {
    read_capped(path, MAX_TENSOR_FILE_BYTES, "a tensor file")
}

/// Temporary files of [`write_atomic`] are named `.maxprune-<pid>-<random>.part`, so a later
/// writer can tell the files of a killed process from those of a live one.
const PART_PREFIX: &str = ".maxprune-";
const PART_SUFFIX: &str = ".part";

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over `path`, so readers see the old or the new file, never a
/// partial one. Temporary files that killed writers left in that directory are removed first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_parts(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{PART_PREFIX}{}-", std::process::id()))
        .suffix(PART_SUFFIX)
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

/// Removes the temporary files of [`write_atomic`] in `dir` whose process no longer exists
/// (it was killed while writing); those of live processes are left alone.
fn remove_stale_parts(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // The temporary file's creation reports the missing directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading directory", dir, e))?;
        let stale = entry
            .file_name()
            .to_str()
            .and_then(part_pid)
            .is_some_and(|pid| !process_exists(pid));
        if stale {
            match std::fs::remove_file(entry.path()) {
                // Another writer may have removed it first.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("removing the stale temporary file", entry.path(), e));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The process id in the name of a temporary file of [`write_atomic`].
fn part_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PART_PREFIX)?.strip_suffix(PART_SUFFIX)?;
    rest.split_once('-')?.0.parse().ok()
}

/// Whether process `pid` may exist (true when that cannot be told).
#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    let Ok(id) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if id <= 0 || pid == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 is never delivered; kill only checks that the process exists.
    let sent = unsafe { libc::kill(id, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_exists(_: u32) -> bool {
    true
}

/// Creates a directory and its parents, naming it in the error.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("creating directory", path, e))
}

/// The absolute form of `path` (relative paths are taken from the current directory), for
/// references stored in files that may be read from another directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("resolving", path, e))
}

/// `path` with symbolic links and `..` resolved in the part that exists; the rest (names not
/// created yet) is appended as given.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let abs = absolute(path)?;
    let mut missing = Vec::new();
    let mut base = abs.as_path();
    loop {
        match base.canonicalize() {
            Ok(mut found) => {
                found.extend(missing.iter().rev());
                return Ok(found);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match (base.parent(), base.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name);
                    base = parent;
                }
                _ => return Ok(abs),
            },
            Err(e) => return Err(Error::io("resolving", base, e)),
        }
    }
}

/// What a command writes at its output path, for [`check_output`].
#[derive(Debug, Clone, Copy)]
pub enum OutputKind {
    /// A file, replaced whole.
    File,
    /// A directory the command fills. One that exists must be empty or hold `marker`, the
    /// first file the command writes into it (then it is this command's own kind of output,
    /// which the command itself continues or refuses); `what` names that kind in errors.
    Dir {
        /// The file that marks the directory as this kind of output.
        marker: &'static str,
        /// The kind, for errors ("a run directory").
        what: &'static str,
    },
}

/// Checks, before anything is written, that a command may write `out`: the path ends in a
/// name (not `.`, `..` or `/`); it is none of the command's `inputs` and lies inside none of
/// them (a directory output also holds none of them); and what exists there already is the
/// command's own kind of output (see [`OutputKind`]). maxprune's own hidden files (locks,
/// temporary files) do not count.
pub fn check_output(out: &Path, kind: OutputKind, inputs: &[&Path]) -> Result<()> {
    let refuse = |message: String| Err(Error::invalid("output", format!("{}: {message}", out.display())));
    if out.file_name().is_none() {
        return refuse("expected a path ending in a file or directory name, not '.', '..' or '/'".into());
    }
    let resolved = resolve(out)?;
    let is_dir = matches!(kind, OutputKind::Dir { .. });
    for input in inputs {
        let input_resolved = resolve(input)?;
        let relation = if resolved == input_resolved {
            "is"
        } else if resolved.starts_with(&input_resolved) {
            "lies inside"
        } else if is_dir && input_resolved.starts_with(&resolved) {
            "holds"
        } else {
            continue;
        };
        return refuse(format!(
            "{relation} the command's input {}; expected an output apart from the inputs, which are never overwritten",
            input.display()
        ));
    }
    let meta = match std::fs::metadata(out) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", out, e)),
    };
    match kind {
        OutputKind::File if !meta.is_file() => refuse(format!(
            "expected a new name or a regular file to replace, found {}",
            file_type_name(&meta.file_type())
        )),
        OutputKind::File => Ok(()),
        OutputKind::Dir { what, .. } if !meta.is_dir() => {
            refuse(format!("expected a new or empty directory or {what}, found a file"))
        }
        OutputKind::Dir { marker, what } => {
            let entries = std::fs::read_dir(out).map_err(|e| Error::io("reading directory", out, e))?;
            let mut foreign = None;
            for entry in entries {
                let name = entry.map_err(|e| Error::io("reading directory", out, e))?.file_name();
                let ours = name
                    .to_str()
                    .is_some_and(|n| n.ends_with(LOCK_SUFFIX) || part_pid(n).is_some());
                if !ours {
                    foreign = Some(name);
                    break;
                }
            }
            match foreign {
                Some(name) if !out.join(marker).exists() => refuse(format!(
                    "holds other files ({}) but no {marker}; expected a new or empty directory or {what}, so that \
                     nothing else is overwritten: choose another output",
                    name.to_string_lossy()
                )),
                _ => Ok(()),
            }
        }
    }
}

/// The name ending of lock files: `.<name>.maxprune-lock`.
const LOCK_SUFFIX: &str = ".maxprune-lock";

/// An advisory lock on one output (a run directory, a schedule directory or a file), held for
/// as long as the value lives, so that two processes never write the same output: the second
/// is refused with a message naming the first. The lock is a hidden file beside the output,
/// `.<name>.maxprune-lock`, locked with [`std::fs::File::try_lock`] (`flock` on Linux, released
/// by the kernel when the holder exits, even by `kill -9`) and holding the holder's process id
/// and command line; it is removed when the lock is dropped, and by
/// [`remove_held_lock_files`] when a signal ends the process.
///
/// The lock also covers the output's whole tree: while it is held, no writer starts on a path
/// inside the output, since each writer takes a shared lock on the lock file of every enclosing
/// directory that has one, and is refused if one is held.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    _file: std::fs::File,
    _enclosing: Vec<std::fs::File>,
    slot: Option<usize>,
}

impl OutputLock {
    /// The lock file of `output`.
    pub fn path_for(output: &Path) -> PathBuf {
        let name = output
            .file_name()
            .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        let dir = match output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        dir.join(format!(".{name}{LOCK_SUFFIX}"))
    }

    /// Takes the lock on `output` for `holder` (a line naming the command), or fails at once if
    /// another process holds it or the lock of a directory that encloses `output`. The
    /// directory that holds `output` is created if needed.
    pub fn acquire(output: &Path, holder: &str) -> Result<OutputLock> {
        let enclosing = lock_enclosing(output)?;
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
            if !try_lock(&file, false, &path)? {
                return Err(Error::invalid(
                    "output",
                    format!(
                        "{} is being written by another process ({}); expected no other writer, wait for it or choose \
                         another output",
                        output.display(),
                        holder_of(&path)
                    ),
                ));
            }
            // The holder before us may have removed the file between our open and our lock:
            // then we hold a lock on a file nobody else can find, so start again.
            if same_file(&file, &path) {
                use std::io::Seek;
                let mut f = &file;
                let line = format!("pid {}: {holder}\n", std::process::id());
                f.set_len(0)
                    .and_then(|_| f.seek(std::io::SeekFrom::Start(0)))
                    .and_then(|_| f.write_all(line.as_bytes()))
                    .map_err(|e| Error::io("writing", &path, e))?;
                let slot = register_lock_file(&path);
                return Ok(OutputLock {
                    path,
                    _file: file,
                    _enclosing: enclosing,
                    slot,
                });
            }
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            // The name stays allocated: a signal handler may be reading it (see `HELD`).
            HELD[slot].store(std::ptr::null_mut(), Ordering::SeqCst);
        }
        // Removed while still locked, so a waiting process never locks a file that is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Shared locks on the lock files of the directories enclosing `output` that have one, held
/// while `output` is written: fails, naming the directory, while one of them is written.
fn lock_enclosing(output: &Path) -> Result<Vec<std::fs::File>> {
    let resolved = resolve(output)?;
    let mut held = Vec::new();
    for dir in resolved.ancestors().skip(1).filter(|d| d.file_name().is_some()) {
        let path = OutputLock::path_for(dir);
        loop {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(Error::io("opening the lock file", &path, e)),
            };
            if !try_lock(&file, true, &path)? {
                return Err(Error::invalid(
                    "output",
                    format!(
                        "{} lies inside {}, which is being written by another process ({}); expected no writer of \
                         an enclosing directory, wait for it or choose another output",
                        output.display(),
                        dir.display(),
                        holder_of(&path)
                    ),
                ));
            }
            // A file removed by its holder between our open and our lock no longer guards `dir`.
            if same_file(&file, &path) {
                held.push(file);
                break;
            }
        }
    }
    Ok(held)
}

/// Locks `file` without waiting (shared or exclusive): false when another process holds it.
fn try_lock(file: &std::fs::File, shared: bool, path: &Path) -> Result<bool> {
    let locked = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", path, e)),
    }
}

/// The holder line of a lock file, for messages (best effort: the holder may be gone).
fn holder_of(path: &Path) -> String {
    let held_by = read_text(path).unwrap_or_default();
    match held_by.trim() {
        "" => "holder unknown".into(),
        line => line.into(),
    }
}

/// The lock files this process holds, as C strings for [`remove_held_lock_files`]; null where
/// unused. A name is never freed once stored (a signal handler may read it at any moment):
/// a process takes one or two locks, so the leak is a few bytes.
static HELD: [AtomicPtr<std::ffi::c_char>; 8] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 8];

/// Stores `path` in a free slot of [`HELD`]; None when it cannot be (all slots taken, or a
/// path with a NUL byte): then a signal leaves the lock file behind, which is harmless.
#[cfg(unix)]
fn register_lock_file(path: &Path) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?.into_raw();
    let slot = HELD.iter().position(|slot| {
        slot.compare_exchange(std::ptr::null_mut(), name, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    if slot.is_none() {
        // SAFETY: `name` came from `into_raw` above and was stored nowhere.
        drop(unsafe { std::ffi::CString::from_raw(name) });
    }
    slot
}

#[cfg(not(unix))]
fn register_lock_file(_: &Path) -> Option<usize> {
    None
}

/// Removes the lock files of the [`OutputLock`]s this process holds, for a handler of SIGINT or
/// SIGTERM that then ends the process (the kernel releases the locks themselves). It is
/// async-signal-safe: it only loads atomics and calls `unlink`.
#[cfg(unix)]
pub fn remove_held_lock_files() {
    for slot in &HELD {
        let name = slot.load(Ordering::SeqCst);
        if !name.is_null() {
            // SAFETY: a non-null slot holds a NUL-terminated name that is never freed.
            unsafe { libc::unlink(name) };
        }
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
