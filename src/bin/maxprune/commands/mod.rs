//! One file per command: its arguments, and glue that maps them to one library call and prints the result.

pub(crate) mod bench;
pub(crate) mod chart;
pub(crate) mod demo;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod fetch;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod prune;
pub(crate) mod relevance;
pub(crate) mod reproduce;
pub(crate) mod sensitivity;
pub(crate) mod train;
pub(crate) mod verify;

use crate::cli::Command;
use prune::PruneCommand;

/// Runs one command (its output, if any, is already locked).
pub(crate) fn run(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Train(a) => train::cmd_train(a, quiet),
        Command::Eval(a) => eval::cmd_eval(a),
        Command::Inspect(a) => inspect::cmd_inspect(a),
        Command::Fetch(a) => fetch::cmd_fetch(a, quiet),
        Command::Demo(a) => demo::cmd_demo(a, quiet),
        Command::Bench(a) => bench::cmd_bench(a),
        Command::Relevance(a) => relevance::cmd_relevance(a, quiet),
        Command::Sensitivity(a) => sensitivity::cmd_sensitivity(a),
        Command::Prune(PruneCommand::Neurons(a)) => prune::cmd_neurons(a, quiet),
        Command::Prune(PruneCommand::Plan(a)) => prune::cmd_plan(a),
        Command::Prune(PruneCommand::Apply(a)) => prune::cmd_apply(a),
        Command::Prune(PruneCommand::Weights(a)) => prune::cmd_weights(a, quiet),
        Command::Export(a) => export::cmd_export(a),
        Command::Reproduce(a) => reproduce::cmd_reproduce(a, quiet),
        Command::Import(a) => import::cmd_import(a),
        Command::Verify(a) => verify::cmd_verify(a),
        Command::Chart(c) => chart::cmd_chart(c),
    }
}
