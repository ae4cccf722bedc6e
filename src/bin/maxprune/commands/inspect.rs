//! `maxprune inspect`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use maxprune::train::RunDir;

use crate::args::{ArchArgs, ScaleArgs};

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// Run directory (or inspect --preset or --spec instead).
    #[arg(required_unless_present_any = ["preset", "spec"], conflicts_with_all = ["preset", "spec"])]
    pub(crate) run: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let spec = match &a.run {
        Some(r) => RunDir::open(r)?.spec()?,
        None => a.arch.spec()?,
    };
    let spec = a.scale.apply(spec)?;
    let infos = spec.validate()?;
    let params: usize = infos.iter().map(|l| l.params).sum();
    let flops: usize = infos.iter().map(|l| l.flops).sum();
    if a.json {
        let j =
            serde_json::json!({ "arch": spec.name, "params": params, "flops": flops, "layers": infos, "spec": spec });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "{} (input {}x{}x{})",
        spec.name, spec.input.channels, spec.input.height, spec.input.width
    );
    println!(
        "{:>3} {:<10} {:<8} {:>12} {:>6} {:>5} {:>9} {:>12} {:>14}",
        "#", "kind", "name", "output", "units", "k", "pieces", "params", "FLOPs"
    );
    for l in &infos {
        println!(
            "{:>3} {:<10} {:<8} {:>12} {:>6} {:>5} {:>9} {:>12} {:>14}",
            l.index,
            l.kind,
            l.name.as_deref().unwrap_or(""),
            l.output.to_string(),
            l.units.map_or(String::new(), |u| u.to_string()),
            l.k.as_deref().unwrap_or(""),
            l.rectified.map_or("", |r| if r { "rectified" } else { "linear" }),
            l.params,
            l.flops
        );
    }
    println!("total: {params} parameters, {flops} FLOPs per example");
    Ok(())
}
