//! Run directories: everything needed to read, evaluate, resume or prune a trained network.
//!
//! | file | content |
//! |---|---|
//! | `spec.json` | the [`ArchSpec`] |
//! | `train.toml` | the effective [`TrainConfig`] |
//! | `model.safetensors` | the parameters (PyTorch names and layouts) |
//! | `checkpoint.safetensors` | parameters, optimizer state and history: the resume point |
//! | `metrics.csv` | one row per finished epoch |
//! | `summary.json` | the last epoch's results |
//!
//! Every file is written atomically. `checkpoint.safetensors` is written first and is the
//! commit point of an epoch; the other files are views of it and are rewritten on resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;

use super::config::TrainConfig;
use super::events::EpochMetrics;
use super::sgd::Sgd;
use crate::data::dataset::DatasetName;
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
use crate::fsio;
use crate::model::network::{Network, ParamVisitor, f32_values};
use crate::model::params::Masks;
use crate::model::spec::{ArchSpec, SPEC_METADATA_KEY};

/// A network with its optimizer state and history after some epochs.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The network (on the inner, non-autodiff device).
    pub net: Network,
    /// Optimizer state.
    pub sgd: Sgd,
    /// Epochs finished.
    pub epoch: usize,
    /// SGD iterations done.
    pub iteration: usize,
    /// One entry per finished epoch.
    pub history: Vec<EpochMetrics>,
}

/// `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Architecture name.
    pub arch: &'a str,
    /// Dataset trained on.
    pub dataset: &'a DatasetName,
    /// Parameters.
    pub params: usize,
    /// FLOPs per example.
    pub flops: usize,
    /// Epochs finished.
    pub epochs: usize,
    /// Seed.
    pub seed: u64,
    /// Rayon threads (flex backend).
    pub threads: usize,
    /// The last epoch's metrics.
    pub last: Option<&'a EpochMetrics>,
}

/// A run directory on disk.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

const SPEC: &str = "spec.json";
const CONFIG: &str = "train.toml";
const MODEL: &str = "model.safetensors";
const CHECKPOINT: &str = "checkpoint.safetensors";
const METRICS: &str = "metrics.csv";
const SUMMARY: &str = "summary.json";
const VELOCITY_PREFIX: &str = "sgd.velocity.";
const MASK_PREFIX: &str = "sgd.mask.";

impl RunDir {
    /// A run directory as a command's output, for [`fsio::check_output`]: `train.toml` is
    /// written into it first.
    pub const OUTPUT: fsio::OutputKind = fsio::OutputKind::Dir {
        marker: CONFIG,
        what: "a run directory",
    };

    /// Creates a new run directory holding `net` (epoch 0) and `config`. Refuses a directory
    /// that already holds a run, so nothing is overwritten by accident.
    /// The weight masks `net` holds ([`Network::masks`]) stay applied through its training.
    pub fn create(path: &Path, net: &Network, config: &TrainConfig) -> Result<RunDir> {
        config.validate()?;
        if path.join(SPEC).exists() {
            return Err(Error::Occupied {
                path: path.to_path_buf(),
                holds: "a run (spec.json)",
                resumable: true,
            });
        }
        fsio::create_dir(path)?;
        let dir = RunDir {
            path: path.to_path_buf(),
        };
        fsio::write_atomic(&dir.file(CONFIG), config.to_toml().as_bytes())?;
        dir.save_checkpoint(&Checkpoint {
            net: net.clone(),
            sgd: Sgd::default(),
            epoch: 0,
            iteration: 0,
            history: Vec::new(),
        })?;
        // spec.json last: its presence marks a complete run directory.
        fsio::write_atomic(&dir.file(SPEC), net.spec().to_json().as_bytes())?;
        Ok(dir)
    }

