//! Reports: per-step rows of a pruning schedule as JSON and Markdown, and their charts (drawn
//! by [`crate::plot`]; deterministic, so a rerun writes the same bytes).

use serde::{Deserialize, Deserializer, Serialize};

use crate::bench::Speedup;
use crate::error::Result;
use crate::model::presets::Preset;
use crate::model::spec::ArchSpec;
use crate::plot::{Chart, Mark, Series};
use crate::prune::stop::PairedChange;
use crate::relevance::{LayerRelevance, Relevance};

/// Reads a [`Speedup`], or the plain ratio that reports held before alternating runs.
fn speedup_or_ratio<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Speedup>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Measured(Speedup),
        Ratio(f64),
    }
    Ok(match Option::<Stored>::deserialize(d)? {
        None => None,
        Some(Stored::Measured(s)) => Some(s),
        Some(Stored::Ratio(r)) => Some(Speedup::from_ratios(256, vec![r])),
    })
}

/// One row of a neuron-pruning schedule report. Step 0 is the starting network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// 0 for the starting network, then 1, 2, ...
    pub step: usize,
    /// Pieces per unit of each maxout layer (`k`, or `lo..hi` when ragged).
    pub pieces: Vec<String>,
    /// Histogram of pieces per unit of each maxout layer: `hist[layer][k]` units have k pieces.
    pub pieces_histogram: Vec<Vec<usize>>,
    /// Parameters (dense count).
    pub params: usize,
    /// Parameters that are not exactly zero (fewer than `params` after weight pruning).
    pub nonzeros: usize,
    /// Percent of the starting network's nonzero parameters removed.
    pub removed_vs_start: f64,
    /// Percent removed against plain LeNet-5's parameters ([`lenet5_params`], nonzeros
    /// counted), for a network with its input ([`lenet5_params_for`]); `None` for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_vs_lenet5: Option<f64>,
    /// FLOPs per example.
    pub flops: usize,
    /// Starting network's FLOPs / this network's FLOPs.
    pub flop_ratio: f64,
    /// Measured inference speedup at batch 256 against the starting network, by alternating
    /// runs on this machine ([`crate::bench::speedup`]); `None` at step 0. Reports written
    /// before alternating runs hold a plain ratio, read as a one-round measurement.
    #[serde(deserialize_with = "speedup_or_ratio", default)]
    pub speedup: Option<Speedup>,
    /// Measured inference speedups at batch 1, 64 and 256 against the starting network
    /// (empty at step 0 and in reports written before they were measured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speedups: Vec<Speedup>,
    /// Against plain LeNet-5, for networks with its input (none in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_lenet5: Option<VsLenet5>,
    /// Validation accuracy right after pruning, before retraining.
    pub val_before: Option<f64>,
    /// Test accuracy right after pruning, before retraining.
    pub test_before: f64,
    /// Validation accuracy after retraining.
    pub val_after: Option<f64>,
    /// Test accuracy after retraining.
    pub test_after: f64,
    /// Validation accuracy after retraining against the network the tolerance counts from (the
    /// starting network, or the reference run), on the same examples; `None` at step 0, without
    /// a validation split, and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_change: Option<PairedChange>,
    /// Wall-clock seconds of the step (relevance, pruning, retraining, evaluation).
    pub seconds: f64,
    /// Whether validation accuracy stayed within tolerance of the starting network's.
    pub accepted: bool,
    /// Epochs trained beyond the step's retraining because it was outside tolerance after it
    /// (the schedule's `recover_epochs`; 0 in older reports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recovery_epochs: usize,
}

/// Whether a count is zero: serde leaves such optional counts out of the files.
pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A network against plain LeNet-5: what pruning for speed is measured by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VsLenet5 {
    /// LeNet-5's FLOPs over this network's.
    pub flop_ratio: f64,
    /// Measured inference speedups at batch 1, 64 and 256 against a LeNet-5 on the same device
    /// ([`crate::bench::lenet5_reference`]).
    pub speedups: Vec<Speedup>,
}

