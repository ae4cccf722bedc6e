//! `maxprune import`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use maxprune::data::transform::Normalization;
use maxprune::model::import::{ImportOptions, Names, import};
use maxprune::model::onnx_import::{OnnxOptions, import_onnx};
use maxprune::model::presets::Preset;
use maxprune::model::spec::InputShape;
use maxprune::train::{RunDir, TrainConfig, check_dataset};

use crate::args::{ArchArgs, DataArgs, ScaleArgs};

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Safetensors file of weights: a PyTorch state_dict (`<layer>.weight`, `<layer>.bias`) or
    /// torchvision's VGG names (see --names); or an ONNX model (`.onnx`), architecture and
    /// weights together.
    pub(crate) file: PathBuf,
    /// The ONNX model's input `C,H,W` where the file leaves it symbolic.
    #[arg(long, value_delimiter = ',', num_args = 3, value_name = "C,H,W")]
    pub(crate) input_shape: Option<Vec<usize>>,
    /// Fold the ONNX model's batch normalisation into the conv or dense layer before it.
    #[arg(long)]
    pub(crate) fold_bn: bool,
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
    if a.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        return import_onnx_file(a);
    }
    if a.input_shape.is_some() || a.fold_bn {
        bail!("--input-shape and --fold-bn apply to ONNX models (a .onnx file)");
    }
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

/// An ONNX model: the file holds the architecture, so the arguments that choose or resize one
/// are refused; a `--dataset` must have the model's input size and at most its classes.
fn import_onnx_file(a: ImportArgs) -> Result<()> {
    if a.arch.preset.is_some()
        || a.arch.spec.is_some()
        || !a.scale.is_none()
        || a.names.is_some()
        || !a.allow_fresh.is_empty()
    {
        bail!(
            "{}: an ONNX model holds its architecture and every weight; --preset, --spec, --width, \
             --input-size, --classes, --names and --allow-fresh do not apply",
            a.file.display()
        );
    }
    let input = a.input_shape.as_deref().map(|s| InputShape {
        channels: s[0],
        height: s[1],
        width: s[2],
    });
    let bytes = maxprune::fsio::read_tensor_file(&a.file)?;
    let options = OnnxOptions {
        input,
        fold_bn: a.fold_bn,
    };
    let imported = import_onnx(&bytes, &a.file, &options, &maxprune::device())?;
    if let Some(name) = a.data.name()? {
        check_dataset(imported.network.spec(), &a.data.load(&name)?)
            .with_context(|| format!("{}: the model does not read --dataset {name}", a.file.display()))?;
    }
    let config = TrainConfig {
        dataset: a.data.name_or(TrainConfig::default().dataset)?,
        seed: a.seed,
        epochs: 0,
        mean: imported.mean.clone(),
        std: imported.std.clone(),
        ..TrainConfig::default()
    };
    let net = &imported.network;
    RunDir::create(&a.out, net, &config)?;
    for name in &imported.dropped {
        println!("dropped    {name} (identity in inference)");
    }
    for layer in &net.spec().layers {
        println!("layer      {layer}");
    }
    println!("wrote {} ({} parameters)", a.out.display(), net.num_params());
    Ok(())
}
