//! The paper's LeNet-5 table in one call, over several seeds: `lenet5-maxout` trained, neuron
//! pruning k=4 -> 1 on every seed with no stopping rule (the paper's schedule, as the original
//! code ran it), whole units removed from it by `contribution` until the validation rule stops
//! (beyond the paper), weight pruning after that; plain LeNet-5 trained and weight-pruned alone
//! (Han et al.). Every stopping decision is made on the validation split. Every stage is a run
//! or schedule directory, so an interrupted reproduction resumes where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::dataset::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::fsio;
use crate::model::network::Network;
use crate::model::presets::Preset;
use crate::model::spec::ArchSpec;
use crate::plot::{Chart, Mark, Series};
use crate::progress::{Observer, forward};
use crate::prune::pruner::{Pruner, Retrain, nonzeros};
use crate::prune::schedule::{ScheduleConfig, ScheduleEvent, ScheduleReport, run_schedule};
use crate::prune::select::{CostModel, Policy};
use crate::prune::stop::{PairedChange, StopRule};
use crate::prune::weight::{Target, WeightRule, WeightSchedule, dense_sparsity_for};
use crate::relevance::{CriterionKind, TiePolicy};
use crate::report::lenet5_params;
use crate::train::RunDir;
use crate::train::{Splits, TrainConfig, evaluate, train};

/// What to reproduce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReproduceConfig {
    /// Dataset.
    pub dataset: DatasetName,
    /// Seeds; every number is reported as mean ± std over them.
    pub seeds: Vec<u64>,
    /// Training epochs of the starting networks.
    pub epochs: usize,
    /// Retraining epochs per pruning step.
    pub retrain_epochs: usize,
    /// Validation examples carved off train for the stopping rules.
    pub val: usize,
    /// Tolerance of the stopping rules, in accuracy points.
    pub tolerance: f64,
    /// Weight-pruning steps.
    pub weight_steps: usize,
    /// Fraction of the units removed per step of the whole-unit schedule that follows neuron
    /// pruning.
    #[serde(default = "default_unit_fraction")]
    pub unit_fraction: f64,
    /// At most this many whole-unit steps (the validation rule usually stops them first).
    #[serde(default = "default_unit_steps")]
    pub unit_steps: usize,
    /// Weight-pruning targets after neuron pruning (`conv`, `dense`).
    pub after_neurons: (f64, f64),
    /// Weight-pruning targets on plain LeNet-5 (`conv`, `dense`).
    pub lenet5_alone: (f64, f64),
    /// The paper's reduction (against plain LeNet-5's parameters): the last row prunes the neuron- and
    /// weight-pruned network's dense weights further, in one step with the tolerance off,
    /// until at least this fraction is removed, so its accuracy there is on record.
    pub paper_removed: f64,
}

fn default_unit_fraction() -> f64 {
    0.3
}

fn default_unit_steps() -> usize {
    5
}

/// The table's rows, in order. Each seed runs one stage (a training or a schedule) per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    Lenet5,
    Lenet5Weights,
    Maxout,
    Neurons,
    Units,
    NeuronsWeights,
    Pushed,
}

impl Row {
    /// Every row, in table order.
    const ALL: [Row; 7] = [
        Row::Lenet5,
        Row::Lenet5Weights,
        Row::Maxout,
        Row::Neurons,
        Row::Units,
        Row::NeuronsWeights,
        Row::Pushed,
    ];

    /// The row's name in the table (and in `report.json`).
    fn label(self) -> &'static str {
        match self {
            Row::Lenet5 => "LeNet-5",
            Row::Lenet5Weights => "LeNet-5 + weight pruning",
            Row::Maxout => "LeNet-5 maxout",
            Row::Neurons => "+ neuron pruning (the paper's k=4 → 1)",
            Row::Units => "+ whole units removed (beyond the paper)",
            Row::NeuronsWeights => "+ neuron + weight pruning",
            Row::Pushed => "+ neuron + weight pruning, pushed to the paper's figure",
        }
    }

    /// The paper's figure (MNIST) beside the row.
    fn paper(self) -> &'static str {
        match self {
            Row::Lenet5 | Row::Maxout => "–",
            Row::Lenet5Weights => "92% (Han et al.)",
            Row::Neurons | Row::Units => "74%",
            Row::NeuronsWeights | Row::Pushed => "92%",
        }
    }
}

