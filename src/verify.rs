//! Face verification on LFW's standard protocol (Huang et al. 2007, "View 2").
//!
//! `pairs.txt` holds a header `folds n` and then, per fold, `n` matched pairs (`name n1 n2`)
//! followed by `n` mismatched pairs (`name1 n1 name2 n2`). Every image is embedded once, each
//! pair gets a distance, and for each fold the threshold that maximises accuracy on the other
//! folds is tested on it. The result is the mean accuracy over the folds with its standard error
//! (sample standard deviation / sqrt(folds), as LFW's README defines it), and a ROC curve over
//! all pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use image::imageops::FilterType;
use serde::Serialize;

use crate::data::folder::open_image;
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
use crate::model::network::Network;
use crate::model::spec::InputShape;

/// One image of LFW's layout: `<root>/<name>/<name>_<number:04>.jpg`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageRef {
    /// The person's name as LFW spells it (underscores for spaces).
    pub name: String,
    /// 1-based image number.
    pub number: u32,
}

impl ImageRef {
    /// The image's file under `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(&self.name)
            .join(format!("{}_{:04}.jpg", self.name, self.number))
    }
}

/// Two images and whether they show the same person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// First image.
    pub first: ImageRef,
    /// Second image.
    pub second: ImageRef,
    /// True for a matched pair.
    pub same: bool,
}

/// Parses LFW's `pairs.txt` into folds of pairs. `source` names the file in errors.
pub fn parse_pairs(text: &str, source: &str) -> Result<Vec<Vec<Pair>>> {
    let err = |line: usize, expected: &str, found: &str| Error::Format {
        path: source.to_string(),
        what: format!("line {line}"),
        expected: expected.to_string(),
        found: format!("`{found}`"),
    };
    // A UTF-8 byte-order mark (as some editors write) is not part of the document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let (hl, header) = lines
        .next()
        .ok_or_else(|| err(1, "a header `folds pairs-per-class`", ""))?;
    let numbers: Vec<usize> = header
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| err(hl, "a header `folds pairs-per-class` (two positive integers)", header))?;
    let (folds, n) = match numbers[..] {
        [folds, n] if folds > 0 && n > 0 => (folds, n),
        _ => {
            return Err(err(
                hl,
                "a header `folds pairs-per-class` (two positive integers)",
                header,
            ));
        }
    };
    if folds < 2 {
        return Err(err(
            hl,
            "at least 2 folds (each fold's threshold is chosen on the others)",
            header,
        ));
    }
    // The header's counts are checked against the file before anything is allocated for them.
    let lines_left = text.lines().filter(|l| !l.trim().is_empty()).count() - 1;
    if n.checked_mul(2)
        .and_then(|p| p.checked_mul(folds))
        .is_none_or(|pairs| pairs > lines_left)
    {
        return Err(err(
            hl,
            &format!("a header whose folds x 2 x pairs-per-class fits the {lines_left} pair lines that follow"),
            header,
        ));
    }
    let image = |line: usize, name: &str, number: &str, raw: &str| -> Result<ImageRef> {
        // The name is a directory under the image root: one path component, not `.` or `..`.
        if name.starts_with('.') || name.contains(['/', '\\']) {
            return Err(err(
                line,
                "a person's name that is one folder name (no `/` or `\\`, not starting with `.`)",
                raw,
            ));
        }
        let number = number
            .parse::<u32>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| err(line, "a positive image number", raw))?;
        Ok(ImageRef {
            name: name.to_string(),
            number,
        })
    };
    let mut out = Vec::with_capacity(folds);
    for fold in 0..folds {
        let mut pairs = Vec::with_capacity(2 * n);
        for i in 0..2 * n {
            let same = i < n;
            let expected = if same {
                format!(
                    "a matched pair `name n1 n2` (fold {} holds {n} matched, then {n} mismatched pairs)",
                    fold + 1
                )
            } else {
                format!(
                    "a mismatched pair `name1 n1 name2 n2` (fold {} holds {n} matched, then {n} mismatched pairs)",
                    fold + 1
                )
            };
            let (ln, line) = lines.next().ok_or_else(|| {
                err(
                    text.lines().count() + 1,
                    &format!("{} pairs in {folds} folds", 2 * n * folds),
                    "end of file",
                )
            })?;
            let f: Vec<&str> = line.split_whitespace().collect();
            let pair = match (same, &f[..]) {
                (true, [name, a, b]) => Pair {
                    first: image(ln, name, a, line)?,
                    second: image(ln, name, b, line)?,
                    same,
                },
                (false, [na, a, nb, b]) => Pair {
                    first: image(ln, na, a, line)?,
                    second: image(ln, nb, b, line)?,
                    same,
                },
                _ => return Err(err(ln, &expected, line)),
            };
            pairs.push(pair);
        }
        out.push(pairs);
    }
    if let Some((ln, line)) = lines.next() {
        return Err(err(
            ln,
            &format!("the end of the file after {folds} folds of {} pairs", 2 * n),
            line,
        ));
    }
    Ok(out)
}

