//! Iterative neuron pruning with retraining: relevance -> plan -> apply -> retrain -> evaluate,
//! step after step, each step a run directory of its own, with a validation stopping rule.
//!
//! Layout of the output directory:
//!
//! | path | content |
//! |---|---|
//! | `schedule.json` | the [`ScheduleConfig`] and the source run |
//! | `step-NN/` | a normal run directory, plus `relevance.json`, `plan.json` and `step.json` |
//! | `report.json`, `report.md` | one [`StepRow`] per step |
//! | `accuracy-vs-params.svg`, `relevance-step-NN.svg` | plots |
//!
//! `step.json` is written last: a step directory without it is unfinished and is resumed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::neuron::apply;
use super::plan::{PLAN_FORMAT_VERSION, PrunePlan};
use super::select::{Policy, select};
use crate::error::{Error, Result};
use crate::fsio;
use crate::model::network::Network;
use crate::model::spec::{ArchSpec, LayerSpec};
use crate::relevance::{CriterionKind, Relevance, TiePolicy, criterion, spec_fingerprint};
use crate::report::{self, LENET5_PARAMS, StepRow};
use crate::run::RunDir;
use crate::train::{Observer, Splits, TrainConfig, evaluate, train};

/// What a schedule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Relevance criterion.
    pub criterion: CriterionKind,
    /// Tie policy of the arg-max criterion.
    pub ties: TiePolicy,
    /// Selection policy.
    pub policy: Policy,
    /// Stop once every unit has at most this many pieces.
    pub until_k: Option<usize>,
    /// Stop after this many steps.
    pub steps: Option<usize>,
    /// Retraining epochs per step (the recipe restarts each step, as in the original code).
    pub retrain_epochs: usize,
    /// Stop when validation accuracy falls more than this many percentage points below the
    /// starting network's; the last step within tolerance is the result.
    pub tolerance: f64,
    /// Validation examples carved off train (0 disables the stopping rule).
    pub val: usize,
    /// Control run: identical retraining, but nothing is pruned.
    pub control: bool,
    /// Dataset.
    pub dataset: String,
    /// Seed of retraining and of the random criterion.
    pub seed: u64,
}

/// The result of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// The run directory pruned.
    pub source: PathBuf,
    /// The configuration.
    pub config: ScheduleConfig,
    /// Step 0 (the starting network) and every step run.
    pub rows: Vec<StepRow>,
    /// The last step within tolerance (0: none was).
    pub final_step: usize,
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    out.join(format!("step-{step:02}"))
}

/// Pieces per unit of every maxout layer, as text and as a histogram.
fn pieces_of(spec: &ArchSpec) -> (Vec<String>, Vec<Vec<usize>>) {
    spec.maxout_layers()
        .into_iter()
        .map(|m| {
            let LayerSpec::Maxout { pieces } = &spec.layers[m] else {
                unreachable!("maxout layer")
            };
            let mut hist = vec![0; pieces.k_max() + 1];
            pieces.counts().into_iter().for_each(|c| hist[c] += 1);
            (pieces.to_string(), hist)
        })
        .unzip()
}

