//! `maxprune export`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use maxprune::prune::schedule::accepted_run;
use maxprune::sparse::{self, Recorded};
use maxprune::train::RunDir;

use crate::files::{sparse_file, write_file};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormat {
    /// maxprune's sparse file (CSR for pruned weight matrices).
    Sparse,
    /// safetensors, dense f32.
    Dense,
    /// ONNX (opset 13), standard operators only; weight-pruned networks export dense.
    Onnx,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Run directory (a schedule directory from `prune`: its last accepted step), or a sparse
    /// `.mxs` file.
    pub(crate) run: PathBuf,
    /// Format.
    #[arg(long, value_enum, default_value = "sparse")]
    pub(crate) format: ExportFormat,
    /// Output file.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Fold every batch norm into the conv or dense layer before it (weights and bias
    /// rescaled, the layer removed): the written network predicts as the run's in evaluation.
    #[arg(long)]
    pub(crate) fold_bn: bool,
}

pub(crate) fn cmd_export(a: ExportArgs) -> Result<()> {
    // A run directory, or a sparse file (which records its dataset and normalisation).
    let (net, recorded) = if a.run.is_file() {
        sparse_file(&a.run)?
    } else {
        let dir = RunDir::open(&accepted_run(&a.run)?)?;
        dir.normalization()?;
        (dir.network(&maxprune::device())?, Recorded::of(&dir.config()?))
    };
    let net = if a.fold_bn { net.fold_batch_norm()? } else { net };
    let dense = net.to_safetensors();
    let bytes = match a.format {
        ExportFormat::Sparse => sparse::encode(&net, &recorded),
        ExportFormat::Dense => dense.clone(),
        ExportFormat::Onnx => maxprune::onnx::export(&net, &recorded.normalization())?,
    };
    write_file(&a.out, &bytes)?;
    println!(
        "{}: {} bytes ({} bytes as dense safetensors)",
        a.out.display(),
        bytes.len(),
        dense.len()
    );
    Ok(())
}
