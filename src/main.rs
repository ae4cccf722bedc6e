//! The `maxprune` command line: parses arguments, renders progress, maps errors to exit codes.
//! All work is done by the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use maxprune::bench::{BenchConfig, Comparison, MAX_SPREAD, SPEEDUP_ROUNDS, bench, speedup};
use maxprune::data::dataset::{Dataset, DatasetName};
use maxprune::data::fetch::{FetchEvent, fetch_files, sources};
use maxprune::model::import::torchvision;
use maxprune::model::network::{Kernels, Network};
use maxprune::model::presets::Preset;
use maxprune::model::spec::ArchSpec;
use maxprune::plot::{Chart, Mark, Series};
use maxprune::prune::neuron::apply;
use maxprune::prune::plan::PrunePlan;
use maxprune::prune::schedule::{Pruner, Retrain, ScheduleConfig, ScheduleReport, pruned_and_source, run_schedule};
use maxprune::prune::select::{Policy, select};
use maxprune::prune::weight::{WeightRule, WeightSchedule, parse_sparsity, sparsity, sparsity_markdown};
use maxprune::relevance::{CriterionKind, Relevance, TiePolicy, criterion};
use maxprune::report::{StepRow, markdown_table, relevance_histogram};
use maxprune::reproduce::{ReproduceConfig, reproduce};
use maxprune::run::RunDir;
use maxprune::sparse;
use maxprune::train::{
    Distillation, Event, Observer, Silent, Splits, TrainConfig, check_classes, check_trainable, evaluate, train,
};
use maxprune::verify::{Distance, parse_pairs, verify};

#[derive(Parser)]
#[command(
    name = "maxprune",
    version,
    about = "Prune whole neurons out of maxout networks (Moya Rueda et al., GCPR 2017)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Threads for the CPU backend (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Compute backend.
    #[arg(long, global = true, value_enum, default_value = "flex")]
    device: Backend,
    /// Convolution and pooling kernels: maxprune's own (flex) or burn's, for comparisons.
    #[arg(long, global = true, value_enum, default_value = "own")]
    kernels: KernelsArg,
}

/// `--kernels`.
#[derive(Clone, Copy, ValueEnum)]
enum KernelsArg {
    /// maxprune's own convolution and pooling with their own backward passes (flex, f32).
    Own,
    /// burn's `conv2d` and `max_pool2d`.
    Burn,
}

