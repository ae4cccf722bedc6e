//! `maxprune fetch`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use maxprune::data::dataset::{DatasetName, download_dir};
use maxprune::data::fetch::{fetch, sources};

use crate::progress::Bars;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FetchName {
    Mnist,
    FashionMnist,
    /// CIFAR-10's binary release (the archive, unpacked beside itself).
    Cifar10,
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
        FetchName::Cifar10 => DatasetName::Cifar10(PathBuf::from("cifar10")),
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
    fetch(&name, &files, &mirrors, &dest, &mut Bars::new(quiet))?;
    match name {
        DatasetName::Cifar10(_) => println!("cifar10 is in {0} (use it as cifar10:{0})", dest.display()),
        _ => println!("{name} is in {}", dest.display()),
    }
    Ok(())
}
