//! `maxprune relevance`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use maxprune::data::dataset::DatasetName;
use maxprune::relevance::{Pass, criterion};
use maxprune::report::relevance_histogram;
use maxprune::train::{RunDir, Splits, check_classes};

use crate::args::{CriterionArgs, DataArgs, SplitName, layer_names};
use crate::files::write_file;
use crate::progress::Bars;

#[derive(Args)]
pub(crate) struct RelevanceArgs {
    /// Run directory.
    pub(crate) run: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Split to count on.
    #[arg(long, value_enum, default_value = "train")]
    pub(crate) split: SplitName,
    /// With --split val: count on every example of this dataset (its train and test splits)
    /// instead of the run's carve.
    #[arg(long, value_name = "DATASET")]
    pub(crate) val_dataset: Option<DatasetName>,
    #[command(flatten)]
    pub(crate) criterion: CriterionArgs,
    /// Unit layers to score, by the name of the layer producing their units (default: every
    /// maxout layer, or in a network without maxout every plain conv/dense layer read by another).
    #[arg(long, value_name = "LAYERS")]
    pub(crate) layers: Option<String>,
    /// Output JSON file (an SVG histogram per layer is written beside it).
    #[arg(long, default_value = "relevance.json")]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_relevance(a: RelevanceArgs, quiet: bool) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    let mut config = dir.config()?;
    if a.val_dataset.is_some() {
        if !matches!(a.split, SplitName::Val) {
            bail!("--val-dataset: the validation set is counted on with --split val");
        }
        // The validation dataset replaces the run's carve.
        config.val = 0;
    }
    let name = a.data.name_or(config.dataset.clone())?;
    let data = a.data.load_validated(&name, a.val_dataset.as_ref())?;
    let val;
    let split = match a.split {
        SplitName::Train => &data.train,
        SplitName::Test => &data.test,
        SplitName::Val => {
            val = Splits::new(&data, &config)?.val.with_context(|| {
                format!(
                    "--split val: {} was trained with val = 0, so it has no validation examples; give --val-dataset",
                    a.run.display()
                )
            })?;
            &val
        }
    };
    let net = dir.network(&maxprune::device())?;
    check_classes(net.spec(), data.classes, &data.name.to_string())?;
    let layers = net
        .spec()
        .unit_layers_named(&layer_names(a.layers.as_deref(), net.spec())?)?;
    maxprune::memory::check_batch(net.spec(), config.eval_batch_size, false)?;
    let rel = criterion(a.criterion.criterion, a.criterion.ties.ties, config.seed).score_layers(
        &net,
        Pass {
            layers: &layers,
            data: split,
            batch: config.eval_batch_size,
            norm: &dir.normalization()?,
        },
        &mut Bars::new(quiet),
    )?;
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
