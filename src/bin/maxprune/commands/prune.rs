//! `maxprune prune`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use maxprune::prune::neuron::apply;
use maxprune::prune::plan::PrunePlan;
use maxprune::prune::schedule::{ScheduleConfig, accepted_run, default_until_k};
use maxprune::prune::select::{CostModel, parse_budgets, select};
use maxprune::prune::stop::FlopTarget;
use maxprune::prune::weight::{WeightRule, WeightSchedule, parse_sparsity, sparsity, sparsity_markdown};
use maxprune::relevance::Relevance;
use maxprune::train::{RunDir, TrainConfig};

use crate::args::{CriterionArgs, DataArgs, PolicyArgs, RetrainArgs, layer_names};
use crate::files::write_file;
use crate::progress::run_and_print;

#[derive(Subcommand)]
pub(crate) enum PruneCommand {
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
pub(crate) struct WeightsArgs {
    /// Run directory to prune (a schedule directory from `prune neurons`: its last accepted
    /// step).
    pub(crate) run: PathBuf,
    /// Output directory (one run directory per step inside).
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Han's rule: remove |w| < quality x std of the layer's surviving weights, every step.
    #[arg(long, conflicts_with = "sparsity")]
    pub(crate) quality: Option<f64>,
    /// Quality factor for conv layers (default: --quality).
    #[arg(long, requires = "quality")]
    pub(crate) conv_quality: Option<f64>,
    /// Target sparsity per layer, reached in equal increments: conv=0.5,dense=0.9 or by layer name.
    #[arg(long)]
    pub(crate) sparsity: Option<String>,
    /// Pruning steps.
    #[arg(long, default_value_t = 3)]
    pub(crate) steps: usize,
    #[command(flatten)]
    pub(crate) retrain: RetrainArgs,
}

#[derive(Args)]
pub(crate) struct NeuronsArgs {
    /// Run directory to prune.
    pub(crate) run: PathBuf,
    /// Output directory (one run directory per step inside).
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) criterion: CriterionArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// Stop once every unit has at most this many pieces.
    #[arg(long)]
    pub(crate) until_k: Option<usize>,
    /// Stop after this many steps.
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Control: retrain exactly as the schedule would, but prune nothing (needs --steps).
    #[arg(long)]
    pub(crate) control: bool,
    /// Unit layers to score and prune, by the name of the layer producing their units: maxout
    /// layers, or plain conv/dense layers read by another one (default: every maxout layer, or
    /// in a network without maxout every plain one).
    #[arg(long, value_name = "LAYERS")]
    pub(crate) layers: Option<String>,
    /// Per-layer budgets of whole units, conv1=0.3,conv2=0.5: the fraction of each layer's
    /// units removed in all, in equal increments over --steps (with --policy units).
    #[arg(long, conflicts_with_all = ["layers", "fraction"])]
    pub(crate) fraction_per_layer: Option<String>,
    /// Prune (with --policy cost) until the network's FLOP ratio against --against reaches
    /// this speedup, each step removing at most the FLOPs still above it; the result's
    /// speedup measured at batch 256 is reported against it.
    #[arg(long, value_name = "X")]
    pub(crate) target_speedup: Option<f64>,
    /// The FLOP ratio to reach instead of --target-speedup's (with --policy cost).
    #[arg(long, value_name = "X")]
    pub(crate) target_flops_ratio: Option<f64>,
    /// Run directory whose network the FLOP ratio counts from (default: RUN).
    #[arg(long, value_name = "RUN")]
    pub(crate) against: Option<PathBuf>,
    /// What --policy cost ranks a unit's cost by. `measured`: time, not FLOPs: each scored
    /// layer's forward time at batch 256 (its conv or dense layer, the activations, maxout and
    /// pooling after it, and the layer reading it), profiled once on RUN (as `bench
    /// --per-layer`) and recorded in schedule.json, shared among the layer's units in proportion
    /// to their FLOPs. Step budgets and the target still count FLOPs.
    #[arg(long, value_enum, default_value = "flops")]
    pub(crate) cost: CostArg,
    #[command(flatten)]
    pub(crate) retrain: RetrainArgs,
}

/// `--cost`.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum CostArg {
    /// The FLOPs a unit costs.
    Flops,
    /// The time a unit costs, from a per-layer profile of RUN.
    Measured,
}

