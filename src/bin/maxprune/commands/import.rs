//! `maxprune import`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use maxprune::data::transform::Normalization;
use maxprune::model::import::torchvision;
use maxprune::model::presets::Preset;
use maxprune::train::{RunDir, TrainConfig};

use crate::args::{DataArgs, ScaleArgs};

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Safetensors file with torchvision's VGG names (features.<i>.*, classifier.<i>.*).
    pub(crate) file: PathBuf,
    /// Architecture to fill.
    #[arg(long)]
    pub(crate) preset: Preset,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Seed of the layers that are not imported, and of the training config.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Run directory to create (continue with `train --resume --out DIR --epochs N`).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_import(a: ImportArgs) -> Result<()> {
    let spec = a.scale.apply(a.preset.spec())?;
    let bytes = maxprune::fsio::read_tensor_file(&a.file)?;
    let (net, report) = torchvision(
        &spec,
        &bytes,
        &a.file.display().to_string(),
        a.seed,
        &maxprune::device(),
    )?;
    let (rgb, (imagenet_mean, imagenet_std)) = (spec.input.channels == 3, Normalization::IMAGENET);
    let config = TrainConfig {
        dataset: a.data.name_or(TrainConfig::default().dataset)?,
        seed: a.seed,
        epochs: 0,
        // torchvision's pretrained weights read RGB normalised by ImageNet's mean and std.
        mean: rgb.then(|| imagenet_mean.to_vec()),
        std: rgb.then(|| imagenet_std.to_vec()),
        ..TrainConfig::default()
    };
    RunDir::create(&a.out, &net, &config)?;
    for (ours, theirs) in &report.copied {
        println!("copied  {ours} <- {theirs}");
    }
    for (ours, theirs, k) in &report.summed {
        println!("summed  {ours} <- {theirs} (columns summed in groups of {k})");
    }
    for (ours, why) in &report.fresh {
        println!("fresh   {ours}: {why}");
    }
    println!("wrote {} ({} parameters)", a.out.display(), net.num_params());
    Ok(())
}
