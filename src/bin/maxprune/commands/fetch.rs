//! `maxprune fetch`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use maxprune::data::dataset::{DatasetName, download_dir};
use maxprune::data::fetch::{FetchEvent, fetch_files, sources};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FetchName {
    Mnist,
    FashionMnist,
}

#[derive(Args)]
pub(crate) struct FetchArgs {
    /// Dataset to download.
    pub(crate) name: FetchName,
    /// Destination directory (default: $MAXPRUNE_DATA/<name>, else ./data/<name>).
    #[arg(long)]
    pub(crate) dest: Option<PathBuf>,
    /// Base address to download from instead of the official mirrors (repeatable).
    #[arg(long)]
    pub(crate) mirror: Vec<String>,
}

pub(crate) fn cmd_fetch(a: FetchArgs, quiet: bool) -> Result<()> {
    let name = match a.name {
        FetchName::Mnist => DatasetName::Mnist,
        FetchName::FashionMnist => DatasetName::FashionMnist,
    };
    let (mirrors, files) = sources(&name).expect("fetchable datasets have sources");
    let dest = a
        .dest
        .unwrap_or_else(|| download_dir(&name).expect("fetchable datasets have a directory name"));
    let mirrors: Vec<String> = if a.mirror.is_empty() {
        mirrors.iter().map(|m| m.to_string()).collect()
    } else {
        a.mirror
            .iter()
            .map(|m| if m.ends_with('/') { m.clone() } else { format!("{m}/") })
            .collect()
    };
    let mut bar: Option<ProgressBar> = None;
    fetch_files(&files, &mirrors, &dest, &mut |e| match e {
        FetchEvent::Start { name, total } if !quiet => {
            let b = ProgressBar::new(total.unwrap_or(0)).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("valid template"),
            );
            b.set_message(name.clone());
            bar = Some(b);
        }
        FetchEvent::Progress(n) => {
            if let Some(b) = &bar {
                b.set_position(*n);
            }
        }
        FetchEvent::Done { name, cached } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if !quiet {
                eprintln!(
                    "{name}: {}",
                    if *cached {
                        "already present, checksum ok"
                    } else {
                        "downloaded, checksum ok"
                    }
                );
            }
        }
        _ => {}
    })?;
    println!("{name} is in {}", dest.display());
    Ok(())
}
