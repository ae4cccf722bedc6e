//! `maxprune chart`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use maxprune::plot::BarChart;

use crate::files::write_file;

#[derive(Subcommand)]
pub(crate) enum ChartCommand {
    /// A horizontal bar chart of ratios from a JSON file: `{"title": ..., "value_label": ...,
    /// "bars": [["label", 1.23], ...], "reference": ["parity", 1.0]}` (reference optional).
    Bars(BarsArgs),
}

#[derive(Args)]
pub(crate) struct BarsArgs {
    /// The chart's data (JSON).
    pub(crate) data: PathBuf,
    /// Output SVG file.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_chart(c: ChartCommand) -> Result<()> {
    let ChartCommand::Bars(a) = c;
    let chart = BarChart::read(&a.data)?;
    write_file(&a.out, chart.to_svg()?.as_bytes())?;
    println!("wrote {}", a.out.display());
    Ok(())
}
