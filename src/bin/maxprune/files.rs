//! Small file helpers the commands share: reading a sparse model file, writing files atomically,
//! claiming the output (its checks and lock), removing lock files on signals.

use std::path::Path;

use anyhow::Result;
use maxprune::model::network::Network;
use maxprune::sparse::{self, Recorded};

use crate::cli::Output;

/// The network in a sparse `.mxs` file, and the dataset and normalisation it records.
pub(crate) fn sparse_file(path: &Path) -> Result<(Network, Recorded)> {
    let bytes = maxprune::fsio::read_tensor_file(path)?;
    Ok(sparse::decode(
        &bytes,
        &path.display().to_string(),
        &maxprune::device(),
    )?)
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(maxprune::fsio::write_atomic(path, bytes)?)
}

/// Checks that the command may write `out` (see [`maxprune::fsio::check_output`]), then holds
/// the advisory lock on it for the rest of the command: one writer per output and its tree.
pub(crate) fn claim_output(out: &Output) -> Result<maxprune::fsio::OutputLock> {
    maxprune::fsio::check_output(out.path, out.kind, &out.inputs)?;
    let command: Vec<String> = std::env::args().collect();
    Ok(maxprune::fsio::OutputLock::acquire(out.path, &command.join(" "))?)
}

/// Makes SIGINT, SIGTERM, SIGHUP and SIGPIPE remove the files of the output locks held, then end
/// the process as the signal does by default (the signal is raised again with its default
/// action). SIGPIPE so that a reader that stops early (`maxprune eval --json | head -1`) ends
/// the process quietly, as it ends any Unix filter, instead of every print failing.
pub(crate) fn remove_locks_on_signals() {
    extern "C" fn on_signal(signal: libc::c_int) {
        maxprune::fsio::remove_held_lock_files();
        // SAFETY: `signal` and `raise` are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: the handler calls only async-signal-safe functions. Should installing it
        // fail, the signal keeps its default action and only the lock file stays behind.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}