/// How far apart two embeddings are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Distance {
    /// 1 - cosine similarity.
    Cosine,
    /// Euclidean distance.
    L2,
    /// Bray-Curtis: sum |a - b| / sum |a + b|.
    BrayCurtis,
}

impl Distance {
    /// The distance between `a` and `b` (same length).
    pub fn between(self, a: &[f32], b: &[f32]) -> f64 {
        let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
        match self {
            Distance::Cosine => {
                let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
                for (x, y) in pairs {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                let norm = (na * nb).sqrt();
                if norm == 0.0 { 1.0 } else { 1.0 - dot / norm }
            }
            Distance::L2 => pairs.map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt(),
            Distance::BrayCurtis => {
                let (mut num, mut den) = (0.0, 0.0);
                for (x, y) in pairs {
                    num += (x - y).abs();
                    den += (x + y).abs();
                }
                if den == 0.0 { 0.0 } else { num / den }
            }
        }
    }
}

/// One fold's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    /// Threshold chosen on the other folds: a pair is called "same" when its distance is at most this.
    pub threshold: f64,
    /// Accuracy on this fold with that threshold.
    pub accuracy: f64,
}

/// The protocol's result.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Per fold.
    pub folds: Vec<FoldResult>,
    /// Mean accuracy over the folds.
    pub mean: f64,
    /// Standard error of the mean: sample standard deviation / sqrt(folds).
    pub std_error: f64,
    /// ROC curve over all pairs: (false positive rate, true positive rate), from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
    /// Area under the ROC curve.
    pub auc: f64,
}

fn accuracy(pairs: &[(f64, bool)], threshold: f64) -> f64 {
    let right = pairs.iter().filter(|&&(d, same)| (d <= threshold) == same).count();
    right as f64 / pairs.len().max(1) as f64
}

/// The threshold with the best accuracy on `pairs`: candidates are the midpoints between
/// consecutive distinct distances and one value beyond each end; the lowest best one wins.
pub fn best_threshold(pairs: &[(f64, bool)]) -> f64 {
    let mut d: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    d.sort_by(f64::total_cmp);
    d.dedup();
    let (Some(&lo), Some(&hi)) = (d.first(), d.last()) else {
        return 0.0;
    };
    let candidates = std::iter::once(lo - 1.0)
        .chain(d.windows(2).map(|w| 0.5 * (w[0] + w[1])))
        .chain(std::iter::once(hi + 1.0));
    let mut best = (f64::NEG_INFINITY, lo - 1.0);
    for t in candidates {
        let a = accuracy(pairs, t);
        if a > best.0 {
            best = (a, t);
        }
    }
    best.1
}