/// Parameters of plain LeNet-5 (the `lenet5` preset), the paper's reference for "% removed".
pub fn lenet5_params() -> usize {
    Preset::Lenet5
        .spec()
        .num_params()
        .expect("the lenet5 preset is a valid spec")
}

/// [`lenet5_params`] when a network of `spec` is comparable with plain LeNet-5: it takes the
/// same input (as [`crate::bench::lenet5_reference`] requires); `None` otherwise, so a
/// "removed vs LeNet-5" figure is never given for, say, VGG16 at 224 pixels.
pub fn lenet5_params_for(spec: &ArchSpec) -> Option<usize> {
    (spec.input == Preset::Lenet5.spec().input).then(lenet5_params)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// `units × k` of each maxout layer (`units × lo..hi` when ragged), comma-separated.
fn units_by_pieces(r: &StepRow) -> String {
    r.pieces
        .iter()
        .zip(&r.pieces_histogram)
        .map(|(k, hist)| format!("{} × {k}", hist.iter().sum::<usize>()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows as a Markdown table; the "removed vs LeNet-5" column only when the network takes
/// LeNet-5's input (every row of a schedule does, or none). The validation change is the paired
/// change with its 95% interval ([`PairedChange::cell`]), in points.
pub fn markdown_table(rows: &[StepRow]) -> String {
    let lenet = rows.first().is_some_and(|r| r.removed_vs_lenet5.is_some());
    let mut s = format!(
        "| step | units × pieces | params | nonzeros | removed vs start |{} FLOPs | FLOP ratio | measured speedup | val acc before → after | val change, points (95% CI) | test acc before → after | time | within tolerance |\n\
         |---:|---|---:|---:|---:|{}---:|---:|---:|---|---:|---|---:|---|\n",
        if lenet { " removed vs LeNet-5 |" } else { "" },
        if lenet { "---:|" } else { "" },
    );
    for r in rows {
        s.push_str(&markdown_row(r));
        s.push('\n');
    }
    if rows.iter().any(|r| !r.speedups.is_empty() || r.vs_lenet5.is_some()) {
        s.push_str(&speed_table(rows));
    }
    s
}

/// Every row's measured speedups at batch 1, 64 and 256, against the starting network and
/// against plain LeNet-5 (with the FLOP ratio to it).
fn speed_table(rows: &[StepRow]) -> String {
    let cells = |v: &[Speedup]| match v {
        [] => "– | – | –".to_string(),
        v => v.iter().map(Speedup::cell).collect::<Vec<_>>().join(" | "),
    };
    let mut s = String::from(
        "\nMeasured inference speedups (alternating rounds, median and quartiles):\n\n\
         | step | vs start b1 | b64 | b256 | FLOP ratio vs LeNet-5 | vs LeNet-5 b1 | b64 | b256 |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let (ratio, lenet) = match &r.vs_lenet5 {
            Some(v) => (format!("{:.2}x", v.flop_ratio), cells(&v.speedups)),
            None => ("–".into(), cells(&[])),
        };
        s += &format!("| {} | {} | {ratio} | {lenet} |\n", r.step, cells(&r.speedups));
    }
    s
}

/// One row of [`markdown_table`], without its newline. An untimed step's speedup reads `–`
/// (step 0's is 1 by definition).
pub fn markdown_row(r: &StepRow) -> String {
    let untimed = if r.step == 0 { "1.00x" } else { "–" };
    format!(
        "| {} | {} | {} | {} | {:.1}% |{} {} | {:.2}x | {} | {} → {} | {} | {} → {} | {:.0} s | {} |",
        r.step,
        units_by_pieces(r),
        r.params,
        r.nonzeros,
        r.removed_vs_start,
        r.removed_vs_lenet5.map_or(String::new(), |v| format!(" {v:.1}% |")),
        r.flops,
        r.flop_ratio,
        r.speedup.map_or(untimed.into(), |s| s.cell()),
        pct(r.val_before),
        pct(r.val_after),
        r.val_change.map_or("–".into(), |c| c.cell()),
        pct(Some(r.test_before)),
        pct(Some(r.test_after)),
        r.seconds,
        match (r.accepted, r.recovery_epochs) {
            (true, 0) => "yes".into(),
            (true, n) => format!("yes, after {n} more epochs"),
            (false, 0) => "**no**".into(),
            (false, n) => format!("**no**, after {n} more epochs"),
        }
    )
}

/// Accuracy against parameters over a schedule's steps, in percent: test accuracy before and
/// after retraining, validation accuracy after retraining, the unpruned network's test accuracy
/// as a reference line, the stopping rule's band (the validation accuracy it counts from, the
/// unpruned network's or `from`, minus `tolerance` points up to it) and the chosen step marked.
pub fn accuracy_chart(rows: &[StepRow], (tolerance, from): (f64, Option<f64>), final_step: usize) -> Result<String> {
    let pct = |f: &dyn Fn(&StepRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r.params as f64, 100.0 * f(r)?)))
            .collect()
    };
    let mut c = Chart::new("Accuracy vs parameters", "parameters (dense count)", "accuracy (%)");
    c.series = vec![
        Series::new("test, after retraining", pct(&|r| Some(r.test_after)), Mark::Line),
        Series::new("test, before retraining", pct(&|r| Some(r.test_before)), Mark::Line),
        Series::new("validation, after retraining", pct(&|r| r.val_after), Mark::Line),
    ];
    c.series.retain(|s| !s.points.is_empty());
    if let Some(start) = rows.first() {
        c.reference = Some(("unpruned, test".into(), 100.0 * start.test_after));
        if let Some(val) = from.or(start.val_after) {
            let val = 100.0 * val;
            let of = if from.is_some() { "the reference's" } else { "unpruned" };
            c.band = Some((
                format!("within {tolerance} points of {of} validation"),
                val - tolerance,
                val,
            ));
        }
    }
    if let Some(r) = rows.iter().find(|r| r.step == final_step) {
        c.highlight = Some((
            format!("chosen: step {final_step}"),
            (r.params as f64, 100.0 * r.test_after),
        ));
    }
    c.to_svg()
}