/// Stages announced per seed: one per row (the pushed row's announced even when the row above
/// already reaches the paper's figure).
pub const STAGES_PER_SEED: usize = Row::ALL.len();

impl ReproduceConfig {
    /// The full experiment on `dataset`: 10 epochs, 5 retraining epochs per step, 5,000
    /// validation examples, 0.3 points tolerance, 3 weight-pruning steps.
    pub fn full(dataset: DatasetName, seeds: Vec<u64>) -> Self {
        ReproduceConfig {
            dataset,
            seeds,
            epochs: 10,
            retrain_epochs: 5,
            val: 5000,
            tolerance: 0.3,
            weight_steps: 3,
            unit_fraction: default_unit_fraction(),
            unit_steps: default_unit_steps(),
            after_neurons: (0.6, 0.8),
            lenet5_alone: (0.6, 0.92),
            paper_removed: 0.92,
        }
    }

    /// A quick check on the embedded subset: 1 epoch everywhere, one weight step, and a last
    /// row pushed to 95% removed (the neuron- and weight-pruned row is already past 92%).
    pub fn quick(seeds: Vec<u64>) -> Self {
        ReproduceConfig {
            dataset: DatasetName::Embedded,
            epochs: 1,
            retrain_epochs: 1,
            val: 200,
            tolerance: 100.0,
            weight_steps: 1,
            unit_steps: 1,
            paper_removed: 0.95,
            ..ReproduceConfig::full(DatasetName::Embedded, seeds)
        }
    }
}

/// One network of the table, for one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    /// Parameters (dense count).
    pub params: usize,
    /// Nonzero parameters.
    pub nonzeros: usize,
    /// Bytes of the sparse model file.
    pub sparse_bytes: usize,
    /// Bytes of the dense safetensors file.
    pub dense_bytes: usize,
    /// FLOPs per example (dense).
    pub flops: usize,
    /// Test accuracy.
    pub accuracy: f64,
    /// Seconds its stage took (training epochs, or the pruning steps), as recorded.
    pub seconds: f64,
    /// For a schedule's result: its paired validation change against the stage's starting
    /// network (none for trainings, a schedule that kept no step, and older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_change: Option<PairedChange>,
}

/// The reproduction's result: per row name, one measurement per seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReproduceReport {
    /// The configuration.
    pub config: ReproduceConfig,
    /// Rows in table order, each with one entry per seed.
    pub rows: Vec<(String, Vec<Measured>)>,
    /// Wall-clock seconds of this invocation.
    pub wall_seconds: f64,
}

/// A finished stage: the run directory of its network, the seconds it took, and (for a
/// schedule) the paired validation change of its result against its start.
#[derive(Clone)]
struct Done {
    dir: RunDir,
    seconds: f64,
    val_change: Option<PairedChange>,
}

fn measure(done: &Done, data: &Dataset, device: &Device) -> Result<Measured> {
    let Done {
        dir,
        seconds,
        val_change,
    } = done.clone();
    let net: Network = dir.network(device)?;
    let config = dir.config()?;
    Ok(Measured {
        val_change,
        params: net.num_params(),
        nonzeros: nonzeros(&net),
        sparse_bytes: crate::sparse::encode(&net, &crate::sparse::Recorded::of(&config)).len(),
        dense_bytes: net.to_safetensors().len(),
        flops: net.spec().flops()?,
        accuracy: evaluate(
            &net,
            &data.test,
            data.classes,
            config.eval_batch_size,
            &dir.normalization()?,
        )?
        .accuracy,
        seconds,
    })
}

