//! `maxprune train`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use maxprune::model::network::Network;
use maxprune::train::{RunDir, Splits, TrainConfig, check_trainable, pin_teacher, train};

use crate::args::{ArchArgs, DataArgs, ScaleArgs};
use crate::progress::Bars;

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Training config (TOML); flags override it.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Epochs (with --resume: the new total).
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Examples per SGD step.
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Carve N training examples off as a validation split.
    #[arg(long)]
    pub(crate) val: Option<usize>,
    /// Run directory to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Continue the run in --out from its last finished epoch.
    #[arg(long)]
    pub(crate) resume: bool,
}

pub(crate) fn cmd_train(a: TrainArgs, quiet: bool) -> Result<()> {
    if a.epochs == Some(0) {
        bail!("--epochs: expected at least 1, found 0");
    }
    let (dir, splits) = if a.resume {
        let dir = RunDir::open(&a.out)?;
        let mut c = dir.config()?;
        check_resume_flags(&a, &dir, &c)?;
        if let Some(e) = a.epochs {
            c.epochs = e;
            dir.set_config(&c)?;
        }
        (dir, None)
    } else {
        let mut config = match &a.config {
            Some(p) => TrainConfig::from_toml(&maxprune::fsio::read_text(p)?, &p.display().to_string())?,
            None => TrainConfig::default(),
        };
        config.dataset = a.data.name_or(config.dataset)?;
        config.epochs = a.epochs.unwrap_or(config.epochs);
        config.seed = a.seed.unwrap_or(config.seed);
        config.batch_size = a.batch_size.unwrap_or(config.batch_size);
        config.base_lr = a.lr.unwrap_or(config.base_lr);
        config.val = a.val.unwrap_or(config.val);
        if config.epochs == 0 {
            bail!("epochs: expected at least 1 for a new run, found 0 (from --config)");
        }
        let spec = a.scale.apply(a.arch.spec()?)?;
        let source = a
            .config
            .as_ref()
            .map_or("train.toml".into(), |p| p.display().to_string());
        config.check_input(&spec.input, &source)?;
        // Before the parameters are allocated: the batches' buffers bound the spec too.
        maxprune::memory::check_training(&spec, config.batch_size, config.eval_batch_size)?;
        let net = Network::init(&spec, config.seed, &maxprune::device())?;
        // Checked before the directory exists, so a refused run leaves nothing that blocks a retry.
        let data = a.data.load(&config.dataset)?;
        let splits = Splits::new(&data, &config)?;
        check_trainable(&net, &splits, &config)?;
        pin_teacher(&mut config, &a.out, &net)?;
        (RunDir::create(&a.out, &net, &config)?, Some(splits))
    };
    let config = dir.config()?;
    let splits = match splits {
        Some(splits) => splits,
        None => Splits::new(&a.data.load(&config.dataset)?, &config)?,
    };
    let ckpt = train(&dir, &splits, &maxprune::device(), &mut Bars::new(quiet))?;
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

/// Refuses, before anything is written, a flag that would change a resumed run: its
/// architecture, recipe and data are fixed when it is created, and its epochs can only grow. A
/// flag that repeats the run's own value is accepted. Errors name the flag and the run's value.
fn check_resume_flags(a: &TrainArgs, dir: &RunDir, run: &TrainConfig) -> Result<()> {
    let path = dir.path().display();
    let architecture = [
        ("--preset", a.arch.preset.is_some()),
        ("--spec", a.arch.spec.is_some()),
        ("--width", a.scale.width.is_some()),
        ("--input-size", a.scale.input_size.is_some()),
        ("--classes", a.scale.classes.is_some()),
    ];
    if let Some((flag, _)) = architecture.iter().find(|(_, given)| *given) {
        bail!(
            "{flag}: a resumed run keeps its architecture ({} in {path}/spec.json); drop the flag, or train \
             a new run into another --out",
            dir.spec()?.name
        );
    }
    if let Some(p) = &a.config {
        bail!(
            "--config {}: a resumed run keeps its recipe ({path}/train.toml); drop the flag (--epochs sets a \
             new total), or train a new run into another --out",
            p.display()
        );
    }
    let differs = |flag: &str, field: &str, given: Option<String>, recorded: String| match given {
        Some(g) if g != recorded => Err(anyhow!(
            "{flag} {g}: the run in {path} was started with {field} = {recorded} ({path}/train.toml), and a \
             resumed run keeps it; drop the flag, or train a new run into another --out"
        )),
        _ => Ok(()),
    };
    differs(
        "--dataset",
        "dataset",
        a.data.name()?.map(|d| d.to_string()),
        run.dataset.to_string(),
    )?;
    differs("--seed", "seed", a.seed.map(|v| v.to_string()), run.seed.to_string())?;
    differs(
        "--batch-size",
        "batch_size",
        a.batch_size.map(|v| v.to_string()),
        run.batch_size.to_string(),
    )?;
    differs("--lr", "base_lr", a.lr.map(|v| v.to_string()), run.base_lr.to_string())?;
    differs("--val", "val", a.val.map(|v| v.to_string()), run.val.to_string())?;
    if let Some(e) = a.epochs {
        let done = dir.checkpoint(&maxprune::device())?.epoch;
        if e < done {
            bail!(
                "--epochs {e}: the run in {path} has trained {done} epochs already; expected a total of at least {done}"
            );
        }
    }
    Ok(())
}