/// The histogram of one layer's piece scores.
pub fn relevance_histogram(rel: &Relevance, layer: &LayerRelevance) -> Result<String> {
    let values: Vec<f64> = layer.scores.iter().flatten().copied().collect();
    crate::plot::histogram(
        &format!("{} scores of the pieces of '{}'", rel.criterion.name(), layer.producer),
        "score",
        "pieces",
        &values,
        20,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accuracy_chart_marks_every_step_the_reference_the_band_and_the_choice() {
        let row = |step: usize, params: usize, test: f64, val: f64| -> StepRow {
            serde_json::from_value(serde_json::json!({
                "step": step, "pieces": ["4"], "pieces_histogram": [[]], "params": params,
                "nonzeros": params, "removed_vs_start": 0.0, "removed_vs_lenet5": 0.0, "flops": 1,
                "flop_ratio": 1.0, "speedup": null, "val_before": val - 0.01, "test_before": test - 0.01,
                "val_after": val, "test_after": test, "seconds": 1.0, "accepted": true
            }))
            .unwrap()
        };
        let rows = [
            row(0, 427_330, 0.9068, 0.9056),
            row(1, 327_205, 0.9074, 0.9106),
            row(2, 227_080, 0.9085, 0.9108),
            row(3, 126_955, 0.9072, 0.9100),
        ];
        let svg = accuracy_chart(&rows, (0.3, None), 3).unwrap();
        let t = crate::plot::tests::texts(&svg);
        for needle in [
            "Accuracy vs parameters",
            "parameters (dense count)",
            "accuracy (%)",
            "unpruned, test",
            "within 0.3 points of unpruned validation",
            "chosen: step 3",
        ] {
            assert!(t.iter().any(|s| s == needle), "{needle} missing in {t:?}");
        }
        // three series of one mark per step, their three legend marks, the chosen step's ring
        assert_eq!(svg.matches("<circle").count(), 3 * rows.len() + 3 + 1);
        let ticks: Vec<&String> = t
            .iter()
            .filter(|s| s.trim_end_matches('k').parse::<f64>().is_ok())
            .collect();
        let distinct: std::collections::HashSet<_> = ticks.iter().collect();
        assert!(ticks.len() >= 5 && distinct.len() == ticks.len(), "{ticks:?}");
    }

    #[test]
    fn a_row_written_before_alternating_runs_still_reads_and_says_its_ratio_is_one_timing() {
        let mut row = serde_json::json!({
            "step": 1, "pieces": ["3"], "pieces_histogram": [[0, 0, 0, 125]], "params": 327205,
            "nonzeros": 327205, "removed_vs_start": 23.4, "removed_vs_lenet5": 24.1, "flops": 1,
            "flop_ratio": 1.05, "speedup": 0.97, "val_before": 0.9, "test_before": 0.9,
            "val_after": 0.91, "test_after": 0.91, "seconds": 10.0, "accepted": true
        });
        let old: StepRow = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(old.speedup.unwrap().rounds, 1);
        assert!(markdown_table(&[old]).contains("| 0.97x? (1 timing) |"));
        let s = Speedup::from_ratios(256, vec![1.1, 1.0, 1.2]);
        row["speedup"] = serde_json::to_value(s).unwrap();
        let new: StepRow = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(new.speedup, Some(s));
        row["speedup"] = serde_json::Value::Null;
        let first: StepRow = serde_json::from_value(row).unwrap();
        // An untimed step (--bench-steps last or none) has no speedup to show.
        assert!(markdown_table(std::slice::from_ref(&first)).contains("| – |"));
        let table = markdown_table(std::slice::from_ref(&first));
        assert!(
            table.contains("removed vs LeNet-5 |") && table.contains("| 24.1% |"),
            "{table}"
        );
        // A network without LeNet-5's input has no column counted against it (seen: -32,000% on
        // VGG16 at 224 pixels).
        let vgg = StepRow {
            removed_vs_lenet5: None,
            ..first.clone()
        };
        let table = markdown_table(std::slice::from_ref(&vgg));
        assert!(!table.contains("LeNet-5") && !table.contains("24.1%"), "{table}");
        assert_eq!(
            table.lines().next().unwrap().matches('|').count(),
            table.lines().nth(2).unwrap().matches('|').count()
        );
        assert_eq!(lenet5_params_for(&Preset::Vgg16Maxout.spec()), None);
        assert_eq!(lenet5_params_for(&Preset::Lenet5Maxout.spec()), Some(431_080));
        // A row printed alone is the table's row: header, separator, then it.
        let table = markdown_table(&[first.clone(), new.clone()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[2..], [markdown_row(&first), markdown_row(&new)]);
        assert!(
            !table.contains("vs LeNet-5 b1"),
            "no speed table without its measurements"
        );
        // With the speedups at every batch, against the start and against LeNet-5.
        let at = |b: usize, r: f64| Speedup::from_ratios(b, vec![r; 3]);
        let mut fast = new.clone();
        fast.speedups = vec![at(1, 1.5), at(64, 1.6), at(256, 1.7)];
        fast.vs_lenet5 = Some(VsLenet5 {
            flop_ratio: 3.9,
            speedups: vec![at(1, 2.5), at(64, 2.6), at(256, 2.7)],
        });
        let back: StepRow = serde_json::from_str(&serde_json::to_string(&fast).unwrap()).unwrap();
        assert_eq!(back, fast);
        let table = markdown_table(&[first, fast]);
        assert!(table.contains("| 1 | – | – | – | – | – | – | – |"), "{table}");
        assert!(
            table.contains(
                "| 1 | 1.50x (1.50–1.50) | 1.60x (1.60–1.60) | 1.70x (1.70–1.70) | 3.90x | 2.50x (2.50–2.50) |"
            ),
            "{table}"
        );
    }
}
