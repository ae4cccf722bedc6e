//! `maxprune verify`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use maxprune::fsio::OutputKind;
use maxprune::plot::{Chart, Mark, Series};
use maxprune::train::RunDir;
use maxprune::verify::{Distance, parse_pairs, verify};

/// The output directory of `verify`: `verify.json` is written into it first.
pub(crate) const VERIFY_OUTPUT: OutputKind = OutputKind::Dir {
    marker: "verify.json",
    what: "an earlier verification result",
};

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Run directory of the network that embeds the faces.
    pub(crate) run: PathBuf,
    /// LFW's pairs file (header `folds n`, then per fold n matched and n mismatched pairs).
    #[arg(long)]
    pub(crate) pairs: PathBuf,
    /// Image root in LFW's layout: <images>/<name>/<name>_<nnnn>.jpg.
    #[arg(long)]
    pub(crate) images: PathBuf,
    /// Distance between embeddings.
    #[arg(long, value_enum, default_value = "cosine")]
    pub(crate) distance: Distance,
    /// Embed with this layer's output (after its activation) instead of the penultimate one.
    #[arg(long)]
    pub(crate) layer: Option<String>,
    /// Write the result as JSON and the ROC curve as SVG into this directory.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn cmd_verify(a: VerifyArgs) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    let net = dir.network(&maxprune::device())?;
    maxprune::memory::check_batch(net.spec(), maxprune::verify::EMBED_BATCH, false)?;
    let text = maxprune::fsio::read_text(&a.pairs)?;
    let folds = parse_pairs(&text, &a.pairs.display().to_string())?;
    let layers = net.spec().embedding_depth(a.layer.as_deref())?;
    let v = verify((&net, &dir.normalization()?), &folds, &a.images, a.distance, layers)?;
    if let Some(out) = &a.out {
        maxprune::fsio::create_dir(out)?;
        maxprune::fsio::write_atomic(&out.join("verify.json"), serde_json::to_string_pretty(&v)?.as_bytes())?;
        let label = format!("AUC {:.4}", v.auc);
        let mut chart = Chart::new("ROC of face verification", "false positive rate", "true positive rate");
        chart.series = vec![
            Series::new(label, v.roc.clone(), Mark::Curve),
            Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)], Mark::Curve),
        ];
        let svg = chart.to_svg()?;
        maxprune::fsio::write_atomic(&out.join("roc.svg"), svg.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} folds of {} pairs, {:?} distance: accuracy {:.2}% ± {:.2}% (standard error), AUC {:.4}",
            folds.len(),
            folds.first().map_or(0, Vec::len),
            a.distance,
            100.0 * v.mean,
            100.0 * v.std_error,
            v.auc
        );
    }
    Ok(())
}