/// The run directory of a schedule's result: its last kept step in `out`, or `source` when it
/// kept none. A missing or broken step directory is an error naming it.
fn final_dir(out: &Path, report: &ScheduleReport, source: &RunDir) -> Result<RunDir> {
    if report.final_step == 0 {
        Ok(source.clone())
    } else {
        RunDir::open(&out.join(format!("step-{:02}", report.final_step)))
    }
}

/// Checks that the existing training stage `dir` is this stage's run: its spec is `spec` and
/// its recipe `config` (a run put in its place, say another seed's, is refused, not resumed).
/// The stages built on it record its [`crate::train::Fingerprint`] as their source.
fn check_stage(dir: &RunDir, spec: &ArchSpec, config: &TrainConfig) -> Result<RunDir> {
    let (found_spec, found) = (dir.spec()?, dir.config()?);
    if found_spec.fingerprint() != spec.fingerprint() || found != *config {
        return Err(Error::invalid(
            "reproduce stage",
            format!(
                "{}: expected this stage's run ({}, seed {}, {} epochs, val {}, {}), found {} with seed {}, {} \
                 epochs, val {}, {}; move it away or reproduce into another --out",
                dir.path().display(),
                spec.name,
                config.seed,
                config.epochs,
                config.val,
                config.dataset,
                found_spec.name,
                found.seed,
                found.epochs,
                found.val,
                found.dataset
            ),
        ));
    }
    Ok(dir.clone())
}

/// The reproduction's progress (see [`crate::progress`]).
#[derive(Debug, Clone)]
pub enum ReproduceEvent {
    /// A stage starts (or resumes).
    Stage {
        /// 1-based number of the stage.
        number: usize,
        /// Stages in the whole reproduction.
        total: usize,
        /// What the stage does, and where it writes.
        label: String,
    },
    /// Progress of the stage's training or schedule.
    Work(ScheduleEvent),
}

/// What the stages share: where they write, on which device, and whom they tell.
struct Stages<'a> {
    config: &'a ReproduceConfig,
    data: &'a Dataset,
    device: &'a Device,
    seed: u64,
    seed_dir: PathBuf,
    observer: &'a mut dyn Observer<ReproduceEvent>,
    /// Stages started so far.
    started: usize,
}

impl Stages<'_> {
    /// Tells the observer that the next stage starts.
    fn stage(&mut self, label: String) {
        self.started += 1;
        self.observer.event(&ReproduceEvent::Stage {
            number: self.started,
            total: STAGES_PER_SEED * self.config.seeds.len(),
            label: format!("seed {}: {label}", self.seed),
        });
    }

    /// Trains (or resumes) `preset` for this seed; returns its run and its recorded seconds.
    fn train(&mut self, preset: Preset) -> Result<Done> {
        let name = serde_json::to_value(preset).expect("serializes");
        let dir_path = self.seed_dir.join(name.as_str().expect("preset names are strings"));
        self.stage(format!("train {}", dir_path.display()));
        let tc = TrainConfig {
            dataset: self.config.dataset.clone(),
            epochs: self.config.epochs,
            seed: self.seed,
            val: self.config.val,
            ..TrainConfig::default()
        };
        let dir = if dir_path.join("spec.json").exists() {
            check_stage(&RunDir::open(&dir_path)?, &preset.spec(), &tc)?
        } else {
            RunDir::create(&dir_path, &Network::init(&preset.spec(), self.seed, self.device)?, &tc)?
        };
        let mut observer = forward(&mut *self.observer, |e| ReproduceEvent::Work(ScheduleEvent::Train(e)));
        let ckpt = train(&dir, &Splits::new(self.data, &tc)?, self.device, &mut observer)?;
        // Recorded per epoch, so a resumed stage reports the time it really took.
        Ok(Done {
            dir,
            seconds: ckpt.history.iter().map(|m| m.train_seconds).sum::<f64>(),
            val_change: None,
        })
    }

    /// Runs (or resumes) one schedule from `source` into `name`; returns its final network's
    /// run, the seconds its steps took and its result's validation change.
    fn schedule(&mut self, source: &Done, name: &str, pruner: &dyn Pruner) -> Result<Done> {
        let dir = self.seed_dir.join(name);
        self.stage(dir.display().to_string());
        let resume = dir.join("schedule.json").exists();
        let mut observer = forward(&mut *self.observer, ReproduceEvent::Work);
        let report = run_schedule(&source.dir, &dir, pruner, self.data, resume, self.device, &mut observer)?;
        Ok(Done {
            dir: final_dir(&dir, &report, &source.dir)?,
            seconds: report.rows.iter().skip(1).map(|r| r.seconds).sum(),
            val_change: report.rows.get(report.final_step).and_then(|r| r.val_change),
        })
    }
}