fn k_max(spec: &ArchSpec) -> usize {
    spec.maxout_layers()
        .into_iter()
        .map(|m| match &spec.layers[m] {
            LayerSpec::Maxout { pieces } => pieces.k_max(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    fsio::write_atomic(
        path,
        serde_json::to_string_pretty(value).expect("serializes").as_bytes(),
    )
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    serde_json::from_str(&fsio::read_text(path)?).map_err(|e| Error::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Evaluates a network on the validation (if any) and test splits.
fn accuracies(net: &Network, splits: &Splits, batch: usize) -> (Option<f64>, f64) {
    (
        splits
            .val
            .as_ref()
            .map(|v| evaluate(net, v, splits.classes, batch).accuracy),
        evaluate(net, &splits.test, splits.classes, batch).accuracy,
    )
}

/// Runs (or resumes) a pruning schedule on the network in `source`, writing into `out`.
/// `on_step` is called with every finished row (resumed ones included).
pub fn run_schedule(
    source: &RunDir,
    out: &Path,
    config: &ScheduleConfig,
    data: &crate::data::dataset::Dataset,
    resume: bool,
    observer: &mut dyn Observer,
    on_step: &mut dyn FnMut(&StepRow),
) -> Result<ScheduleReport> {
    if config.until_k.is_none() && config.steps.is_none() {
        return Err(Error::invalid("schedule", "give --until-k or --steps"));
    }
    let cfg_path = out.join("schedule.json");
    if cfg_path.exists() {
        if !resume {
            return Err(Error::invalid(
                "output directory",
                format!(
                    "{} already holds a schedule; use --resume to continue it",
                    out.display()
                ),
            ));
        }
        let saved: ScheduleConfig = read_json(&cfg_path)?;
        if &saved != config {
            return Err(Error::invalid(
                "schedule",
                format!("--resume with options that differ from {}", cfg_path.display()),
            ));
        }
    } else {
        fsio::create_dir(out)?;
        write_json(&cfg_path, config)?;
    }
    let base_train = source.config()?;
    if config.val > 0 && base_train.val != config.val {
        return Err(Error::invalid(
            "schedule",
            format!(
                "--val {}: the starting network in {} was trained with val = {}, so it has seen (some of) these \
                 validation examples and the stopping rule would compare against an inflated accuracy; train it \
                 with --val {} (the same fixed carve), or pass --val 0 to disable the stopping rule",
                config.val,
                source.path().display(),
                base_train.val,
                config.val
            ),
        ));
    }
    let retrain = TrainConfig {
        dataset: config.dataset.clone(),
        epochs: config.retrain_epochs,
        seed: config.seed,
        val: config.val,
        ..base_train
    };
    let splits = Splits::new(data, &retrain)?;
    let batch = retrain.eval_batch_size;

    let start = Instant::now();
    let mut net = source.network(&burn::tensor::Device::flex())?;
    let base_params = net.num_params();
    let (val0, test0) = accuracies(&net, &splits, batch);
    let row =
        |step: usize, net: &Network, before: (Option<f64>, f64), after: (Option<f64>, f64), secs: f64| -> StepRow {
            let (pieces, pieces_histogram) = pieces_of(net.spec());
            let params = net.num_params();
            let accepted = match (val0, after.0) {
                (Some(v0), Some(v)) => 100.0 * (v0 - v) <= config.tolerance,
                _ => true,
            };
            StepRow {
                step,
                pieces,
                pieces_histogram,
                params,
                removed_vs_start: 100.0 * (1.0 - params as f64 / base_params as f64),
                removed_vs_lenet5: 100.0 * (1.0 - params as f64 / LENET5_PARAMS as f64),
                flops: net.spec().flops().unwrap_or(0),
                val_before: before.0,
                test_before: before.1,
                val_after: after.0,
                test_after: after.1,
                seconds: secs,
                accepted,
            }
        };
    let mut rows = vec![row(
        0,
        &net,
        (val0, test0),
        (val0, test0),
        start.elapsed().as_secs_f64(),
    )];
    on_step(&rows[0]);
    let mut final_step = 0;
    let mut step = 0;
    loop {
        if config.steps.is_some_and(|n| step >= n)
            || config
                .until_k
                .is_some_and(|k| !config.control && k_max(net.spec()) <= k)
        {
            break;
        }
        step += 1;
        let dir = step_dir(out, step);
        let done = dir.join("step.json");
        if done.exists() {
            let r: StepRow = read_json(&done)?;
            net = RunDir::open(&dir)?.network(&burn::tensor::Device::flex())?;
            on_step(&r);
            let accepted = r.accepted;
            rows.push(r);
            if !accepted {
                break;
            }
            final_step = step;
            continue;
        }
        let t = Instant::now();
        let run = if dir.join("spec.json").exists() {
            RunDir::open(&dir)?
        } else {
            let rel = criterion(config.criterion, config.ties, config.seed).score(&net, &splits.train, batch)?;
            let plan = if config.control {
                PrunePlan {
                    format_version: PLAN_FORMAT_VERSION,
                    spec_fingerprint: spec_fingerprint(net.spec()),
                    layers: Vec::new(),
                }
            } else {
                select(&rel, net.spec(), config.policy)?
            };
            let pruned = apply(&net, &plan)?;
            let run = RunDir::create(&dir, &pruned, &retrain)?;
            write_json(&dir.join("relevance.json"), &rel)?;
            fsio::write_atomic(&dir.join("plan.json"), plan.to_json().as_bytes())?;
            write_relevance_plot(out, step, &rel)?;
            run
        };
        let before_path = dir.join("before.json");
        let before = if before_path.exists() {
            read_json::<(Option<f64>, f64)>(&before_path)?
        } else {
            // Measured on the freshly pruned network, before any retraining epoch.
            let b = accuracies(&run.checkpoint()?.net, &splits, batch);
            write_json(&before_path, &b)?;
            b
        };
        let ckpt = train(&run, &splits, observer)?;
        net = ckpt.net;
        let after = accuracies(&net, &splits, batch);
        let r = row(step, &net, before, after, t.elapsed().as_secs_f64());
        write_json(&done, &r)?;
        on_step(&r);
        let accepted = r.accepted;
        rows.push(r);
        if !accepted {
            break;
        }
        final_step = step;
    }
    let report = ScheduleReport {
        source: source.path().to_path_buf(),
        config: config.clone(),
        rows,
        final_step,
    };
    write_report(out, &report)?;
    Ok(report)
}

fn write_relevance_plot(out: &Path, step: usize, rel: &Relevance) -> Result<()> {
    let svgs: Vec<String> = rel
        .layers
        .iter()
        .map(|l| {
            let values: Vec<f64> = l.scores.iter().flatten().copied().collect();
            report::histogram(
                &format!(
                    "step {step}: {:?} scores of the pieces of '{}'",
                    rel.criterion, l.producer
                ),
                "score",
                &values,
                20,
            )
        })
        .collect();
    for (i, svg) in svgs.iter().enumerate() {
        let name = if svgs.len() == 1 {
            format!("relevance-step-{step:02}.svg")
        } else {
            format!("relevance-step-{step:02}-{i}.svg")
        };
        fsio::write_atomic(&out.join(name), svg.as_bytes())?;
    }
    Ok(())
}

fn write_report(out: &Path, report: &ScheduleReport) -> Result<()> {
    write_json(&out.join("report.json"), report)?;
    let c = &report.config;
    let mut md = format!(
        "# Neuron pruning of `{}`\n\n{} criterion `{:?}`, policy `{:?}`, {} retraining epochs per step, tolerance {} points on {} validation examples, dataset `{}`, seed {}.\n\n",
        report.source.display(),
        if c.control {
            "Control run (nothing pruned),"
        } else {
            "Relevance"
        },
        c.criterion,
        c.policy,
        c.retrain_epochs,
        c.tolerance,
        c.val,
        c.dataset,
        c.seed
    );
    md += &report::markdown_table(&report.rows);
    md += &format!("\nResult: step {} (the last within tolerance).\n", report.final_step);
    fsio::write_atomic(&out.join("report.md"), md.as_bytes())?;
    let pts = |f: &dyn Fn(&StepRow) -> f64| report.rows.iter().map(|r| (r.params as f64, f(r))).collect::<Vec<_>>();
    let svg = report::line_chart(
        "Accuracy vs parameters",
        "parameters",
        "accuracy",
        &[
            ("test, after retraining".into(), pts(&|r| r.test_after)),
            ("test, before retraining".into(), pts(&|r| r.test_before)),
        ],
    );
    fsio::write_atomic(&out.join("accuracy-vs-params.svg"), svg.as_bytes())
}