#[derive(Args)]
pub(crate) struct PlanArgs {
    /// Run directory the relevance was computed on.
    pub(crate) run: PathBuf,
    /// Relevance file.
    #[arg(long)]
    pub(crate) relevance: PathBuf,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// Output plan file.
    #[arg(long, default_value = "plan.json")]
    pub(crate) out: PathBuf,
}

#[derive(Args)]
pub(crate) struct ApplyArgs {
    /// Run directory to prune.
    pub(crate) run: PathBuf,
    /// Plan file.
    #[arg(long)]
    pub(crate) plan: PathBuf,
    /// Output run directory (the pruned network, not retrained).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_weights(a: WeightsArgs, quiet: bool) -> Result<()> {
    let source = RunDir::open(&accepted_run(&a.run)?)?;
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
    let dataset = a.data.name_or(source.config()?.dataset)?;
    let data = a.data.load_validated(&dataset, a.retrain.val_dataset.as_ref())?;
    let schedule = WeightSchedule {
        rule,
        steps: a.steps,
        retrain: a.retrain.retrain(dataset),
    };
    let report = run_and_print(&source, &a.out, &schedule, &data, a.retrain.resume, quiet)?;
    if report.final_step > 0 {
        let final_dir = a.out.join(format!("step-{:02}", report.final_step));
        let net = RunDir::open(&final_dir)?.network(&maxprune::device())?;
        print!("{}", sparsity_markdown(&sparsity(&net)));
    }
    Ok(())
}

pub(crate) fn cmd_neurons(a: NeuronsArgs, quiet: bool) -> Result<()> {
    let source = RunDir::open(&a.run)?;
    let dataset = a.data.name_or(source.config()?.dataset)?;
    let data = a.data.load_validated(&dataset, a.retrain.val_dataset.as_ref())?;
    if a.control && a.steps.is_none() {
        bail!("--control needs --steps (the number of retraining rounds to match)");
    }
    let spec = source.spec()?;
    let budgets = match &a.fraction_per_layer {
        Some(text) => parse_budgets(text, &spec).context("--fraction-per-layer")?,
        None => Vec::new(),
    };
    let target = match (a.target_flops_ratio, a.target_speedup, &a.against) {
        (None, None, Some(_)) => bail!("--against needs --target-speedup or --target-flops-ratio"),
        (None, None, None) => None,
        (ratio, speedup, against) => {
            let against = against.as_deref().map(std::path::absolute).transpose()?;
            let reference = match &against {
                Some(p) => RunDir::open(p)?.spec()?.flops()?,
                None => spec.flops()?,
            };
            Some(FlopTarget::new(ratio, speedup, reference, against).context("--target-speedup")?)
        }
    };
    let config = ScheduleConfig {
        criterion: a.criterion.criterion,
        ties: a.criterion.ties.ties,
        policy: a.policy.policy(),
        // A FLOP target stops the schedule in place of the default piece count.
        until_k: match target {
            Some(_) => a.until_k,
            None => default_until_k(a.until_k, a.steps),
        },
        steps: a.steps,
        control: a.control,
        layers: layer_names(a.layers.as_deref(), &spec)?,
        budgets,
        target,
        cost: CostModel::Flops,
        retrain: a.retrain.retrain(dataset),
    };
    config.validate()?;
    let config = match a.cost {
        CostArg::Flops => config,
        CostArg::Measured => config
            .with_measured_cost(&source.network(&maxprune::device())?, &a.out)
            .context("--cost measured")?,
    };
    run_and_print(&source, &a.out, &config, &data, a.retrain.resume, quiet)?;
    Ok(())
}

pub(crate) fn cmd_plan(a: PlanArgs) -> Result<()> {
    let spec = RunDir::open(&a.run)?.spec()?;
    let rel: Relevance = maxprune::fsio::read_json(&a.relevance)?;
    let plan = select(&rel, &spec, a.policy.policy()).with_context(|| format!("{}", a.relevance.display()))?;
    write_file(&a.out, plan.to_json().as_bytes())?;
    println!("wrote {}", a.out.display());
    Ok(())
}

pub(crate) fn cmd_apply(a: ApplyArgs) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    let net = dir.network(&maxprune::device())?;
    let text = maxprune::fsio::read_text(&a.plan)?;
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
