//! The `maxprune` command line: parses arguments, sets up the backend, dispatches to one
//! command file per command and maps errors to exit codes. All work is done by the library.

mod args;
mod cli;
mod commands;
mod files;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use maxprune::model::network::Kernels;

use crate::cli::{Cli, KernelsArg};
use crate::files::{claim_output, remove_locks_on_signals};

/// Most worker threads `--threads` may ask for (more only queue on any machine this runs on).
const MAX_THREADS: usize = 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    maxprune::keep_freed_memory();
    if let Some(n) = cli.threads.filter(|n| !(1..=MAX_THREADS).contains(n)) {
        eprintln!("error: --threads: expected 1 to {MAX_THREADS}, found {n}");
        return ExitCode::FAILURE;
    }
    if let Some(n) = cli.threads {
        // SAFETY: no other thread exists yet; the backend reads this when it starts its pool.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    let quiet = cli.quiet;
    maxprune::set_kernels(match cli.kernels {
        KernelsArg::Own => Kernels::Own,
        KernelsArg::Burn => Kernels::Burn,
    });
    let chosen = cli.device.device().map(maxprune::set_device);
    remove_locks_on_signals();
    let lock = cli.command.output().map(|out| claim_output(&out)).transpose();
    let resumes = cli.command.resumes();
    let result = chosen.and(lock).and_then(|_lock| commands::run(cli.command, quiet));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(maxprune::Error::Occupied { resumable, .. }) = e.downcast_ref() {
                let resume = if *resumable && resumes {
                    "use --resume to continue it, or "
                } else {
                    "use "
                };
                eprintln!("hint: {resume}another --out");
            }
            ExitCode::FAILURE
        }
    }
}
