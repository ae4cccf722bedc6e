//! `maxprune sensitivity`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use maxprune::data::dataset::DatasetName;
use maxprune::fsio::OutputKind;
use maxprune::relevance::{CriterionKind, Pass, criterion};
use maxprune::train::{RunDir, Splits, check_classes};

use crate::args::{DataArgs, TiesArgs, layer_names};
use crate::files::write_file;

/// The output directory of `sensitivity`: `sensitivity.json` is written into it first.
pub(crate) const SENSITIVITY_OUTPUT: OutputKind = OutputKind::Dir {
    marker: "sensitivity.json",
    what: "an earlier sensitivity result",
};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CutArg {
    /// The lowest-scored fraction of the layer's pieces (at least one stays per unit).
    Pieces,
    /// The lowest-scored fraction of the layer's units (needs a criterion that ranks units,
    /// such as contribution).
    Units,
}

#[derive(Args)]
pub(crate) struct SensitivityArgs {
    /// Run directory (trained with validation examples, `train --val N`, or give --val-dataset).
    pub(crate) run: PathBuf,
    /// Unit layers to cut, by the name of the layer that produces their units: maxout layers, or
    /// plain conv/dense layers read by another one (default: every maxout layer, or in a network
    /// without maxout every plain one).
    #[arg(long, value_name = "LAYERS")]
    pub(crate) layers: Option<String>,
    /// Fractions to remove, each in (0, 1).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")]
    pub(crate) fractions: Vec<f64>,
    /// What a fraction counts.
    #[arg(long, value_enum, default_value = "pieces")]
    pub(crate) cut: CutArg,
    /// Relevance criterion (default: argmax where every cut removes pieces of maxout units;
    /// contribution where one removes whole units, as with `--cut units` or a plain conv or
    /// dense layer, since arg-max frequencies cannot rank units).
    #[arg(long, value_enum)]
    pub(crate) criterion: Option<CriterionKind>,
    #[command(flatten)]
    pub(crate) ties: TiesArgs,
    /// Validation examples (default: the run's own `val`; another count is refused, since the
    /// network has seen some of them).
    #[arg(long)]
    pub(crate) val: Option<usize>,
    /// Validate on every example of this dataset (its train and test splits) instead of the
    /// run's carve: for a network trained on all of its training split (elsewhere, say).
    #[arg(long, value_name = "DATASET", conflicts_with = "val")]
    pub(crate) val_dataset: Option<DatasetName>,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Output directory: sensitivity.json, sensitivity.md, sensitivity.svg.
    #[arg(long, default_value = "sensitivity")]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_sensitivity(a: SensitivityArgs) -> Result<()> {
    use maxprune::prune::sensitivity::{Cut, sensitivity};
    maxprune::prune::sensitivity::check_fractions(&a.fractions).context("--fractions")?;
    let dir = RunDir::open(&a.run)?;
    let mut config = dir.config()?;
    let val = a.val.unwrap_or(config.val);
    if a.val_dataset.is_some() {
        // The validation dataset replaces the carve; the whole training split is scored.
        config.val = 0;
    } else if val == 0 || val != config.val {
        bail!(
            "--val {val}: sensitivity is measured on validation examples the network has not seen, and {} was \
             trained with val = {}; train it with --val N (and give the same N here), or give --val-dataset",
            a.run.display(),
            config.val
        );
    }
    let net = dir.network(&maxprune::device())?;
    maxprune::memory::check_batch(net.spec(), config.eval_batch_size, false)?;
    let spec = net.spec();
    let layers = spec.unit_layers_named(&layer_names(a.layers.as_deref(), spec)?)?;
    let data = a
        .data
        .load_validated(&a.data.name_or(config.dataset.clone())?, a.val_dataset.as_ref())?;
    check_classes(spec, data.classes, &data.name.to_string())?;
    let splits = Splits::new(&data, &config)?;
    let Some(val_split) = &splits.val else {
        bail!("{}: no validation split", a.run.display());
    };
    let cut = match a.cut {
        CutArg::Pieces => Cut::Pieces,
        CutArg::Units => Cut::Units,
    };
    let kind = a.criterion.unwrap_or_else(|| cut.default_criterion(spec, &layers));
    let rel = criterion(kind, a.ties.ties, config.seed).score_layers(
        &net,
        Pass {
            layers: &layers,
            data: &splits.train,
            batch: config.eval_batch_size,
            norm: &splits.norm,
        },
        &mut maxprune::progress::Silent,
    )?;
    let s = sensitivity(
        &net,
        &rel,
        cut,
        &layers,
        &a.fractions,
        (val_split, data.classes, config.eval_batch_size, &splits.norm),
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
