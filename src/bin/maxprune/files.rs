//! Small file helpers the commands share: reading a sparse model file, writing files atomically, the output lock.

use std::path::Path;

use anyhow::{Context, Result};
use maxprune::data::dataset::DatasetName;
use maxprune::model::network::Network;
use maxprune::sparse;

/// The network in a sparse `.mxs` file, and the dataset it records.
pub(crate) fn sparse_file(path: &Path) -> Result<(Network, Option<DatasetName>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(sparse::decode(
        &bytes,
        &path.display().to_string(),
        &maxprune::device(),
    )?)
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(maxprune::fsio::write_atomic(path, bytes)?)
}

/// Holds the advisory lock on `out` for the rest of the command: one writer per output.
pub(crate) fn lock_output(out: &Path) -> Result<maxprune::fsio::OutputLock> {
    let command: Vec<String> = std::env::args().collect();
    Ok(maxprune::fsio::OutputLock::acquire(out, &command.join(" "))?)
}