/// Runs the protocol on per-fold `(distance, same)` pairs (at least two folds).
pub fn protocol(folds: &[Vec<(f64, bool)>]) -> Verification {
    let results: Vec<FoldResult> = (0..folds.len())
        .map(|test| {
            let train: Vec<(f64, bool)> = folds
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != test)
                .flat_map(|(_, f)| f.iter().copied())
                .collect();
            let threshold = best_threshold(&train);
            FoldResult {
                threshold,
                accuracy: accuracy(&folds[test], threshold),
            }
        })
        .collect();
    let n = results.len() as f64;
    let mean = results.iter().map(|r| r.accuracy).sum::<f64>() / n;
    let var = results.iter().map(|r| (r.accuracy - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let (roc, auc) = roc(&folds.iter().flatten().copied().collect::<Vec<_>>());
    Verification {
        folds: results,
        mean,
        std_error: (var / n).sqrt(),
        roc,
        auc,
    }
}

/// ROC points (FPR, TPR) for thresholds swept over the sorted distances, and the area under it.
fn roc(pairs: &[(f64, bool)]) -> (Vec<(f64, f64)>, f64) {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = sorted.iter().filter(|p| p.1).count().max(1) as f64;
    let neg = sorted.iter().filter(|p| !p.1).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (i, &(d, same)) in sorted.iter().enumerate() {
        if same {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        // One point per distinct distance: equal distances are accepted together.
        if sorted.get(i + 1).is_none_or(|next| next.0 != d) {
            points.push((fp / neg, tp / pos));
        }
    }
    let auc = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * 0.5 * (w[0].1 + w[1].1))
        .sum();
    (points, auc)
}

/// Every distinct image the folds need, in a fixed order.
pub fn images(folds: &[Vec<Pair>]) -> Vec<ImageRef> {
    let mut set = BTreeMap::new();
    for p in folds.iter().flatten() {
        set.insert(p.first.clone(), ());
        set.insert(p.second.clone(), ());
    }
    set.into_keys().collect()
}

/// Loads an image as `[channels, height, width]` input values (pixels normalised by `norm`):
/// decoded by the `image` crate (JPEG or PNG), converted to grayscale or RGB as
/// `input.channels` asks, and resized to the input (bilinear, aspect ratio not kept).
pub fn load_image(path: &Path, input: &InputShape, norm: &Normalization) -> Result<Vec<f32>> {
    let img = open_image(path)?;
    let (h, w) = (input.height, input.width);
    let img = img.resize_exact(w as u32, h as u32, FilterType::Triangle);
    let planes: Vec<Vec<u8>> = match input.channels {
        1 => vec![img.to_luma8().into_raw()],
        3 => {
            let rgb = img.to_rgb8().into_raw();
            (0..3)
                .map(|c| rgb.iter().skip(c).step_by(3).copied().collect())
                .collect()
        }
        c => {
            return Err(Error::Invalid {
                what: "spec",
                message: format!("images can feed 1 or 3 input channels, the network has {c}"),
            });
        }
    };
    let table = norm.table(planes.len());
    Ok(planes
        .iter()
        .zip(&table)
        .flat_map(|(plane, values)| plane.iter().map(|&p| values[usize::from(p)]))
        .collect())
}

/// Images embedded per forward pass by [`verify`].
pub const EMBED_BATCH: usize = 64;

/// Embeds every image under `root` with the network's first `layers` layers (see
/// [`crate::model::spec::ArchSpec::embedding_depth`]), `batch` images at a time, their pixels
/// normalised by `norm`.
pub fn embed(
    (net, norm): (&Network, &Normalization),
    root: &Path,
    images: &[ImageRef],
    layers: usize,
    batch: usize,
) -> Result<Vec<Vec<f32>>> {
    let net = net.clone().into_inference();
    let input = net.spec().input;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len() * input.channels * input.height * input.width);
        for image in chunk {
            pixels.extend(load_image(&image.path(root), &input, norm)?);
        }
        let shape = [chunk.len(), input.channels, input.height, input.width];
        let x = Tensor::<4>::from_data(TensorData::new(pixels, shape), net.device());
        let features = net.features(x, layers);
        let [n, d] = features.dims();
        let values: Vec<f32> = features.into_data().iter::<f32>().collect();
        out.extend((0..n).map(|i| values[i * d..(i + 1) * d].to_vec()));
    }
    Ok(out)
}

