//! `maxprune reproduce`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use maxprune::data::dataset::DatasetName;
use maxprune::reproduce::{REPRODUCE_OUTPUT, ReproduceConfig, reproduce};

use crate::args::DataArgs;
use crate::cli::Output;
use crate::files::claim_output;
use crate::progress::Bars;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Experiment {
    /// LeNet-5 and lenet5-maxout: neuron pruning, weight pruning, and both.
    Lenet5,
}

#[derive(Args)]
pub(crate) struct ReproduceArgs {
    /// Which table.
    pub(crate) experiment: Experiment,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Seeds (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub(crate) seeds: Vec<u64>,
    /// Output directory (default: results/lenet5-<dataset>).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// A quick check on the built-in subset (1 epoch everywhere).
    #[arg(long)]
    pub(crate) quick: bool,
}

pub(crate) fn cmd_reproduce(a: ReproduceArgs, quiet: bool) -> Result<()> {
    let Experiment::Lenet5 = a.experiment;
    let config = if a.quick {
        ReproduceConfig::quick(a.seeds.clone())
    } else {
        ReproduceConfig::full(a.data.name_or(DatasetName::FashionMnist)?, a.seeds.clone())
    };
    let data = a.data.load(&config.dataset)?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("results/lenet5-{}", config.dataset)));
    let _lock = claim_output(&Output {
        path: &out,
        kind: REPRODUCE_OUTPUT,
        inputs: Vec::new(),
    })?;
    let report = reproduce(&config, &data, &out, &maxprune::device(), &mut Bars::new(quiet))?;
    print!("{}", report.markdown());
    println!(
        "wrote {} ({:.0} s)",
        out.join("REPORT.md").display(),
        report.wall_seconds
    );
    Ok(())
}
