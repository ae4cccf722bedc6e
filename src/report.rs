//! Reports: per-step rows of a pruning schedule as JSON and Markdown, and SVG plots.
//! The plots are plain SVG written here (no plotting dependency, byte-identical across runs).

use serde::{Deserialize, Deserializer, Serialize};

use crate::bench::Speedup;

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
    /// Percent removed against plain LeNet-5's 431,080 parameters (nonzeros counted).
    pub removed_vs_lenet5: f64,
    /// FLOPs per example.
    pub flops: usize,
    /// Starting network's FLOPs / this network's FLOPs.
    pub flop_ratio: f64,
    /// Measured inference speedup at batch 256 against the starting network, by alternating
    /// runs on this machine ([`crate::bench::speedup`]); `None` at step 0. Reports written
    /// before alternating runs hold a plain ratio, read as a one-round measurement.
    #[serde(deserialize_with = "speedup_or_ratio", default)]
    pub speedup: Option<Speedup>,
    /// Validation accuracy right after pruning, before retraining.
    pub val_before: Option<f64>,
    /// Test accuracy right after pruning, before retraining.
    pub test_before: f64,
    /// Validation accuracy after retraining.
    pub val_after: Option<f64>,
    /// Test accuracy after retraining.
    pub test_after: f64,
    /// Wall-clock seconds of the step (relevance, pruning, retraining, evaluation).
    pub seconds: f64,
    /// Whether validation accuracy stayed within tolerance of the starting network's.
    pub accepted: bool,
}

/// Parameters of plain LeNet-5, the paper's reference for "% removed".
pub const LENET5_PARAMS: usize = 431_080;

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

/// The rows as a Markdown table.
pub fn markdown_table(rows: &[StepRow]) -> String {
    let mut s = String::from(
        "| step | units × pieces | params | nonzeros | removed vs start | removed vs LeNet-5 | FLOPs | FLOP ratio | measured speedup | val acc before → after | test acc before → after | time | within tolerance |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.1}% | {:.1}% | {} | {:.2}x | {} | {} → {} | {} → {} | {:.0} s | {} |\n",
            r.step,
            units_by_pieces(r),
            r.params,
            r.nonzeros,
            r.removed_vs_start,
            r.removed_vs_lenet5,
            r.flops,
            r.flop_ratio,
            r.speedup.map_or("1.00x".into(), |s| s.cell()),
            pct(r.val_before),
            pct(r.val_after),
            pct(Some(r.test_before)),
            pct(Some(r.test_after)),
            r.seconds,
            if r.accepted { "yes" } else { "**no**" }
        ));
    }
    s
}

const W: f64 = 640.0;
const H: f64 = 400.0;
const M: f64 = 60.0;

fn frame(title: &str, xlabel: &str, ylabel: &str, body: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n\
         <line x1=\"{M}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{M}\" y1=\"{M}\" x2=\"{M}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n{body}</svg>\n",
        W / 2.0,
        esc(title),
        H - M,
        W - M,
        H - M,
        H - M,
        W / 2.0,
        H - 16.0,
        esc(xlabel),
        H / 2.0,
        H / 2.0,
        esc(ylabel)
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn scale(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    if hi > lo {
        a + (v - lo) / (hi - lo) * (b - a)
    } else {
        (a + b) / 2.0
    }
}

fn ticks(lo: f64, hi: f64, horizontal: bool, fmt: &dyn Fn(f64) -> String) -> String {
    (0..=4)
        .map(|i| {
            let v = lo + (hi - lo) * f64::from(i) / 4.0;
            if horizontal {
                let x = scale(v, lo, hi, M, W - M);
                format!(
                    "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                    H - M + 16.0,
                    fmt(v)
                )
            } else {
                let y = scale(v, lo, hi, H - M, M);
                format!(
                    "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                    M - 6.0,
                    y + 4.0,
                    fmt(v)
                )
            }
        })
        .collect()
}

/// A line chart of one or more named series of `(x, y)` points.
pub fn line_chart(title: &str, xlabel: &str, ylabel: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    chart(title, xlabel, ylabel, series, true)
}

/// A scatter plot of one or more named series of `(x, y)` points.
pub fn scatter(title: &str, xlabel: &str, ylabel: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    chart(title, xlabel, ylabel, series, false)
}

fn chart(title: &str, xlabel: &str, ylabel: &str, series: &[(String, Vec<(f64, f64)>)], lines: bool) -> String {
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return frame(title, xlabel, ylabel, "");
    }
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut body = ticks(x0, x1, true, &|v| format!("{:.0}k", v / 1e3));
    body += &ticks(y0, y1, false, &|v| format!("{v:.2}"));
    for (i, (name, p)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", scale(x, x0, x1, M, W - M), scale(y, y0, y1, H - M, M)))
            .collect();
        if lines {
            body += &format!(
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
                path.join(" ")
            );
        }
        for xy in &path {
            let (x, y) = xy.split_once(',').expect("formatted as x,y");
            body += &format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{c}\"/>\n");
        }
        body += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>\n",
            W - M - 150.0,
            M + 16.0 * i as f64,
            esc(name)
        );
    }
    frame(title, xlabel, ylabel, &body)
}

/// A histogram of `values` in `[0, max]` with `bins` bins.
pub fn histogram(title: &str, xlabel: &str, values: &[f64], bins: usize) -> String {
    let hi = values.iter().copied().fold(0.0f64, f64::max).max(1e-12);
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[((v / hi * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = (W - 2.0 * M) / bins as f64;
    let mut body = ticks(0.0, hi, true, &|v| format!("{v:.3}"));
    body += &ticks(0.0, top, false, &|v| format!("{v:.0}"));
    for (i, &c) in counts.iter().enumerate() {
        let h = scale(c as f64, 0.0, top, 0.0, H - 2.0 * M);
        body += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#1f77b4\"/>\n",
            M + i as f64 * bw,
            H - M - h,
            bw - 1.0
        );
    }
    frame(title, xlabel, "pieces", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_well_formed_and_counts_every_value() {
        let h = histogram("t", "x", &[0.0, 0.5, 1.0, 1.0], 2);
        assert!(h.starts_with("<svg") && h.trim_end().ends_with("</svg>"));
        assert_eq!(h.matches("<rect x=").count(), 2);
        let l = line_chart("a<b", "x", "y", &[("s".into(), vec![(1000.0, 0.5), (2000.0, 0.7)])]);
        assert!(l.contains("a&lt;b") && l.contains("<polyline"));
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
        assert!(markdown_table(&[first]).contains("| 1.00x |"));
    }
}