/// The whole protocol: embeds the images `folds` need (under `root`, LFW's layout) with `net`
/// reading pixels normalised by `norm` (its run's), measures each pair's `distance` and runs
/// [`protocol`].
pub fn verify(
    (net, norm): (&Network, &Normalization),
    folds: &[Vec<Pair>],
    root: &Path,
    distance: Distance,
    layers: usize,
) -> Result<Verification> {
    let images = images(folds);
    let embeddings = embed((net, norm), root, &images, layers, EMBED_BATCH)?;
    let index: BTreeMap<&ImageRef, &[f32]> = images.iter().zip(embeddings.iter().map(Vec::as_slice)).collect();
    let scored: Vec<Vec<(f64, bool)>> = folds
        .iter()
        .map(|fold| {
            fold.iter()
                .map(|p| (distance.between(index[&p.first], index[&p.second]), p.same))
                .collect()
        })
        .collect();
    Ok(protocol(&scored))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: &str = "2 2\nAnn 1 2\nBob 1 3\nAnn 1 Bob 2\nCid 1 Ann 2\n\
                         Cid 1 2\nDee 2 4\nDee 1 Ann 1\nBob 3 Cid 2\n";

    #[test]
    fn parses_matched_then_mismatched_per_fold() {
        let folds = parse_pairs(PAIRS, "pairs.txt").unwrap();
        assert_eq!(folds.len(), 2);
        assert_eq!(
            folds[0].iter().map(|p| p.same).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert_eq!(
            folds[1][1].second.path(Path::new("lfw")),
            Path::new("lfw/Dee/Dee_0004.jpg")
        );
        assert_eq!(folds[1][3].first.name, "Bob");
        assert_eq!(images(&folds).len(), 10);
    }

    #[test]
    fn malformed_pairs_files_name_the_line() {
        let fold2 = "Cid 1 2\nCid 1 Bob 2\n";
        let cases: [(String, &str); 14] = [
            ("".into(), "line 1"),
            ("ten 300\n".into(), "line 1"),
            (format!("2 1\nAnn 1\nAnn 1 Bob 2\n{fold2}"), "line 2"),
            (format!("2 1\nAnn 1 2\nAnn 1 2\n{fold2}"), "line 3"),
            (format!("2 1\nAnn 0 2\nAnn 1 Bob 2\n{fold2}"), "line 2"),
            (format!("2 1\nAnn 1 2\nAnn 1 Bob 2\n{fold2}extra\n"), "line 6"),
            // The header's counts, checked against the file before anything is allocated.
            ("2 1\nAnn 1 2\nAnn 1 Bob 2\nCid 1 2\n".into(), "fits the 3 pair lines"),
            ("1000000000000 1\nAnn 1 2\n".into(), "fits the 1 pair lines"),
            ("2 9223372036854775807\nAnn 1 2\n".into(), "fits the 1 pair lines"),
            ("18446744073709551616 1\n".into(), "line 1"),
            // One fold leaves no other fold to choose its threshold on.
            ("1 1\nAnn 1 2\nAnn 1 Bob 2\n".into(), "at least 2 folds"),
            // Names are folders under the image root: none reaches outside it.
            (format!("2 1\n.. 1 2\nAnn 1 Bob 2\n{fold2}"), "line 2"),
            (format!("2 1\nAnn 1 2\nAnn 1 ../etc 2\n{fold2}"), "line 3"),
            (
                "2 1\nAnn 1 2\nAnn 1 Bob 2\nCid 1 2\nCid 1 a\\b 2\n".into(),
                "one folder name",
            ),
        ];
        for (text, needle) in cases {
            let e = parse_pairs(&text, "pairs.txt").unwrap_err().to_string();
            assert!(e.contains("pairs.txt") && e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_header() {
        let with_bom = format!("\u{feff}{PAIRS}");
        assert_eq!(
            parse_pairs(&with_bom, "pairs.txt").unwrap(),
            parse_pairs(PAIRS, "pairs.txt").unwrap()
        );
    }

    #[test]
    fn distances() {
        let (a, b) = ([1.0, 0.0], [0.0, 2.0]);
        assert!((Distance::Cosine.between(&a, &b) - 1.0).abs() < 1e-12);
        assert!((Distance::L2.between(&a, &b) - 5f64.sqrt()).abs() < 1e-12);
        assert!((Distance::BrayCurtis.between(&a, &b) - 1.0).abs() < 1e-12);
        assert!((Distance::BrayCurtis.between(&[1.0, 3.0], &[2.0, 1.0]) - 3.0 / 7.0).abs() < 1e-12);
        assert!(Distance::Cosine.between(&[1.0, 1.0], &[2.0, 2.0]).abs() < 1e-12);
    }

    /// Three folds whose accuracy is worked out by hand.
    ///
    /// Fold A: same 0.1, 0.2; diff 0.5, 0.9. Fold B: same 0.3, 0.6; diff 0.4, 0.8.
    /// Fold C: same 0.2, 0.7; diff 0.25, 1.0.
    /// - Test A, train B+C: sorted 0.2s 0.25d 0.3s 0.4d 0.6s 0.7s 0.8d 1.0d. The best
    ///   threshold is 0.75 (4 same accepted, 2 diff rejected: 6/8; every other candidate gets
    ///   at most 5/8). A at 0.75: same 0.1, 0.2 right, diff 0.5 wrong, 0.9 right → 3/4.
    /// - Test B, train A+C: 0.1s 0.2s 0.2s 0.25d 0.5d 0.7s 0.9d 1.0d. 0.225 → 3 same + 4 diff
    ///   right except 0.7 same → 7/8; 0.8 → 4 same + 0.9, 1.0 diff → 6/8. Best 0.225.
    ///   B at 0.225: same 0.3, 0.6 wrong, diff right → 2/4.
    /// - Test C, train A+B: 0.1s 0.2s 0.3s 0.4d 0.5d 0.6s 0.8d 0.9d. 0.35 → 3 + 4 = 7/8;
    ///   0.7 → 4 + 2 = 6/8. Best 0.35. C at 0.35: same 0.2 ok, 0.7 wrong; diff 0.25 wrong,
    ///   1.0 ok → 2/4.
    ///
    /// Mean (0.75 + 0.5 + 0.5) / 3 = 0.5833; sample std sqrt(((1/6)^2 + 2 (1/12)^2) / 2) =
    /// 0.1443; standard error 0.1443 / sqrt(3) = 0.0833.
    #[test]
    fn protocol_matches_hand_computation() {
        let s = |d| (d, true);
        let n = |d| (d, false);
        let folds = vec![
            vec![s(0.1), s(0.2), n(0.5), n(0.9)],
            vec![s(0.3), s(0.6), n(0.4), n(0.8)],
            vec![s(0.2), s(0.7), n(0.25), n(1.0)],
        ];
        let v = protocol(&folds);
        let acc: Vec<f64> = v.folds.iter().map(|f| f.accuracy).collect();
        assert_eq!(acc, [0.75, 0.5, 0.5]);
        let th: Vec<f64> = v.folds.iter().map(|f| f.threshold).collect();
        assert!((th[0] - 0.75).abs() < 1e-12 && (th[1] - 0.225).abs() < 1e-12 && (th[2] - 0.35).abs() < 1e-12);
        assert!((v.mean - 7.0 / 12.0).abs() < 1e-12);
        assert!((v.std_error - 1.0 / 12.0).abs() < 1e-12, "{}", v.std_error);
        assert_eq!(v.roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(v.roc.last(), Some(&(1.0, 1.0)));
        assert!(v.auc > 0.5 && v.auc < 1.0);
    }

    #[test]
    fn perfectly_separated_pairs_score_one() {
        let folds: Vec<Vec<(f64, bool)>> = (0..10)
            .map(|f| vec![(0.1 + 0.01 * f as f64, true), (0.9, false)])
            .collect();
        let v = protocol(&folds);
        assert_eq!(v.mean, 1.0);
        assert_eq!(v.std_error, 0.0);
        assert_eq!(v.auc, 1.0);
    }
}