#[derive(Subcommand)]
enum Command {
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
    /// Start a run directory from pretrained torchvision-named weights (safetensors).
    Import(ImportArgs),
    /// Face verification on LFW's protocol (10 folds, threshold chosen on 9, tested on 1).
    Verify(VerifyArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// Safetensors file with torchvision's VGG names (features.<i>.*, classifier.<i>.*).
    file: PathBuf,
    /// Architecture to fill.
    #[arg(long)]
    preset: Preset,
    #[command(flatten)]
    scale: ScaleArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Seed of the layers that are not imported, and of the training config.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run directory to create (continue with `train --resume --out DIR --epochs N`).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct VerifyArgs {
    /// Run directory of the network that embeds the faces.
    run: PathBuf,
    /// LFW's pairs file (header `folds n`, then per fold n matched and n mismatched pairs).
    #[arg(long)]
    pairs: PathBuf,
    /// Image root in LFW's layout: <images>/<name>/<name>_<nnnn>.jpg.
    #[arg(long)]
    images: PathBuf,
    /// Distance between embeddings.
    #[arg(long, value_enum, default_value = "cosine")]
    distance: Distance,
    /// Embed with this layer's output (after its activation) instead of the penultimate one.
    #[arg(long)]
    layer: Option<String>,
    /// Write the result as JSON and the ROC curve as SVG into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Experiment {
    /// LeNet-5 and lenet5-maxout: neuron pruning, weight pruning, and both.
    Lenet5,
}

#[derive(Args)]
struct ReproduceArgs {
    /// Which table.
    experiment: Experiment,
    #[command(flatten)]
    data: DataArgs,
    /// Seeds (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Output directory (default: results/lenet5-<dataset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A quick check on the built-in subset (1 epoch everywhere).
    #[arg(long)]
    quick: bool,
}

#[derive(Subcommand)]
enum PruneCommand {
    /// Iterative neuron pruning with retraining (the paper's method).
    Neurons(NeuronsArgs),
    /// Turn a relevance file into a prune plan.
    Plan(PlanArgs),
    /// Apply a prune plan to a run directory (no retraining).
    Apply(ApplyArgs),
    /// Iterative magnitude weight pruning with masks held through retraining (Han et al.).
    Weights(WeightsArgs),
}

#[derive(Args)]
struct WeightsArgs {
    /// Run directory to prune.
    run: PathBuf,
    /// Output directory (one run directory per step inside).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Han's rule: remove |w| < quality x std of the layer's surviving weights, every step.
    #[arg(long, conflicts_with = "sparsity")]
    quality: Option<f64>,
    /// Quality factor for conv layers (default: --quality).
    #[arg(long, requires = "quality")]
    conv_quality: Option<f64>,
    /// Target sparsity per layer, reached in equal increments: conv=0.5,dense=0.9 or by layer name.
    #[arg(long)]
    sparsity: Option<String>,
    /// Pruning steps.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[command(flatten)]
    retrain: RetrainArgs,
}

#[derive(Args)]
struct RetrainArgs {
    /// Retraining epochs per step.
    #[arg(long, default_value_t = 5)]
    retrain_epochs: usize,
    /// Stop when validation accuracy drops more than this many points below the start.
    #[arg(long, default_value_t = 0.3)]
    tolerance: f64,
    /// Validation examples carved off train (must match the starting run's; 0: no stopping rule).
    #[arg(long, default_value_t = 5000)]
    val: usize,
    /// Seed of retraining (and of the random criterion).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Continue an interrupted schedule in --out.
    #[arg(long)]
    resume: bool,
    /// Retrain with knowledge distillation from the starting network: the weight in [0, 1] of
    /// its softened predictions in the loss (the labels get the rest).
    #[arg(long, value_name = "ALPHA")]
    distill: Option<f64>,
    /// Softmax temperature of the distillation term.
    #[arg(long, default_value_t = 4.0, requires = "distill")]
    temperature: f64,
    /// Base learning rate of each retraining (default: the starting run's); its schedule
    /// restarts every step.
    #[arg(long)]
    retrain_lr: Option<f64>,
}

impl RetrainArgs {
    fn retrain(&self, dataset: String) -> Retrain {
        Retrain {
            retrain_epochs: self.retrain_epochs,
            tolerance: self.tolerance,
            val: self.val,
            dataset,
            seed: self.seed,
            distill: self.distill.map(|alpha| Distillation {
                alpha,
                temperature: self.temperature,
            }),
            retrain_lr: self.retrain_lr,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// maxprune's sparse file (CSR for pruned weight matrices).
    Sparse,
    /// safetensors, dense f32.
    Dense,
    /// ONNX (opset 13), standard operators only; weight-pruned networks export dense.
    Onnx,
}

#[derive(Args)]
struct ExportArgs {
    /// Run directory, or a sparse `.mxs` file.
    run: PathBuf,
    /// Format.
    #[arg(long, value_enum, default_value = "sparse")]
    format: ExportFormat,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyName {
    /// Drop the --per-step least relevant pieces of every unit.
    PerUnit,
    /// Drop pieces scored below --tau.
    Threshold,
    /// Drop the lowest-scored --fraction of each layer's pieces.
    Global,
    /// Drop whole units: the --fraction of each layer's units whose scores sum lowest.
    Units,
}

#[derive(Args)]
struct PolicyArgs {
    /// Selection policy.
    #[arg(long, value_enum, default_value = "per-unit")]
    policy: PolicyName,
    /// Pieces removed per unit and step (per-unit).
    #[arg(long, default_value_t = 1)]
    per_step: usize,
    /// Score threshold (threshold).
    #[arg(long, default_value_t = 0.05)]
    tau: f64,
    /// Fraction of each layer's pieces (global) or units (units) removed per step.
    #[arg(long, default_value_t = 0.25)]
    fraction: f64,
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        match self.policy {
            PolicyName::PerUnit => Policy::PerUnit { n: self.per_step },
            PolicyName::Threshold => Policy::Threshold { tau: self.tau },
            PolicyName::Global => Policy::Global {
                fraction: self.fraction,
            },
            PolicyName::Units => Policy::Units {
                fraction: self.fraction,
            },
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitName {
    Train,
    Test,
}

#[derive(Args)]
struct CriterionArgs {
    /// Relevance criterion.
    #[arg(long, value_enum, default_value = "argmax")]
    criterion: CriterionKind,
    /// Who gets the credit when pieces tie for the maximum (argmax).
    #[arg(long, value_enum, default_value = "split")]
    ties: TiePolicy,
}

#[derive(Clone, Copy, ValueEnum)]
enum CutArg {
    /// The lowest-scored fraction of the layer's pieces (at least one stays per unit).
    Pieces,
    /// The lowest-scored fraction of the layer's units (needs a criterion that ranks units,
    /// such as contribution).
    Units,
}

#[derive(Args)]
struct SensitivityArgs {
    /// Run directory (trained with validation examples: `train --val N`).
    run: PathBuf,
    /// Maxout layers to cut, by the name of the layer that produces their pieces (default: all).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Fractions to remove, each in (0, 1).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")]
    fractions: Vec<f64>,
    /// What a fraction counts.
    #[arg(long, value_enum, default_value = "pieces")]
    cut: CutArg,
    #[command(flatten)]
    criterion: CriterionArgs,
    /// Validation examples (default: the run's own `val`; another count is refused, since the
    /// network has seen some of them).
    #[arg(long)]
    val: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
    /// Output directory: sensitivity.json, sensitivity.md, sensitivity.svg.
    #[arg(long, default_value = "sensitivity")]
    out: PathBuf,
}

#[derive(Args)]
struct RelevanceArgs {
    /// Run directory.
    run: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Split to count on.
    #[arg(long, value_enum, default_value = "train")]
    split: SplitName,
    #[command(flatten)]
    criterion: CriterionArgs,
    /// Output JSON file (an SVG histogram per layer is written beside it).
    #[arg(long, default_value = "relevance.json")]
    out: PathBuf,
}

#[derive(Args)]
struct NeuronsArgs {
    /// Run directory to prune.
    run: PathBuf,
    /// Output directory (one run directory per step inside).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    criterion: CriterionArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Stop once every unit has at most this many pieces.
    #[arg(long)]
    until_k: Option<usize>,
    /// Stop after this many steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Control: retrain exactly as the schedule would, but prune nothing (needs --steps).
    #[arg(long)]
    control: bool,
    #[command(flatten)]
    retrain: RetrainArgs,
}

#[derive(Args)]
struct PlanArgs {
    /// Run directory the relevance was computed on.
    run: PathBuf,
    /// Relevance file.
    #[arg(long)]
    relevance: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Output plan file.
    #[arg(long, default_value = "plan.json")]
    out: PathBuf,
}

#[derive(Args)]
struct ApplyArgs {
    /// Run directory to prune.
    run: PathBuf,
    /// Plan file.
    #[arg(long)]
    plan: PathBuf,
    /// Output run directory (the pruned network, not retrained).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct DataArgs {
    /// mnist, fashion-mnist, embedded, or idx:<dir>.
    #[arg(long)]
    dataset: Option<String>,
    /// Directory holding the dataset's IDX files (searched first).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Resizing an architecture (see `ArchSpec::scaled`).
#[derive(Args)]
struct ScaleArgs {
    /// Multiply conv filters, hidden dense widths and maxout units by this.
    #[arg(long)]
    width: Option<f64>,
    /// Square input size in pixels (channels are kept).
    #[arg(long)]
    input_size: Option<usize>,
    /// Outputs of the last layer.
    #[arg(long)]
    classes: Option<usize>,
}

impl ScaleArgs {
    fn is_none(&self) -> bool {
        self.width.is_none() && self.input_size.is_none() && self.classes.is_none()
    }

    fn apply(&self, spec: ArchSpec) -> Result<ArchSpec> {
        if self.is_none() {
            return Ok(spec);
        }
        let mut input = spec.input;
        if let Some(n) = self.input_size {
            (input.height, input.width) = (n, n);
        }
        let classes = match self.classes {
            Some(c) => c,
            None => spec.classes()?,
        };
        let mut scaled = spec.scaled(self.width.unwrap_or(1.0), input, classes)?;
        scaled.name = format!("{}-w{}-{}px", spec.name, self.width.unwrap_or(1.0), input.height);
        Ok(scaled)
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Architecture preset.
    #[arg(long, conflicts_with = "spec")]
    preset: Option<Preset>,
    /// Architecture from a spec.json file.
    #[arg(long)]
    spec: Option<PathBuf>,
    #[command(flatten)]
    scale: ScaleArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Training config (TOML); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Epochs (with --resume: the new total).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Examples per SGD step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Carve N training examples off as a validation split.
    #[arg(long)]
    val: Option<usize>,
    /// Run directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last finished epoch.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Run directory, or a sparse model file written by `export`.
    run: PathBuf,
    /// Evaluate this model file (sparse or safetensors) with the run directory's spec.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// Run directory.
    #[arg(required_unless_present = "preset")]
    run: Option<PathBuf>,
    /// Inspect a preset instead.
    #[arg(long, conflicts_with = "run")]
    preset: Option<Preset>,
    #[command(flatten)]
    scale: ScaleArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FetchName {
    Mnist,
    FashionMnist,
}

#[derive(Args)]
struct FetchArgs {
    /// Dataset to download.
    name: FetchName,
    /// Destination directory (default: $MAXPRUNE_DATA/<name>, else ./data/<name>).
    #[arg(long)]
    dest: Option<PathBuf>,
    /// Base address to download from instead of the official mirrors (repeatable).
    #[arg(long)]
    mirror: Vec<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Run directory to write (replaced if it holds an earlier demo).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Epochs to train.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Retraining epochs after the prune step.
    #[arg(long, default_value_t = 2)]
    retrain_epochs: usize,
}

#[derive(Args)]
struct BenchArgs {
    /// Run directory to measure; a schedule directory (from `prune`) measures its last accepted
    /// step, and a pruned run is compared with the run its schedule started from.
    #[arg(required_unless_present = "preset")]
    run: Option<PathBuf>,
    /// Compare inference speed with this run directory instead (the unpruned network).
    #[arg(long, conflicts_with = "preset")]
    against: Option<PathBuf>,
    /// Alternating rounds of each speedup measurement (median and quartiles reported).
    #[arg(long, default_value_t = SPEEDUP_ROUNDS)]
    rounds: usize,
    /// Measure a freshly initialised preset instead.
    #[arg(long, conflicts_with = "run")]
    preset: Option<Preset>,
    #[command(flatten)]
    scale: ScaleArgs,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Batch size of the training measurement (1,280 images per repetition).
    #[arg(long, default_value_t = 64)]
    train_batch: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Renders training progress as indicatif bars.
struct Bars {
    bar: Option<ProgressBar>,
}

impl Observer for Bars {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::EpochStart { epoch, epochs, steps } => {
                let bar = ProgressBar::new(*steps as u64).with_style(
                    ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_message(format!("{epoch}/{epochs}"));
                self.bar = Some(bar);
            }
            Event::Step { step, loss } => {
                if let Some(b) = &self.bar {
                    b.set_position(*step as u64 + 1);
                    if step % 20 == 0 {
                        b.set_prefix(format!("{loss:.3}"));
                    }
                }
            }
            Event::EpochEnd(m) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let val = m
                    .val
                    .as_ref()
                    .map_or(String::new(), |v| format!(", val acc {:.2}%", 100.0 * v.accuracy));
                eprintln!(
                    "epoch {}: train loss {:.4}{val}, test acc {:.2}% (loss {:.4}), {:.0} img/s",
                    m.epoch,
                    m.train_loss,
                    100.0 * m.test.accuracy,
                    m.test.loss,
                    m.train_img_per_s
                );
            }
        }
    }
}

fn observer(quiet: bool) -> Box<dyn Observer> {
    if quiet {
        Box::new(Silent)
    } else {
        Box::new(Bars { bar: None })
    }
}

impl Command {
    /// The run directory, schedule directory or file this command writes, when `--out` names
    /// it (reproduce derives its default output from the dataset, and locks it itself).
    fn output(&self) -> Option<&Path> {
        match self {
            Command::Train(a) => Some(&a.out),
            Command::Demo(a) => Some(&a.out),
            Command::Relevance(a) => Some(&a.out),
            Command::Sensitivity(a) => Some(&a.out),
            Command::Prune(PruneCommand::Neurons(a)) => Some(&a.out),
            Command::Prune(PruneCommand::Plan(a)) => Some(&a.out),
            Command::Prune(PruneCommand::Apply(a)) => Some(&a.out),
            Command::Prune(PruneCommand::Weights(a)) => Some(&a.out),
            Command::Export(a) => Some(&a.out),
            Command::Import(a) => Some(&a.out),
            Command::Verify(a) => a.out.as_deref(),
            Command::Reproduce(_) | Command::Eval(_) | Command::Inspect(_) | Command::Fetch(_) | Command::Bench(_) => {
                None
            }
        }
    }
}

/// Holds the advisory lock on `out` for the rest of the command: one writer per output.
fn lock_output(out: &Path) -> Result<maxprune::fsio::OutputLock> {
    let command: Vec<String> = std::env::args().collect();
    Ok(maxprune::fsio::OutputLock::acquire(out, &command.join(" "))?)
}

fn device() -> Device {
    maxprune::device()
}

/// Compute backends this build can use.
#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// Pure-Rust CPU backend (always built).
    Flex,
    /// GPU through wgpu (Vulkan on Linux); needs `--features wgpu`.
    Wgpu,
    /// NVIDIA GPU through CUDA; needs `--features cuda` (its build downloads LLVM).
    Cuda,
}

impl Backend {
    fn device(self) -> Result<Device> {
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

fn load_dataset(name: &str, data_dir: Option<&Path>) -> Result<Dataset> {
    let name: DatasetName = name.parse()?;
    Ok(Dataset::load(&name, data_dir)?)
}

fn cmd_train(a: TrainArgs, quiet: bool) -> Result<()> {
    if a.epochs == Some(0) {
        bail!("--epochs: expected at least 1, found 0");
    }
    let (dir, splits) = if a.resume {
        let dir = RunDir::open(&a.out)?;
        if let Some(e) = a.epochs {
            let mut c = dir.config()?;
            c.epochs = e;
            dir.set_config(&c)?;
        }
        (dir, None)
    } else {
        let mut config = match &a.config {
            Some(p) => TrainConfig::from_toml(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                &p.display().to_string(),
            )?,
            None => TrainConfig::default(),
        };
        if let Some(d) = &a.data.dataset {
            config.dataset = d.clone();
        }
        config.epochs = a.epochs.unwrap_or(config.epochs);
        config.seed = a.seed.unwrap_or(config.seed);
        config.batch_size = a.batch_size.unwrap_or(config.batch_size);
        config.base_lr = a.lr.unwrap_or(config.base_lr);
        config.val = a.val.unwrap_or(config.val);
        if config.epochs == 0 {
            bail!("epochs: expected at least 1 for a new run, found 0 (from --config)");
        }
        let spec = match (&a.preset, &a.spec) {
            (Some(p), _) => p.spec(),
            (None, Some(path)) => ArchSpec::from_json(
                &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                &path.display().to_string(),
            )?,
            (None, None) => bail!("give --preset or --spec"),
        };
        let net = Network::init(&a.scale.apply(spec)?, config.seed, &device())?;
        // Checked before the directory exists, so a refused run leaves nothing that blocks a retry.
        let data = load_dataset(&config.dataset, a.data.data_dir.as_deref())?;
        let splits = Splits::new(&data, &config)?;
        check_trainable(&net, &splits, &config.dataset)?;
        (RunDir::create(&a.out, &net, &config)?, Some(splits))
    };
    let config = dir.config()?;
    let splits = match splits {
        Some(splits) => splits,
        None => Splits::new(&load_dataset(&config.dataset, a.data.data_dir.as_deref())?, &config)?,
    };
    let ckpt = train(&dir, &splits, observer(quiet).as_mut())?;
    if let Some(m) = ckpt.history.last() {
        println!(
            "{}: test accuracy {:.2}% after {} epochs ({})",
            dir.path().display(),
            100.0 * m.test.accuracy,
            m.epoch,
            config.dataset
        );
    }
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let (net, recorded, batch) = if a.run.is_file() {
        let (net, dataset) = sparse_file(&a.run)?;
        (net, dataset, TrainConfig::default().eval_batch_size)
    } else {
        let dir = RunDir::open(&a.run)?;
        let config = dir.config()?;
        let net = match &a.model {
            None => dir.network(&device())?,
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let source = path.display().to_string();
                let spec = dir.spec()?;
                if sparse::is_sparse(&bytes) {
                    let (net, _) = sparse::decode(&bytes, &source, &device())?;
                    if net.spec() != &spec {
                        bail!(
                            "{source}: made for another spec than {} ({} vs {})",
                            a.run.display(),
                            net.spec().name,
                            spec.name
                        );
                    }
                    net
                } else {
                    Network::from_safetensors(&spec, &bytes, &source, &device())?
                }
            }
        };
        (net, Some(config.dataset), config.eval_batch_size)
    };
    let Some(name) = a.data.dataset.or(recorded) else {
        bail!("{}: no dataset recorded; give --dataset", a.run.display());
    };
    let data = load_dataset(&name, a.data.data_dir.as_deref())?;
    let e = evaluate(&net, &data.test, data.classes, batch)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        println!(
            "{name} test: accuracy {:.2}% ({} examples), loss {:.4}",
            100.0 * e.accuracy,
            e.examples,
            e.loss
        );
        for (c, acc) in e.per_class.iter().enumerate() {
            println!("  class {c}: {:.2}%", 100.0 * acc);
        }
    }
    Ok(())
}

fn cmd_weights(a: WeightsArgs, quiet: bool) -> Result<()> {
    let source = RunDir::open(&a.run)?;
    let spec = source.spec()?;
    let rule = match (a.quality, &a.sparsity) {
        (Some(q), _) => WeightRule::Quality {
            conv: a.conv_quality.unwrap_or(q),
            dense: q,
        },
        (None, Some(text)) => WeightRule::Sparsity {
            targets: parse_sparsity(text, &spec)?,
        },
        (None, None) => WeightRule::Quality { conv: 1.0, dense: 1.0 },
    };
    rule.validate()?;
    let dataset = a.data.dataset.clone().unwrap_or(source.config()?.dataset);
    let data = load_dataset(&dataset, a.data.data_dir.as_deref())?;
    let schedule = WeightSchedule {
        rule,
        steps: a.steps,
        retrain: a.retrain.retrain(dataset),
    };
    let report = run_and_print(&source, &a.out, &schedule, &data, a.retrain.resume, quiet)?;
    if report.final_step > 0 {
        let final_dir = a.out.join(format!("step-{:02}", report.final_step));
        let net = RunDir::open(&final_dir)?.network(&device())?;
        print!("{}", sparsity_markdown(&sparsity(&net)));
    }
    Ok(())
}

/// The network in a sparse `.mxs` file, and the dataset it records.
fn sparse_file(path: &Path) -> Result<(Network, Option<String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(sparse::decode(&bytes, &path.display().to_string(), &device())?)
}

fn cmd_export(a: ExportArgs) -> Result<()> {
    // A run directory, or a sparse file (which records its dataset).
    let (net, dataset) = if a.run.is_file() {
        sparse_file(&a.run)?
    } else {
        let dir = RunDir::open(&a.run)?;
        (dir.network(&device())?, Some(dir.config()?.dataset))
    };
    let dense = net.to_safetensors();
    let bytes = match a.format {
        ExportFormat::Sparse => sparse::encode(&net, dataset.as_deref()),
        ExportFormat::Dense => dense.clone(),
        ExportFormat::Onnx => maxprune::onnx::export(&net)?,
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

fn cmd_import(a: ImportArgs) -> Result<()> {
    let spec = a.scale.apply(a.preset.spec())?;
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let (net, report) = torchvision(&spec, &bytes, &a.file.display().to_string(), a.seed, &device())?;
    let config = TrainConfig {
        dataset: a.data.dataset.clone().unwrap_or(TrainConfig::default().dataset),
        seed: a.seed,
        epochs: 0,
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

fn cmd_verify(a: VerifyArgs) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    let net = dir.network(&device())?;
    let text = std::fs::read_to_string(&a.pairs).with_context(|| format!("reading {}", a.pairs.display()))?;
    let folds = parse_pairs(&text, &a.pairs.display().to_string())?;
    let layers = net.spec().embedding_depth(a.layer.as_deref())?;
    let v = verify(&net, &folds, &a.images, a.distance, layers)?;
    if let Some(out) = &a.out {
        maxprune::fsio::create_dir(out)?;
        maxprune::fsio::write_atomic(&out.join("verify.json"), serde_json::to_string_pretty(&v)?.as_bytes())?;
        let label = format!("AUC {:.4}", v.auc);
        let mut chart = Chart::new("ROC of face verification", "false positive rate", "true positive rate");
        chart.series = vec![
            Series::new(label, v.roc.clone(), Mark::Curve),
            Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)], Mark::Curve),
        ];
        let svg = chart.to_svg()?;
        maxprune::fsio::write_atomic(&out.join("roc.svg"), svg.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} folds of {} pairs, {:?} distance: accuracy {:.2}% ± {:.2}% (standard error), AUC {:.4}",
            folds.len(),
            folds.first().map_or(0, Vec::len),
            a.distance,
            100.0 * v.mean,
            100.0 * v.std_error,
            v.auc
        );
    }
    Ok(())
}

fn cmd_reproduce(a: ReproduceArgs, quiet: bool) -> Result<()> {
    let Experiment::Lenet5 = a.experiment;
    let config = if a.quick {
        ReproduceConfig::quick(a.seeds.clone())
    } else {
        ReproduceConfig::full(a.data.dataset.as_deref().unwrap_or("fashion-mnist"), a.seeds.clone())
    };
    let data = load_dataset(&config.dataset, a.data.data_dir.as_deref())?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("results/lenet5-{}", config.dataset)));
    let _lock = lock_output(&out)?;
    let total = maxprune::reproduce::STAGES_PER_SEED * config.seeds.len();
    let mut done = 0;
    let report = reproduce(&config, &data, &out, observer(quiet).as_mut(), &mut |stage| {
        done += 1;
        if !quiet {
            eprintln!("[{done}/{total}] {stage}");
        }
    })?;
    print!(
        "{}",
        std::fs::read_to_string(out.join("REPORT.md")).with_context(|| format!("reading {}", out.display()))?
    );
    println!(
        "wrote {} ({:.0} s)",
        out.join("REPORT.md").display(),
        report.wall_seconds
    );
    Ok(())
}

/// Runs a schedule, printing its rows as they finish and its table at the end.
fn run_and_print(
    source: &RunDir,
    out: &Path,
    pruner: &dyn Pruner,
    data: &Dataset,
    resume: bool,
    quiet: bool,
) -> Result<ScheduleReport> {
    let report = run_schedule(
        source,
        out,
        pruner,
        data,
        resume,
        observer(quiet).as_mut(),
        &mut print_row(quiet),
    )?;
    print!("{}", markdown_table(&report.rows));
    println!(
        "result: step {} of {}; report in {}",
        report.final_step,
        out.display(),
        out.join("report.md").display()
    );
    Ok(report)
}

/// Prints each finished schedule row as a Markdown table row (unless quiet).
fn print_row(quiet: bool) -> impl FnMut(&StepRow) {
    move |r| {
        if !quiet {
            let table = markdown_table(std::slice::from_ref(r));
            eprintln!("{}", table.lines().nth(2).unwrap_or_default());
        }
    }
}

fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let spec = match (&a.preset, &a.run) {
        (Some(p), _) => p.spec(),
        (None, Some(r)) => RunDir::open(r)?.spec()?,
        (None, None) => bail!("give a run directory or --preset"),
    };
    let spec = a.scale.apply(spec)?;
    let infos = spec.validate()?;
    let params: usize = infos.iter().map(|l| l.params).sum();
    let flops: usize = infos.iter().map(|l| l.flops).sum();
    if a.json {
        let j =
            serde_json::json!({ "arch": spec.name, "params": params, "flops": flops, "layers": infos, "spec": spec });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "{} (input {}x{}x{})",
        spec.name, spec.input.channels, spec.input.height, spec.input.width
    );
    println!(
        "{:>3} {:<10} {:<8} {:>12} {:>6} {:>5} {:>9} {:>12} {:>14}",
        "#", "kind", "name", "output", "units", "k", "pieces", "params", "FLOPs"
    );
    for l in &infos {
        println!(
            "{:>3} {:<10} {:<8} {:>12} {:>6} {:>5} {:>9} {:>12} {:>14}",
            l.index,
            l.kind,
            l.name.as_deref().unwrap_or(""),
            l.output.to_string(),
            l.units.map_or(String::new(), |u| u.to_string()),
            l.k.as_deref().unwrap_or(""),
            l.rectified.map_or("", |r| if r { "rectified" } else { "linear" }),
            l.params,
            l.flops
        );
    }
    println!("total: {params} parameters, {flops} FLOPs per example");
    Ok(())
}

fn cmd_fetch(a: FetchArgs, quiet: bool) -> Result<()> {
    let name = match a.name {
        FetchName::Mnist => DatasetName::Mnist,
        FetchName::FashionMnist => DatasetName::FashionMnist,
    };
    let (mirrors, files) = sources(&name).expect("fetchable datasets have sources");
    let sub = name.dir_name().expect("named dataset");
    let dest = a.dest.unwrap_or_else(|| match std::env::var_os("MAXPRUNE_DATA") {
        Some(root) => PathBuf::from(root).join(sub),
        None => PathBuf::from("data").join(sub),
    });
    let mirrors: Vec<String> = if a.mirror.is_empty() {
        mirrors.iter().map(|m| m.to_string()).collect()
    } else {
        a.mirror
            .iter()
            .map(|m| if m.ends_with('/') { m.clone() } else { format!("{m}/") })
            .collect()
    };
    let mut bar: Option<ProgressBar> = None;
    fetch_files(&files, &mirrors, &dest, &mut |e| match e {
        FetchEvent::Start { name, total } if !quiet => {
            let b = ProgressBar::new(total.unwrap_or(0)).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("valid template"),
            );
            b.set_message(name.clone());
            bar = Some(b);
        }
        FetchEvent::Progress(n) => {
            if let Some(b) = &bar {
                b.set_position(*n);
            }
        }
        FetchEvent::Done { name, cached } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if !quiet {
                eprintln!(
                    "{name}: {}",
                    if *cached {
                        "already present, checksum ok"
                    } else {
                        "downloaded, checksum ok"
                    }
                );
            }
        }
        _ => {}
    })?;
    println!("{name} is in {}", dest.display());
    Ok(())
}

const DEMO_MARKER: &str = ".maxprune-demo";

fn cmd_demo(a: DemoArgs, quiet: bool) -> Result<()> {
    if a.out.exists() {
        if !a.out.join(DEMO_MARKER).exists() {
            bail!(
                "{} exists and is not an earlier demo; choose another --out",
                a.out.display()
            );
        }
        std::fs::remove_dir_all(&a.out).with_context(|| format!("removing the earlier demo in {}", a.out.display()))?;
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    std::fs::write(a.out.join(DEMO_MARKER), b"").with_context(|| format!("writing in {}", a.out.display()))?;
    let config = TrainConfig {
        dataset: "embedded".into(),
        epochs: a.epochs,
        val: 300,
        ..TrainConfig::default()
    };
    let spec = Preset::Lenet5Maxout.spec();
    let net = Network::init(&spec, config.seed, &device())?;
    let train_dir = a.out.join("train");
    let dir = RunDir::create(&train_dir, &net, &config)?;
    let data = Dataset::embedded()?;
    let splits = Splits::new(&data, &config)?;
    eprintln!(
        "demo 1/2: train lenet5-maxout ({} parameters) on the built-in Fashion-MNIST subset ({} train, {} val, {} test)",
        net.num_params(),
        splits.train.len(),
        config.val,
        splits.test.len()
    );
    let ckpt = train(&dir, &splits, observer(quiet).as_mut())?;
    let m = ckpt.history.last().context("no epoch trained")?;
    println!(
        "demo: trained, test accuracy {:.2}% after {} epochs ({})",
        100.0 * m.test.accuracy,
        m.epoch,
        train_dir.display()
    );
    eprintln!(
        "demo 2/2: arg-max relevance -> drop the least relevant piece of every unit -> retrain {} epochs",
        a.retrain_epochs
    );
    let schedule = ScheduleConfig::paper(
        None,
        Some(1),
        Retrain {
            retrain_epochs: a.retrain_epochs,
            tolerance: 100.0,
            val: config.val,
            dataset: config.dataset.clone(),
            seed: config.seed,
            distill: None,
            retrain_lr: None,
        },
    );
    let prune_dir = a.out.join("prune");
    let report = run_schedule(
        &dir,
        &prune_dir,
        &schedule,
        &data,
        false,
        observer(quiet).as_mut(),
        &mut |_| {},
    )?;
    print!("{}", markdown_table(&report.rows));
    println!("demo: report in {}", prune_dir.join("report.md").display());
    Ok(())
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    let (net, base) = match (&a.preset, &a.run) {
        (Some(p), _) => (Network::init(&a.scale.apply(p.spec())?, 1, &device())?, None),
        (None, Some(r)) if a.scale.is_none() => {
            let found = pruned_and_source(r)?;
            let measured = found.as_ref().map_or(r.clone(), |(step, _)| step.clone());
            let base = a.against.clone().or(found.map(|(_, source)| source));
            (RunDir::open(&measured)?.network(&device())?, base)
        }
        (None, Some(_)) => bail!("--width, --input-size and --classes resize a --preset, not a trained run"),
        (None, None) => bail!("give a run directory or --preset"),
    };
    let mut r = bench(
        &net,
        &BenchConfig {
            reps: a.reps,
            train_batch: a.train_batch,
            ..BenchConfig::default()
        },
    );
    if let Some(base) = base {
        let base_net = RunDir::open(&base)?.network(&device())?;
        r.against = Some(Comparison {
            base: base.display().to_string(),
            speedups: [1, 64, 256].map(|b| speedup(&base_net, &net, b, a.rounds)).to_vec(),
        });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{} on {} with {} threads, {:?} kernels ({} parameters)",
        net.spec().name,
        r.backend,
        r.threads,
        r.kernels,
        r.params
    );
    let train = format!("train (batch {}):", r.train_batch);
    println!("  {train:<24}{:>9.0} img/s", r.train_img_per_s);
    println!("  inference (batch 256):  {:>9.0} img/s", r.infer_img_per_s);
    println!("  latency (batch 1):      {:>9.3} ms", r.latency_ms_b1);
    println!("  relevance pass:         {:>9.0} img/s", r.relevance_img_per_s);
    if let Some(c) = &r.against {
        println!(
            "  inference speedup against {} (median of {} alternating rounds, quartiles in brackets):",
            c.base, a.rounds
        );
        for s in &c.speedups {
            println!("    {:<20}{}", format!("batch {}:", s.batch), s.cell());
        }
        if c.speedups.iter().any(|s| s.too_noisy()) {
            println!(
                "  noisy: quartiles more than {:.0}% of the median apart (a busy machine?); rerun when it is quiet, or with more --rounds",
                100.0 * MAX_SPREAD
            );
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid file of this kind", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(maxprune::fsio::write_atomic(path, bytes)?)
}

fn cmd_sensitivity(a: SensitivityArgs) -> Result<()> {
    use maxprune::prune::sensitivity::{Cut, sensitivity};
    maxprune::prune::sensitivity::check_fractions(&a.fractions).context("--fractions")?;
    let dir = RunDir::open(&a.run)?;
    let config = dir.config()?;
    let val = a.val.unwrap_or(config.val);
    if val == 0 || val != config.val {
        bail!(
            "--val {val}: sensitivity is measured on validation examples the network has not seen, and {} was \
             trained with val = {}; train it with --val N (and give the same N here)",
            a.run.display(),
            config.val
        );
    }
    let net = dir.network(&device())?;
    let spec = net.spec();
    let maxouts = spec.maxout_layers();
    let producer = |m: usize| spec.producer_of(m).and_then(|p| spec.layers[p].name()).unwrap_or("");
    let names: Vec<&str> = maxouts.iter().map(|&m| producer(m)).collect();
    let layers = if a.layers.is_empty() {
        maxouts.clone()
    } else {
        a.layers
            .iter()
            .map(|name| match maxouts.iter().find(|&&m| producer(m) == name) {
                Some(&m) => Ok(m),
                None => bail!(
                    "--layers: '{name}' does not produce the pieces of a maxout layer of {}; expected one of {}",
                    spec.name,
                    names.join(", ")
                ),
            })
            .collect::<Result<Vec<_>>>()?
    };
    let data = load_dataset(
        a.data.dataset.as_deref().unwrap_or(&config.dataset),
        a.data.data_dir.as_deref(),
    )?;
    check_classes(spec, data.classes, &data.name.to_string())?;
    let splits = Splits::new(&data, &config)?;
    let Some(val_split) = &splits.val else {
        bail!("{}: no validation split", a.run.display());
    };
    let rel = criterion(a.criterion.criterion, a.criterion.ties, config.seed).score(
        &net,
        &splits.train,
        config.eval_batch_size,
    )?;
    let cut = match a.cut {
        CutArg::Pieces => Cut::Pieces,
        CutArg::Units => Cut::Units,
    };
    let s = sensitivity(
        &net,
        &rel,
        cut,
        &layers,
        &a.fractions,
        (val_split, data.classes, config.eval_batch_size),
    )?;
    maxprune::fsio::create_dir(&a.out)?;
    write_file(
        &a.out.join("sensitivity.json"),
        serde_json::to_string_pretty(&s)?.as_bytes(),
    )?;
    let md = s.to_markdown();
    write_file(&a.out.join("sensitivity.md"), md.as_bytes())?;
    write_file(&a.out.join("sensitivity.svg"), s.chart()?.as_bytes())?;
    print!("{md}");
    println!("wrote {}", a.out.display());
    Ok(())
}

fn cmd_relevance(a: RelevanceArgs) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    let config = dir.config()?;
    let data = load_dataset(
        a.data.dataset.as_deref().unwrap_or(&config.dataset),
        a.data.data_dir.as_deref(),
    )?;
    let split = match a.split {
        SplitName::Train => &data.train,
        SplitName::Test => &data.test,
    };
    let net = dir.network(&device())?;
    check_classes(net.spec(), data.classes, &data.name.to_string())?;
    let rel =
        criterion(a.criterion.criterion, a.criterion.ties, config.seed).score(&net, split, config.eval_batch_size)?;
    write_file(&a.out, serde_json::to_string_pretty(&rel)?.as_bytes())?;
    for l in &rel.layers {
        let values: Vec<f64> = l.scores.iter().flatten().copied().collect();
        let svg = relevance_histogram(&rel, l)?;
        let path = a.out.with_file_name(format!(
            "{}-{}.svg",
            a.out.file_stem().and_then(|s| s.to_str()).unwrap_or("relevance"),
            l.producer
        ));
        write_file(&path, svg.as_bytes())?;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "layer {} ('{}'): {} pieces over {} contests; lowest score {:.4}; histogram {}",
            l.layer,
            l.producer,
            values.len(),
            l.contests,
            min,
            path.display()
        );
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

fn cmd_neurons(a: NeuronsArgs, quiet: bool) -> Result<()> {
    let source = RunDir::open(&a.run)?;
    let dataset = a.data.dataset.clone().unwrap_or(source.config()?.dataset);
    let data = load_dataset(&dataset, a.data.data_dir.as_deref())?;
    if a.control && a.steps.is_none() {
        bail!("--control needs --steps (the number of retraining rounds to match)");
    }
    let config = ScheduleConfig {
        criterion: a.criterion.criterion,
        ties: a.criterion.ties,
        policy: a.policy.policy(),
        until_k: a.until_k.or(if a.steps.is_none() { Some(1) } else { None }),
        steps: a.steps,
        control: a.control,
        retrain: a.retrain.retrain(dataset),
    };
    config.validate()?;
    run_and_print(&source, &a.out, &config, &data, a.retrain.resume, quiet)?;
    Ok(())
}

fn cmd_plan(a: PlanArgs) -> Result<()> {
    let spec = RunDir::open(&a.run)?.spec()?;
    let rel: Relevance = read_json(&a.relevance)?;
    let plan = select(&rel, &spec, a.policy.policy()).with_context(|| format!("{}", a.relevance.display()))?;
    write_file(&a.out, plan.to_json().as_bytes())?;
    println!("wrote {}", a.out.display());
    Ok(())
}

fn cmd_apply(a: ApplyArgs) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    let net = dir.network(&device())?;
    let text = std::fs::read_to_string(&a.plan).with_context(|| format!("reading {}", a.plan.display()))?;
    let plan = PrunePlan::from_json(&text, &a.plan.display().to_string())?;
    let pruned = apply(&net, &plan).with_context(|| format!("{}", a.plan.display()))?;
    let config = TrainConfig {
        epochs: 0,
        ..dir.config()?
    };
    RunDir::create(&a.out, &pruned, &config)?;
    println!(
        "{}: {} -> {} parameters",
        a.out.display(),
        net.num_params(),
        pruned.num_params()
    );
    Ok(())
}

/// Most worker threads `--threads` may ask for (more only queue on any machine this runs on).
const MAX_THREADS: usize = 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    maxprune::keep_freed_memory();
    if let Some(n) = cli.threads.filter(|n| !(1..=MAX_THREADS).contains(n)) {
        eprintln!("error: --threads: expected 1 to {MAX_THREADS}, found {n}");
        return ExitCode::FAILURE;
    }
    if let Some(n) = cli.threads {
        // SAFETY: no other thread exists yet; the backend reads this when it starts its pool.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    let quiet = cli.quiet;
    maxprune::set_kernels(match cli.kernels {
        KernelsArg::Own => Kernels::Own,
        KernelsArg::Burn => Kernels::Burn,
    });
    let chosen = cli.device.device().map(maxprune::set_device);
    let lock = cli.command.output().map(lock_output).transpose();
    let result = chosen.and(lock).and_then(|_lock| match cli.command {
        Command::Train(a) => cmd_train(a, quiet),
        Command::Eval(a) => cmd_eval(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Fetch(a) => cmd_fetch(a, quiet),
        Command::Demo(a) => cmd_demo(a, quiet),
        Command::Bench(a) => cmd_bench(a),
        Command::Relevance(a) => cmd_relevance(a),
        Command::Sensitivity(a) => cmd_sensitivity(a),
        Command::Prune(PruneCommand::Neurons(a)) => cmd_neurons(a, quiet),
        Command::Prune(PruneCommand::Plan(a)) => cmd_plan(a),
        Command::Prune(PruneCommand::Apply(a)) => cmd_apply(a),
        Command::Prune(PruneCommand::Weights(a)) => cmd_weights(a, quiet),
        Command::Export(a) => cmd_export(a),
        Command::Reproduce(a) => cmd_reproduce(a, quiet),
        Command::Import(a) => cmd_import(a),
        Command::Verify(a) => cmd_verify(a),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
