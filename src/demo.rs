//! The demo: train `lenet5-maxout` on the embedded Fashion-MNIST subset, then one step of the
//! paper's schedule, in a directory of its own that a later demo replaces (and nothing else).
//!
//! | path | content |
//! |---|---|
//! | `.maxprune-demo` | marker: the directory is a demo's, so a later demo may replace it |
//! | `train/` | the trained run directory |
//! | `prune/` | the one-step schedule directory |

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::data::dataset::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::fsio::OutputKind;
use crate::model::network::Network;
use crate::model::presets::Preset;
use crate::progress::{Observer, forward};
use crate::prune::pruner::Retrain;
use crate::prune::schedule::{ScheduleConfig, ScheduleEvent, ScheduleReport, run_schedule};
use crate::train::{EpochMetrics, RunDir, Splits, TrainConfig, train};

/// The file that marks a directory as a demo's.
pub const DEMO_MARKER: &str = ".maxprune-demo";

/// A demo's output directory, for [`crate::fsio::check_output`].
pub const DEMO_OUTPUT: OutputKind = OutputKind::Dir {
    marker: DEMO_MARKER,
    what: "an earlier demo",
};

/// Validation examples the demo carves off the subset's training split.
const DEMO_VAL: usize = 300;

/// The demo's progress (see [`crate::progress`]).
#[derive(Debug, Clone)]
pub enum DemoEvent {
    /// Training starts.
    Training {
        /// Parameters of the network.
        params: usize,
        /// Training, validation and test examples.
        examples: [usize; 3],
    },
    /// Training ended.
    Trained {
        /// The last epoch's metrics.
        last: Box<EpochMetrics>,
        /// The run directory.
        dir: PathBuf,
    },
    /// The prune step starts.
    Pruning {
        /// Retraining epochs after the cut.
        retrain_epochs: usize,
    },
    /// Progress of the training, or of the prune step.
    Work(ScheduleEvent),
}

/// Empties `out` for a new demo: creates it, or replaces it when it holds an earlier demo
/// (its marker file); any other existing path is refused and left as it is.
pub fn prepare(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.join(DEMO_MARKER).exists() {
            return Err(Error::Occupied {
                path: out.to_path_buf(),
                holds: "files that are not an earlier demo",
                resumable: false,
            });
        }
        std::fs::remove_dir_all(out).map_err(|e| Error::io("removing the earlier demo in", out, e))?;
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    std::fs::write(out.join(DEMO_MARKER), b"").map_err(|e| Error::io("writing in", out, e))
}

/// Runs the demo into `out` (see [`prepare`]): `epochs` of training, then one prune step
/// retrained for `retrain_epochs`. Returns the schedule's report.
pub fn demo(
    out: &Path,
    epochs: usize,
    retrain_epochs: usize,
    device: &Device,
    observer: &mut dyn Observer<DemoEvent>,
) -> Result<ScheduleReport> {
    prepare(out)?;
    let config = TrainConfig {
        dataset: DatasetName::Embedded,
        epochs,
        val: DEMO_VAL,
        ..TrainConfig::default()
    };
    let net = Network::init(&Preset::Lenet5Maxout.spec(), config.seed, device)?;
    let train_dir = out.join("train");
    let dir = RunDir::create(&train_dir, &net, &config)?;
    let data = Dataset::embedded()?;
    let splits = Splits::new(&data, &config)?;
    observer.event(&DemoEvent::Training {
        params: net.num_params(),
        examples: [splits.train.len(), config.val, splits.test.len()],
    });
    let ckpt = train(
        &dir,
        &splits,
        device,
        &mut forward(&mut *observer, |e| DemoEvent::Work(ScheduleEvent::Train(e))),
    )?;
    let last = ckpt
        .history
        .last()
        .ok_or_else(|| Error::invalid("demo", "epochs: expected at least 1, found 0"))?;
    observer.event(&DemoEvent::Trained {
        last: Box::new(last.clone()),
        dir: train_dir,
    });
    observer.event(&DemoEvent::Pruning { retrain_epochs });
    let schedule = ScheduleConfig::paper(
        None,
        Some(1),
        Retrain {
            retrain_epochs,
            tolerance: 100.0,
            val: config.val,
            dataset: config.dataset.clone(),
            seed: config.seed,
            distill: None,
            tolerance_against: None,
            val_dataset: None,
            retrain_lr: None,
            recover_epochs: 0,
        },
    );
    let mut pruning = forward(observer, DemoEvent::Work);
    run_schedule(&dir, &out.join("prune"), &schedule, &data, false, device, &mut pruning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_replaces_only_an_earlier_demo() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join("mine");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("notes.txt"), b"keep").unwrap();
        let e = prepare(&other).unwrap_err().to_string();
        assert!(e.contains("not an earlier demo"), "{e}");
        assert!(other.join("notes.txt").exists());
        let out = tmp.path().join("demo");
        prepare(&out).unwrap();
        std::fs::write(out.join("old.txt"), b"from the last demo").unwrap();
        prepare(&out).unwrap();
        assert!(out.join(DEMO_MARKER).exists() && !out.join("old.txt").exists());
    }
}
