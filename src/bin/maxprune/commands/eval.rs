//! `maxprune eval`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use maxprune::sparse;
use maxprune::train::{RunDir, TrainConfig, evaluate, predict};

use crate::args::DataArgs;
use crate::files::{sparse_file, write_file};

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Run directory, or a sparse model file written by `export`.
    pub(crate) run: PathBuf,
    /// Evaluate this model file (sparse or safetensors) with the run directory's spec.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write every test example's label and predicted class to this CSV file
    /// (`index,label,predicted`, in the test split's order).
    #[arg(long, value_name = "FILE.csv")]
    pub(crate) predictions: Option<PathBuf>,
    /// Add the class scores (logits, before softmax) to --predictions: `logit_0`, `logit_1`, ...
    #[arg(long, requires = "predictions")]
    pub(crate) logits: bool,
}

pub(crate) fn cmd_eval(a: EvalArgs) -> Result<()> {
    let (net, recorded, batch, norm) = if a.run.is_file() {
        let (net, recorded) = sparse_file(&a.run)?;
        let norm = recorded.normalization();
        (net, recorded.dataset, TrainConfig::default().eval_batch_size, norm)
    } else {
        let dir = RunDir::open(&a.run)?;
        let config = dir.config()?;
        let net = match &a.model {
            None => dir.network(&maxprune::device())?,
            Some(path) => {
                let bytes = maxprune::fsio::read_tensor_file(path)?;
                sparse::read_model(&dir.spec()?, &bytes, &path.display().to_string(), &maxprune::device())?
            }
        };
        (net, Some(config.dataset), config.eval_batch_size, dir.normalization()?)
    };
    let Some(name) = a.data.name()?.or(recorded) else {
        bail!("{}: no dataset recorded; give --dataset", a.run.display());
    };
    let data = a.data.load(&name)?;
    maxprune::memory::check_batch(net.spec(), batch, false)?;
    let e = evaluate(&net, &data.test, data.classes, batch, &norm)?;
    if let Some(path) = &a.predictions {
        write_file(
            path,
            predict(&net, &data.test, batch, &norm)?.to_csv(a.logits).as_bytes(),
        )?;
    }
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