    /// Opens an existing run directory (it must hold `spec.json`). A directory with
    /// `train.toml` but no `spec.json` is a run whose creation was interrupted: it holds no
    /// network, and [`create`](Self::create) treats it as empty.
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.is_dir() {
            return Err(Error::invalid(
                "run directory",
                format!("{}: not a directory", path.display()),
            ));
        }
        if !path.join(SPEC).is_file() && path.join(CONFIG).is_file() {
            return Err(Error::invalid(
                "run directory",
                format!(
                    "{}: an unfinished run directory (train.toml but no spec.json: its creation was interrupted \
                     before the first checkpoint); expected a complete run; nothing in it can be continued, create \
                     the run again (that replaces it)",
                    path.display()
                ),
            ));
        }
        if !path.join(SPEC).is_file() {
            return Err(Error::invalid(
                "run directory",
                format!(
                    "{}: no spec.json (expected a directory written by `maxprune train` or `prune`)",
                    path.display()
                ),
            ));
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The architecture.
    pub fn spec(&self) -> Result<ArchSpec> {
        let p = self.file(SPEC);
        ArchSpec::from_json(&fsio::read_text(&p)?, &p.display().to_string())
    }

    /// The training config.
    pub fn config(&self) -> Result<TrainConfig> {
        let p = self.file(CONFIG);
        TrainConfig::from_toml(&fsio::read_text(&p)?, &p.display().to_string())
    }

    /// How the run turns pixels into inputs ([`TrainConfig::normalization`]), its `train.toml`
    /// checked against its network's input first.
    pub fn normalization(&self) -> Result<Normalization> {
        let config = self.config()?;
        config.check_input(&self.spec()?.input, &self.file(CONFIG).display().to_string())?;
        Ok(config.normalization())
    }

    /// Replaces the training config (to extend a run with more epochs, say).
    pub fn set_config(&self, config: &TrainConfig) -> Result<()> {
        config.validate()?;
        fsio::write_atomic(&self.file(CONFIG), config.to_toml().as_bytes())
    }

    /// The trained network (`model.safetensors`) on `device`.
    pub fn network(&self, device: &Device) -> Result<Network> {
        Network::load(&self.spec()?, &self.file(MODEL), device)
    }

    /// The last checkpoint, loaded on `device`.
    pub fn checkpoint(&self, device: &Device) -> Result<Checkpoint> {
        let path = self.file(CHECKPOINT);
        let source = path.display().to_string();
        let bytes = fsio::read_tensor_file(&path)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Format {
            path: source.clone(),
            what: "safetensors header".into(),
            expected: "a valid header".into(),
            found: e.to_string(),
        })?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |key: &str| {
            meta.get(key).ok_or_else(|| Error::Format {
                path: source.clone(),
                what: format!("metadata '{key}'"),
                expected: "present".into(),
                found: "missing".into(),
            })
        };
        let parse_err = |key: &str, e: &dyn std::fmt::Display| Error::Format {
            path: source.clone(),
            what: format!("metadata '{key}'"),
            expected: "a valid value".into(),
            found: e.to_string(),
        };
        let epoch: usize = field("epoch")?.parse().map_err(|e| parse_err("epoch", &e))?;
        let iteration: usize = field("iteration")?.parse().map_err(|e| parse_err("iteration", &e))?;
        let history: Vec<EpochMetrics> =
            serde_json::from_str(field("history")?).map_err(|e| parse_err("history", &e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| parse_err("tensors", &e))?;
        let mut sgd = Sgd::default();
        let mut masks = Masks::new();
        let mut model: Vec<(String, TensorView<'_>)> = Vec::new();
        for (name, view) in st.tensors() {
            let slot = match (name.strip_prefix(VELOCITY_PREFIX), name.strip_prefix(MASK_PREFIX)) {
                (Some(p), _) => Some((&mut sgd.velocity, p.to_string())),
                (_, Some(p)) => Some((&mut masks, p.to_string())),
                _ => None,
            };
            match slot {
                Some((map, param)) => {
                    let values = f32_values(view.data());
                    let n = values.len();
                    map.insert(param, Tensor::<1>::from_data(TensorData::new(values, [n]), device));
                }
                None => model.push((name, view)),
            }
        }
        let model_bytes = safetensors::serialize(model, None).map_err(|e| parse_err("tensors", &e))?;
        let net = Network::from_safetensors(
            &self.spec_for_checkpoint(&meta, &source)?,
            &model_bytes,
            &source,
            device,
        )?;
        check_optimizer_state(&net, &sgd, &masks, iteration, &source)?;
        let net = net.with_masks(&masks)?;
        check_history(epoch, iteration, &history, &source)?;
        Ok(Checkpoint {
            net,
            sgd,
            epoch,
            iteration,
            history,
        })
    }

    /// The spec stored in the checkpoint (older checkpoints: `spec.json`). A `spec.json` that
    /// says otherwise is an error, not silently ignored: `eval` and `relevance` build from
    /// `spec.json`, retraining from the checkpoint, and the two must be the same network.
    fn spec_for_checkpoint(&self, meta: &HashMap<String, String>, source: &str) -> Result<ArchSpec> {
        let Some(stored) = meta.get(SPEC_METADATA_KEY) else {
            return self.spec();
        };
        let stored = ArchSpec::from_metadata(stored, source)?;
        if self.file(SPEC).exists() && self.spec()? != stored {
            return Err(Error::Format {
                path: self.file(SPEC).display().to_string(),
                what: "architecture".into(),
                expected: format!(
                    "the spec stored in {source} (a run directory's architecture is fixed when it is created)"
                ),
                found: "a different spec (edited by hand?)".into(),
            });
        }
        Ok(stored)
    }

    /// Writes a checkpoint and its views (`model.safetensors`, `metrics.csv`, `summary.json`).
    pub fn save_checkpoint(&self, ckpt: &Checkpoint) -> Result<()> {
        let mut meta = HashMap::from([
            ("epoch".to_string(), ckpt.epoch.to_string()),
            ("iteration".to_string(), ckpt.iteration.to_string()),
            (
                "history".to_string(),
                serde_json::to_string(&ckpt.history).expect("metrics serialize"),
            ),
            (
                SPEC_METADATA_KEY.to_string(),
                serde_json::to_string(ckpt.net.spec()).expect("spec serializes"),
            ),
        ]);
        let model = ckpt.net.to_safetensors();
        let st = safetensors::SafeTensors::deserialize(&model).expect("bytes we just wrote parse");
        let masks = ckpt.net.masks();
        let state: Vec<(String, Vec<usize>, Vec<u8>)> = [(VELOCITY_PREFIX, &ckpt.sgd.velocity), (MASK_PREFIX, &masks)]
            .into_iter()
            .flat_map(|(prefix, map)| {
                map.iter().map(move |(name, v)| {
                    (
                        format!("{prefix}{name}"),
                        v.dims().to_vec(),
                        v.to_data().convert::<f32>().as_bytes().to_vec(),
                    )
                })
            })
            .collect();
        let mut views: Vec<(String, TensorView<'_>)> = st.tensors();
        for (name, shape, bytes) in &state {
            views.push((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("consistent optimizer-state bytes"),
            ));
        }
        meta.retain(|_, v| !v.is_empty());
        let bytes = safetensors::serialize(views, Some(meta)).expect("in-memory tensors serialize");
        fsio::write_atomic(&self.file(CHECKPOINT), &bytes)?;
        fsio::write_atomic(&self.file(MODEL), &model)?;
        fsio::write_atomic(&self.file(METRICS), metrics_csv(&ckpt.history).as_bytes())?;
        let config = self.config()?;
        let spec = ckpt.net.spec();
        let summary = Summary {
            arch: &spec.name,
            dataset: &config.dataset,
            params: ckpt.net.num_params(),
            flops: spec.flops()?,
            epochs: ckpt.epoch,
            seed: config.seed,
            threads: crate::threads(),
            last: ckpt.history.last(),
        };
        fsio::write_atomic(
            &self.file(SUMMARY),
            serde_json::to_string_pretty(&summary)
                .expect("summary serializes")
                .as_bytes(),
        )
    }
}

fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut out = String::from(
        "epoch,iteration,lr,train_loss,train_accuracy,val_accuracy,val_loss,test_accuracy,test_loss,train_seconds,train_img_per_s\n",
    );
    for m in history {
        let (va, vl) = m.val.as_ref().map_or((String::new(), String::new()), |v| {
            (format!("{:.6}", v.accuracy), format!("{:.6}", v.loss))
        });
        out.push_str(&format!(
            "{},{},{:.8},{:.6},{:.6},{va},{vl},{:.6},{:.6},{:.3},{:.1}\n",
            m.epoch,
            m.iteration,
            m.lr,
            m.train_loss,
            m.train_accuracy,
            m.test.accuracy,
            m.test.loss,
            m.train_seconds,
            m.train_img_per_s
        ));
    }
    out
}

/// A checkpoint's history holds one entry per finished epoch, numbered 1..=epoch, the last at
/// the checkpoint's iteration: resuming appends to it and `metrics.csv` is written from it.
fn check_history(epoch: usize, iteration: usize, history: &[EpochMetrics], source: &str) -> Result<()> {
    let numbered = history.iter().enumerate().all(|(i, m)| m.epoch == i + 1);
    let last = history.last().map_or(0, |m| m.iteration);
    if history.len() != epoch || !numbered || last != iteration {
        return Err(Error::Format {
            path: source.into(),
            what: "metadata 'history'".into(),
            expected: format!(
                "one entry per finished epoch (epochs 1..={epoch}, the last at iteration {iteration}, as metadata 'epoch' and 'iteration' say)"
            ),
            found: format!(
                "{} entries (epochs {:?}, the last at iteration {last})",
                history.len(),
                history.iter().map(|m| m.epoch).collect::<Vec<_>>()
            ),
        });
    }
    Ok(())
}

/// Every velocity and mask in a checkpoint names a parameter of its network and has one value
/// per element of it (the SGD update reads them element by element); after any SGD iteration
/// every parameter has its velocity (one resumed as zero would change the run). Buffers (running
/// statistics) have neither.
fn check_optimizer_state(net: &Network, sgd: &Sgd, masks: &Masks, iteration: usize, source: &str) -> Result<()> {
    struct Sizes(HashMap<String, usize>);
    impl ParamVisitor for Sizes {
        fn visit<const D: usize>(&mut self, name: &str, tensor: &Tensor<D>) {
            self.0.insert(name.to_string(), tensor.dims().iter().product());
        }
    }
    let mut sizes = Sizes(HashMap::new());
    net.visit_trainable(&mut sizes);
    for (prefix, state) in [(VELOCITY_PREFIX, &sgd.velocity), (MASK_PREFIX, masks)] {
        for (name, t) in state {
            let found = t.dims()[0];
            let expected = sizes.0.get(name).copied();
            if expected != Some(found) {
                return Err(Error::Format {
                    path: source.into(),
                    what: format!("tensor '{prefix}{name}'"),
                    expected: match expected {
                        Some(n) => format!("{n} values, one per element of parameter '{name}'"),
                        None => "the name of a parameter of the network".into(),
                    },
                    found: format!("{found} values"),
                });
            }
        }
    }
    if iteration > 0
        && let Some(name) = sizes.0.keys().find(|name| !sgd.velocity.contains_key(*name))
    {
        return Err(Error::Format {
            path: source.into(),
            what: format!("tensor '{VELOCITY_PREFIX}{name}'"),
            expected: format!("present (every parameter has a velocity after {iteration} SGD iterations)"),
            found: "missing".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::Preset;

    #[test]
    fn optimizer_state_that_does_not_fit_the_network_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let net = Network::init(&Preset::Lenet5Maxout.spec(), 1, &Device::flex()).unwrap();
        let run = RunDir::create(&tmp.path().join("r"), &net, &TrainConfig::default()).unwrap();
        let fits = run.checkpoint(&burn::tensor::Device::flex()).unwrap();
        let d = Device::flex();
        for (name, n) in [("fc2.weight", 7), ("fc9.weight", 3)] {
            let mut ckpt = fits.clone();
            ckpt.sgd.velocity.insert(
                name.into(),
                Tensor::<1>::from_data(TensorData::new(vec![0.0f32; n], [n]), &d),
            );
            run.save_checkpoint(&ckpt).unwrap();
            let e = run.checkpoint(&burn::tensor::Device::flex()).unwrap_err().to_string();
            assert!(
                e.contains("checkpoint.safetensors") && e.contains(&format!("'sgd.velocity.{name}'")),
                "{e}"
            );
        }
    }

    /// A checkpoint after `epochs` epochs of a tiny run (one SGD step each).
    fn trained(dir: &Path, epochs: usize) -> (RunDir, Checkpoint) {
        let data = crate::data::dataset::Dataset::embedded().unwrap();
        let config = TrainConfig {
            dataset: crate::data::dataset::DatasetName::Embedded,
            epochs,
            batch_size: 1000,
            ..TrainConfig::default()
        };
        let net = Network::init(&Preset::SeedLenet.spec(), 1, &Device::flex()).unwrap();
        let run = RunDir::create(dir, &net, &config).unwrap();
        let splits = crate::train::Splits::new(&data, &config).unwrap();
        let ckpt = crate::train::train(
            &run,
            &splits,
            &burn::tensor::Device::flex(),
            &mut crate::progress::Silent,
        )
        .unwrap();
        (run, ckpt)
    }

    #[test]
    fn regression_a_history_that_disagrees_with_the_epoch_or_a_missing_velocity_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (run, fits) = trained(&tmp.path().join("r"), 2);
        let broken = |f: &dyn Fn(&mut Checkpoint)| {
            let mut c = fits.clone();
            f(&mut c);
            run.save_checkpoint(&c).unwrap();
            run.checkpoint(&burn::tensor::Device::flex())
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let e = broken(&|c| c.epoch = 3);
        assert!(
            e.contains("checkpoint.safetensors") && e.contains("'history'") && e.contains("2 entries"),
            "{e}"
        );
        let e = broken(&|c| {
            c.history.pop();
        });
        assert!(e.contains("'history'") && e.contains("epochs 1..=2"), "{e}");
        let e = broken(&|c| c.history[1].epoch = 1);
        assert!(e.contains("epochs [1, 1]"), "{e}");
        let e = broken(&|c| {
            c.sgd.velocity.remove("fc1.bias");
        });
        assert!(e.contains("'sgd.velocity.fc1.bias'") && e.contains("missing"), "{e}");
        run.save_checkpoint(&fits).unwrap();
        assert_eq!(run.checkpoint(&burn::tensor::Device::flex()).unwrap().epoch, 2);
    }
}
