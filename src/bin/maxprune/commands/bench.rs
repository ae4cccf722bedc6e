//! `maxprune bench`: arguments and glue to the library.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use maxprune::bench::{
    BenchConfig, Comparison, LayerProfile, MAX_SPREAD, SPEEDUP_ROUNDS, bench, layer_profiles, lenet5_reference,
    speedups,
};
use maxprune::model::network::Network;
use maxprune::prune::schedule::pruned_and_source;
use maxprune::train::RunDir;

use crate::args::{ArchArgs, ScaleArgs};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Run directory to measure; a schedule directory (from `prune`) measures its last accepted
    /// step, and a pruned run is compared with the run its schedule started from.
    #[arg(required_unless_present_any = ["preset", "spec"], conflicts_with_all = ["preset", "spec"])]
    pub(crate) run: Option<PathBuf>,
    /// Compare inference speed with this run directory instead (the unpruned network).
    #[arg(long, conflicts_with_all = ["preset", "spec"])]
    pub(crate) against: Option<PathBuf>,
    /// Alternating rounds of each speedup measurement (median and quartiles reported).
    #[arg(long, default_value_t = SPEEDUP_ROUNDS)]
    pub(crate) rounds: usize,
    /// Measure a freshly initialised preset (`--preset`) or spec file (`--spec`) instead.
    #[command(flatten)]
    pub(crate) arch: ArchArgs,
    #[command(flatten)]
    pub(crate) scale: ScaleArgs,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) reps: usize,
    /// Batch size of the training measurement (1,280 images per repetition).
    #[arg(long, default_value_t = 64)]
    pub(crate) train_batch: usize,
    /// Also time each layer alone in evaluation mode at batch 1 and 256 (median of --rounds
    /// rounds that walk the layers forwards and backwards in turn) and print its share of the
    /// summed time.
    #[arg(long)]
    pub(crate) per_layer: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn cmd_bench(a: BenchArgs) -> Result<()> {
    let (net, base) = match &a.run {
        None => (
            Network::init(&a.scale.apply(a.arch.spec()?)?, 1, &maxprune::device())?,
            None,
        ),
        Some(r) if a.scale.is_none() => {
            let found = pruned_and_source(r)?;
            let measured = found.as_ref().map_or(r.clone(), |(step, _)| step.clone());
            let base = a.against.clone().or(found.map(|(_, source)| source));
            (RunDir::open(&measured)?.network(&maxprune::device())?, base)
        }
        Some(_) => bail!("--width, --input-size and --classes resize a --preset or --spec, not a trained run"),
    };
    // The largest batches bench runs: its training batch, and inference at 256.
    maxprune::memory::check_batch(net.spec(), a.train_batch, true)?;
    maxprune::memory::check_batch(net.spec(), 256, false)?;
    let mut r = bench(
        &net,
        &BenchConfig {
            reps: a.reps,
            train_batch: a.train_batch,
            ..BenchConfig::default()
        },
    );
    if let Some(base) = base {
        let base_net = RunDir::open(&base)?.network(&maxprune::device())?;
        r.against = Some(Comparison {
            base: base.display().to_string(),
            speedups: speedups(&base_net, &net, a.rounds),
        });
    }
    if a.run.is_some() {
        r.vs_lenet5 = lenet5_reference(&net).map(|lenet| Comparison {
            base: "plain LeNet-5 (the lenet5 preset)".into(),
            speedups: speedups(&lenet, &net, a.rounds),
        });
    }
    if a.per_layer {
        r.per_layer = layer_profiles(&net, a.rounds)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{} on {} with {} threads, {:?} kernels ({} parameters)",
        net.spec().name,
        r.backend,
        r.threads,
        r.kernels,
        r.params
    );
    let train = format!("train (batch {}):", r.train_batch);
    println!("  {train:<24}{:>9.0} img/s", r.train_img_per_s);
    println!("  inference (batch 256):  {:>9.0} img/s", r.infer_img_per_s);
    println!("  latency (batch 1):      {:>9.3} ms", r.latency_ms_b1);
    println!("  relevance pass:         {:>9.0} img/s", r.relevance_img_per_s);
    for c in r.against.iter().chain(&r.vs_lenet5) {
        println!(
            "  inference speedup against {} (median of {} alternating rounds, quartiles in brackets):",
            c.base, a.rounds
        );
        for s in &c.speedups {
            println!("    {:<20}{}", format!("batch {}:", s.batch), s.cell());
        }
        if c.speedups.iter().any(|s| s.too_noisy()) {
            println!(
                "  noisy: quartiles more than {:.0}% of the median apart (a busy machine?); rerun when it is quiet, or with more --rounds",
                100.0 * MAX_SPREAD
            );
        }
    }
    if !r.per_layer.is_empty() {
        print_profiles(&r.per_layer);
    }
    Ok(())
}

/// The per-layer profiles as one table, a column pair per batch size.
fn print_profiles(profiles: &[LayerProfile]) {
    println!(
        "  per-layer forward time (median of {} alternating rounds; each layer alone, so the sum is a little \
         above a whole pass):",
        profiles[0].rounds
    );
    let mut head = format!("    {:<4}{:<12}{:<10}", "#", "layer", "kind");
    for p in profiles {
        head += &format!("{:>16}{:>8}", format!("batch {} ms", p.batch), "share");
    }
    println!("{head}");
    for (i, l) in profiles[0].layers.iter().enumerate() {
        let mut line = format!(
            "    {:<4}{:<12}{:<10}",
            l.index,
            l.name.as_deref().unwrap_or("-"),
            l.kind
        );
        for p in profiles {
            let t = &p.layers[i];
            line += &format!("{:>16.4}{:>7.1}%", t.ms, 100.0 * t.share);
        }
        println!("{line}");
    }
}