/// One seed's finished stages, one per [`Row`].
struct SeedRuns {
    lenet: Done,
    lenet_w: Done,
    maxout: Done,
    neurons: Done,
    units: Done,
    neurons_weights: Done,
    pushed: Done,
}

impl SeedRuns {
    /// The stage behind `row`.
    fn get(&self, row: Row) -> &Done {
        match row {
            Row::Lenet5 => &self.lenet,
            Row::Lenet5Weights => &self.lenet_w,
            Row::Maxout => &self.maxout,
            Row::Neurons => &self.neurons,
            Row::Units => &self.units,
            Row::NeuronsWeights => &self.neurons_weights,
            Row::Pushed => &self.pushed,
        }
    }
}

/// The output directory of [`reproduce`], for [`fsio::check_output`]: `reproduce.json` is
/// written into it first.
pub const REPRODUCE_OUTPUT: fsio::OutputKind = fsio::OutputKind::Dir {
    marker: "reproduce.json",
    what: "an earlier reproduction",
};

/// Runs (or resumes) every stage into `out`, with the networks on `device`.
pub fn reproduce(
    config: &ReproduceConfig,
    data: &Dataset,
    out: &Path,
    device: &Device,
    observer: &mut dyn Observer<ReproduceEvent>,
) -> Result<ReproduceReport> {
    let start = Instant::now();
    fsio::create_dir(out)?;
    fsio::write_atomic(
        &out.join("reproduce.json"),
        serde_json::to_string_pretty(config).expect("serializes").as_bytes(),
    )?;
    let retrain = |seed| Retrain {
        retrain_epochs: config.retrain_epochs,
        tolerance: config.tolerance,
        val: config.val,
        dataset: config.dataset.clone(),
        seed,
        ..Retrain::default()
    };
    let weights = |(conv, dense): (f64, f64), seed| WeightSchedule {
        rule: WeightRule::Sparsity {
            targets: BTreeMap::from([(Target::Conv, conv), (Target::Dense, dense)]),
        },
        steps: config.weight_steps,
        retrain: retrain(seed),
    };
    let mut rows: Vec<(String, Vec<Measured>)> = Row::ALL.map(|r| (r.label().to_string(), Vec::new())).to_vec();
    let mut ctx = Stages {
        config,
        data,
        device,
        seed: 0,
        seed_dir: PathBuf::new(),
        observer,
        started: 0,
    };
    for &seed in &config.seeds {
        (ctx.seed, ctx.seed_dir) = (seed, out.join(format!("seed-{seed}")));
        // The maxout network's stages first: they are the paper's, and the longest.
        let maxout = ctx.train(Preset::Lenet5Maxout)?;
        // The paper's schedule as the original code ran it: k=4 -> 1, no stopping rule.
        let neurons = ScheduleConfig::paper(
            Some(1),
            None,
            Retrain {
                stop_rule: StopRule::None,
                ..retrain(seed)
            },
        );
        let neurons = ctx.schedule(&maxout, "lenet5-maxout-neurons", &neurons)?;
        let units = ScheduleConfig {
            criterion: CriterionKind::Contribution,
            ties: TiePolicy::Split,
            policy: Policy::Units {
                fraction: config.unit_fraction,
            },
            until_k: None,
            steps: Some(config.unit_steps),
            control: false,
            layers: Vec::new(),
            budgets: Vec::new(),
            target: None,
            cost: CostModel::Flops,
            retrain: retrain(seed),
        };
        let units = ctx.schedule(&neurons, "lenet5-maxout-units", &units)?;
        let neurons_weights = ctx.schedule(
            &units,
            "lenet5-maxout-neurons-weights",
            &weights(config.after_neurons, seed),
        )?;
        let budget = ((1.0 - config.paper_removed) * lenet5_params() as f64).floor() as usize;
        let pushed = match dense_sparsity_for(&neurons_weights.dir.network(device)?, budget) {
            Some(dense) => {
                // Dense layers only: the budget was computed with the conv weights as they are.
                let push = WeightSchedule {
                    rule: WeightRule::Sparsity {
                        targets: BTreeMap::from([(Target::Dense, dense)]),
                    },
                    steps: 1,
                    retrain: Retrain {
                        tolerance: 100.0,
                        ..retrain(seed)
                    },
                };
                ctx.schedule(&neurons_weights, "lenet5-maxout-paper-reduction", &push)?
            }
            None => {
                ctx.stage("the row above already reaches the paper's figure".into());
                Done {
                    seconds: 0.0,
                    val_change: None,
                    ..neurons_weights.clone()
                }
            }
        };
        let lenet = ctx.train(Preset::Lenet5)?;
        let lenet_w = ctx.schedule(&lenet, "lenet5-weights", &weights(config.lenet5_alone, seed))?;
        let runs = SeedRuns {
            lenet,
            lenet_w,
            maxout,
            neurons,
            units,
            neurons_weights,
            pushed,
        };
        for (row, measured) in Row::ALL.into_iter().zip(&mut rows) {
            measured.1.push(measure(runs.get(row), data, device)?);
        }
    }
    let report = ReproduceReport {
        config: config.clone(),
        rows,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    write(out, &report)?;
    Ok(report)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

impl ReproduceReport {
    /// The report as Markdown (what `REPORT.md` holds): the settings, the table with the
    /// paper's figure beside each row, and the per-seed table.
    pub fn markdown(&self) -> String {
        let r = self;
        let c = &r.config;
        let mut md = format!(
            "# LeNet-5 on `{}`: neuron and weight pruning\n\n{} seed(s) ({}); {} training epochs, {} retraining epochs per pruning step, \
             {} validation examples, tolerance {} points for the stages beyond the paper (neuron pruning runs k=4 → 1 on every seed with \
             no stopping rule, as the original code did); weight pruning in {} steps to conv/dense sparsity {:?} after neuron pruning \
             and {:?} on plain LeNet-5; the last row prunes the dense weights of the row above it further, in one step to {:.0}% removed (the sparsity follows from that \
             budget), and retrains with the tolerance off (100 points). Accuracy on the test split, mean ± sample std over seeds; time per seed. Recorded time of all stages, summed over \
             seeds: {:.0} min (this invocation: {:.0} s, less when it resumed finished stages).\n\n",
            c.dataset,
            c.seeds.len(),
            c.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            c.epochs,
            c.retrain_epochs,
            c.val,
            c.tolerance,
            c.weight_steps,
            c.after_neurons,
            c.lenet5_alone,
            100.0 * c.paper_removed,
            r.rows.iter().flat_map(|(_, ms)| ms).map(|m| m.seconds).sum::<f64>() / 60.0,
            r.wall_seconds
        );
        let lenet5 = lenet5_params();
        md += &format!(
            "| network | params | nonzeros | removed vs LeNet-5's {lenet5} | paper (MNIST) | sparse file | dense file | FLOPs | test accuracy | time |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        for (name, ms) in &r.rows {
            // Reports written under other row names get no paper figure.
            let paper = Row::ALL
                .into_iter()
                .find(|row| row.label() == name)
                .map_or("–", Row::paper);
            let avg = |f: &dyn Fn(&Measured) -> f64| mean_std(&ms.iter().map(f).collect::<Vec<_>>()).0;
            let (acc, sd) = mean_std(&ms.iter().map(|m| 100.0 * m.accuracy).collect::<Vec<_>>());
            let nz = avg(&|m| m.nonzeros as f64);
            md += &format!(
                "| {name} | {:.0} | {nz:.0} | {:.1}% | {paper} | {:.0} B | {:.0} B | {:.0} | {acc:.2} ± {sd:.2}% | {:.0} s |\n",
                avg(&|m| m.params as f64),
                100.0 * (1.0 - nz / lenet5 as f64),
                avg(&|m| m.sparse_bytes as f64),
                avg(&|m| m.dense_bytes as f64),
                avg(&|m| m.flops as f64),
                avg(&|m| m.seconds)
            );
        }
        // Each seed's stopping rules decide for themselves, so a mean row can mix networks.
        md += &format!(
            "\nPer seed, nonzeros and test accuracy; for a pruning stage also its result's validation change against the \
             stage's starting network, in points with its paired 95% interval:\n\n| network |{}\n|---|{}\n",
            c.seeds.iter().map(|s| format!(" seed {s} |")).collect::<String>(),
            "---:|".repeat(c.seeds.len())
        );
        for (name, ms) in &r.rows {
            let cells: String = ms
                .iter()
                .map(|m| {
                    let change = m.val_change.map_or(String::new(), |c| format!(", val {}", c.cell()));
                    format!(" {} / {:.2}%{change} |", m.nonzeros, 100.0 * m.accuracy)
                })
                .collect();
            md += &format!("| {name} |{cells}\n");
        }
        md
    }
}

fn write(out: &Path, r: &ReproduceReport) -> Result<()> {
    fsio::write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(r).expect("serializes").as_bytes(),
    )?;
    fsio::write_atomic(&out.join("REPORT.md"), r.markdown().as_bytes())?;
    let mut chart = Chart::new(
        "Test accuracy vs nonzero parameters",
        "nonzero parameters",
        "test accuracy (%)",
    );
    chart.series = r
        .rows
        .iter()
        .map(|(name, ms)| {
            let points = ms.iter().map(|m| (m.nonzeros as f64, 100.0 * m.accuracy)).collect();
            Series::new(name.clone(), points, Mark::Points)
        })
        .collect();
    // The paper's LeNet-5 figures (MNIST): where its nonzero counts fall.
    for (label, removed) in [("paper: neuron -74%", 0.74), ("paper: + weight -92%", 0.92)] {
        chart
            .verticals
            .push((label.into(), (1.0 - removed) * lenet5_params() as f64));
    }
    let svg = chart.to_svg()?;
    fsio::write_atomic(&out.join("accuracy-vs-nonzeros.svg"), svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_result_step_is_an_error_naming_it_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let net = Network::init(&Preset::Lenet5.spec(), 1, &device).unwrap();
        let source = RunDir::create(&tmp.path().join("start"), &net, &TrainConfig::default()).unwrap();
        let report = ScheduleReport {
            source: source.path().to_path_buf(),
            description: String::new(),
            config: serde_json::Value::Null,
            rows: Vec::new(),
            final_step: 2,
            tolerance_from: None,
            ended_by: None,
        };
        let out = tmp.path().join("schedule");
        let e = final_dir(&out, &report, &source).unwrap_err().to_string();
        assert!(e.contains("step-02") && e.contains("not a directory"), "{e}");
        let none = ScheduleReport {
            final_step: 0,
            ..report
        };
        assert_eq!(final_dir(&out, &none, &source).unwrap().path(), source.path());
    }

    #[test]
    fn every_row_has_its_paper_figure_and_one_stage_per_seed() {
        assert_eq!(STAGES_PER_SEED, 7);
        let labels: std::collections::HashSet<&str> = Row::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Row::ALL.len(), "row names are distinct");
        assert_eq!(Row::Neurons.paper(), "74%");
    }
}
