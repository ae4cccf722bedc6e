//! `maxprune demo`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use maxprune::demo::{DemoEvent, demo};
use maxprune::report::markdown_table;

use crate::progress::observer;

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
        observer(quiet).as_mut(),
        &mut |e| match e {
            DemoEvent::Training {
                params,
                examples: [train, val, test],
            } => eprintln!(
                "demo 1/2: train lenet5-maxout ({params} parameters) on the built-in Fashion-MNIST subset ({train} train, {val} val, {test} test)"
            ),
            DemoEvent::Trained { last, dir } => println!(
                "demo: trained, test accuracy {:.2}% after {} epochs ({})",
                100.0 * last.test.accuracy,
                last.epoch,
                dir.display()
            ),
            DemoEvent::Pruning { retrain_epochs } => eprintln!(
                "demo 2/2: arg-max relevance -> drop the least relevant piece of every unit -> retrain {retrain_epochs} epochs"
            ),
        },
    )?;
    print!("{}", markdown_table(&report.rows));
    println!("demo: report in {}", a.out.join("prune").join("report.md").display());
    Ok(())
}
