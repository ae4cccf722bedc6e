//! `maxprune import`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use maxprune::data::transform::Normalization;
use maxprune::model::import::{ImportOptions, Names, import};
use maxprune::model::presets::Preset;
use maxprune::train::{RunDir, TrainConfig};

use crate::args::{ArchArgs, DataArgs, ScaleArgs};

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Safetensors file of weights: a PyTorch state_dict (`<layer>.weight`, `<layer>.bias`) or
    /// torchvision's VGG names (see --names).
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
    /// How the file names its tensors (default: torchvision with the --preset vgg16* presets,
    /// state-dict otherwise).
    #[arg(long, value_enum)]
    pub(crate) names: Option<Names>,
    /// Layers that start from a fresh initialisation instead of the file (a new classifier, say);
    /// every other layer must come from the file.
    #[arg(long, value_delimiter = ',', value_name = "LAYER")]
    pub(crate) allow_fresh: Vec<String>,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Seed of the fresh layers, and of the training config.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Run directory to create (continue with `train --resume --out DIR --epochs N`).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_import(a: ImportArgs) -> Result<()> {
    let spec = a.scale.apply(a.arch.spec()?)?;
    let names = a.names.unwrap_or(match a.arch.preset {
        Some(Preset::Vgg16 | Preset::Vgg16Maxout | Preset::Vgg16Bn | Preset::Vgg16MaxoutBn) => Names::Torchvision,
        _ => Names::StateDict,
    });
    let bytes = maxprune::fsio::read_tensor_file(&a.file)?;
    let options = ImportOptions {
        names,
        allow_fresh: &a.allow_fresh,
        seed: a.seed,
    };
    let (net, report) = import(
        &spec,
        &bytes,
        &a.file.display().to_string(),
        options,
        &maxprune::device(),
    )?;
    // torchvision's pretrained weights read RGB normalised by ImageNet's mean and std.
    let imagenet = names == Names::Torchvision && spec.input.channels == 3;
    let (imagenet_mean, imagenet_std) = Normalization::IMAGENET;
    let config = TrainConfig {
        dataset: a.data.name_or(TrainConfig::default().dataset)?,
        seed: a.seed,
        epochs: 0,
        mean: imagenet.then(|| imagenet_mean.to_vec()),
        std: imagenet.then(|| imagenet_std.to_vec()),
        ..TrainConfig::default()
    };
    RunDir::create(&a.out, &net, &config)?;
    for (ours, theirs) in &report.copied {
        println!("copied     {ours} <- {theirs}");
    }
    for (ours, theirs, dtype) in &report.converted {
        println!("converted  {ours} <- {theirs} ({dtype} to f32)");
    }
    for (ours, theirs, k) in &report.summed {
        println!("summed     {ours} <- {theirs} (columns summed in groups of {k})");
    }
    for ours in &report.fresh {
        println!("fresh      {ours} (--allow-fresh)");
    }
    println!("wrote {} ({} parameters)", a.out.display(), net.num_params());
    Ok(())
}
