//! `maxprune demo`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use maxprune::demo::demo;
use maxprune::report::markdown_table;

use crate::progress::Bars;

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Run directory to write (replaced if it holds an earlier demo).
    #[arg(long, default_value = "runs/demo")]
    pub(crate) out: PathBuf,
    /// Epochs to train.
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    /// Retraining epochs after the prune step.
    #[arg(long, default_value_t = 2)]
    pub(crate) retrain_epochs: usize,
}

pub(crate) fn cmd_demo(a: DemoArgs, quiet: bool) -> Result<()> {
    let report = demo(
        &a.out,
        a.epochs,
        a.retrain_epochs,
        &maxprune::device(),
        &mut Bars::new(quiet),
    )?;
    print!("{}", markdown_table(&report.rows));
    println!("demo: report in {}", a.out.join("prune").join("report.md").display());
    Ok(())
}
