//! The command line: global options and the commands, as clap parses them.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};

use maxprune::demo::DEMO_OUTPUT;
use maxprune::fsio::OutputKind;
use maxprune::prune::schedule::SCHEDULE_OUTPUT;
use maxprune::train::RunDir;

use crate::commands::bench::BenchArgs;
use crate::commands::chart::ChartCommand;
use crate::commands::demo::DemoArgs;
use crate::commands::eval::EvalArgs;
use crate::commands::export::ExportArgs;
use crate::commands::fetch::FetchArgs;
use crate::commands::import::ImportArgs;
use crate::commands::inspect::InspectArgs;
use crate::commands::prune::PruneCommand;
use crate::commands::relevance::RelevanceArgs;
use crate::commands::reproduce::ReproduceArgs;
use crate::commands::sensitivity::{SENSITIVITY_OUTPUT, SensitivityArgs};
use crate::commands::train::TrainArgs;
use crate::commands::verify::{VERIFY_OUTPUT, VerifyArgs};

#[derive(Parser)]
#[command(
    name = "maxprune",
    version,
    about = "Prune whole neurons out of maxout networks (Moya Rueda et al., GCPR 2017)"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// Threads for the CPU backend (default: all cores).
    #[arg(long, global = true)]
    pub(crate) threads: Option<usize>,
    /// Compute backend.
    #[arg(long, global = true, value_enum, default_value = "flex")]
    pub(crate) device: Backend,
    /// Convolution, pooling and batch-norm kernels: maxprune's own (flex) or burn's, for comparisons.
    #[arg(long, global = true, value_enum, default_value = "own")]
    pub(crate) kernels: KernelsArg,
}

/// `--kernels`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum KernelsArg {
    /// maxprune's own convolution, max and average pooling and batch norm with their own
    /// backward passes (flex, f32).
    Own,
    /// burn's `conv2d`, `max_pool2d`, `avg_pool2d` and batch norm from its tensor operations.
    Burn,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a network and write a run directory.
    Train(TrainArgs),
    /// Evaluate a run directory on a dataset's test split.
    Eval(EvalArgs),
    /// Per-layer shapes, units, pieces, parameters and FLOPs.
    Inspect(InspectArgs),
    /// Download a dataset (verified by SHA-256).
    Fetch(FetchArgs),
    /// Train on the built-in Fashion-MNIST subset: no data, no network needed.
    Demo(DemoArgs),
    /// Measure training and inference speed.
    Bench(BenchArgs),
    /// Score every maxout piece (how often it wins its unit, or another criterion).
    Relevance(RelevanceArgs),
    /// Cut each maxout layer alone by given fractions, without retraining, and measure
    /// validation accuracy: how much each layer can lose.
    Sensitivity(SensitivityArgs),
    /// Prune maxout networks.
    #[command(subcommand)]
    Prune(PruneCommand),
    /// Write the model as a sparse or dense file.
    Export(ExportArgs),
    /// Reproduce the paper's LeNet-5 table (train, neuron pruning, weight pruning, over seeds).
    Reproduce(ReproduceArgs),
    /// Start a run directory from pretrained weights (safetensors): a PyTorch state_dict for a
    /// spec, or torchvision-named VGG weights.
    Import(ImportArgs),
    /// Face verification on LFW's protocol (10 folds, threshold chosen on 9, tested on 1).
    Verify(VerifyArgs),
    /// Draw a chart from a JSON file (e.g. speed ratios as bars), by the same plotting code as
    /// maxprune's own charts.
    #[command(subcommand)]
    Chart(ChartCommand),
}

/// What a command writes at its `--out`: the path, its kind, and the inputs it must stay apart
/// from (see [`maxprune::fsio::check_output`]).
pub(crate) struct Output<'a> {
    pub(crate) path: &'a Path,
    pub(crate) kind: OutputKind,
    pub(crate) inputs: Vec<&'a Path>,
}

impl Command {
    /// The run directory, schedule directory or file this command writes, when `--out` names
    /// it (reproduce derives its default output from the dataset, and claims it itself).
    pub(crate) fn output(&self) -> Option<Output<'_>> {
        let file = OutputKind::File;
        let (path, kind, inputs): (&Path, _, Vec<&Path>) = match self {
            Command::Train(a) if a.resume => (&a.out, RunDir::OUTPUT, Vec::new()),
            Command::Train(a) => (
                &a.out,
                RunDir::OUTPUT,
                a.arch.spec.iter().chain(&a.config).map(|p| p.as_path()).collect(),
            ),
            Command::Demo(a) => (&a.out, DEMO_OUTPUT, Vec::new()),
            Command::Relevance(a) => (&a.out, file, vec![&a.run]),
            Command::Sensitivity(a) => (&a.out, SENSITIVITY_OUTPUT, vec![&a.run]),
            Command::Prune(PruneCommand::Neurons(a)) => (&a.out, SCHEDULE_OUTPUT, vec![&a.run]),
            Command::Prune(PruneCommand::Plan(a)) => (&a.out, file, vec![&a.run, &a.relevance]),
            Command::Prune(PruneCommand::Apply(a)) => (&a.out, RunDir::OUTPUT, vec![&a.run, &a.plan]),
            Command::Prune(PruneCommand::Weights(a)) => (&a.out, SCHEDULE_OUTPUT, vec![&a.run]),
            Command::Export(a) => (&a.out, file, vec![&a.run]),
            Command::Import(a) => (
                &a.out,
                RunDir::OUTPUT,
                [&a.file].into_iter().chain(&a.arch.spec).map(|p| p.as_path()).collect(),
            ),
            Command::Verify(a) => (a.out.as_deref()?, VERIFY_OUTPUT, vec![&a.run, &a.pairs, &a.images]),
            Command::Eval(a) => (
                a.predictions.as_deref()?,
                file,
                [&a.run].into_iter().chain(&a.model).map(|p| p.as_path()).collect(),
            ),
            Command::Chart(ChartCommand::Bars(a)) => (&a.out, file, vec![&a.data]),
            Command::Reproduce(_) | Command::Inspect(_) | Command::Fetch(_) | Command::Bench(_) => {
                return None;
            }
        };
        Some(Output { path, kind, inputs })
    }

    /// Whether the command continues earlier work in its output with `--resume`.
    pub(crate) fn resumes(&self) -> bool {
        matches!(
            self,
            Command::Train(_) | Command::Prune(PruneCommand::Neurons(_) | PruneCommand::Weights(_))
        )
    }
}

/// Compute backends this build can use.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Backend {
    /// Pure-Rust CPU backend (always built).
    Flex,
    /// GPU through wgpu (Vulkan on Linux); needs `--features wgpu`.
    Wgpu,
    /// NVIDIA GPU through CUDA; needs `--features cuda` (its build downloads LLVM).
    Cuda,
}

impl Backend {
    pub(crate) fn device(self) -> Result<Device> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => {
                let name = other
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                bail!(
                    "this maxprune was built without the {name} backend; rebuild with `cargo build --release --features {name}`"
                )
            }
        }
    }
}
