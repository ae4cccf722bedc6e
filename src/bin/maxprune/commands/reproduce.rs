//! `maxprune reproduce`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use maxprune::reproduce::{ReproduceConfig, reproduce};

use crate::args::DataArgs;
use crate::files::{load_dataset, lock_output};
use crate::progress::observer;

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
        ReproduceConfig::full(a.data.dataset.as_deref().unwrap_or("fashion-mnist"), a.seeds.clone())
    };
    let data = load_dataset(&config.dataset, a.data.data_dir.as_deref())?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("results/lenet5-{}", config.dataset)));
    let _lock = lock_output(&out)?;
    let total = maxprune::reproduce::STAGES_PER_SEED * config.seeds.len();
    let mut done = 0;
    let report = reproduce(&config, &data, &out, observer(quiet).as_mut(), &mut |stage| {
        done += 1;
        if !quiet {
            eprintln!("[{done}/{total}] {stage}");
        }
    })?;
    print!("{}", report.markdown());
    println!(
        "wrote {} ({:.0} s)",
        out.join("REPORT.md").display(),
        report.wall_seconds
    );
    Ok(())
}
