//! Fuzzing every reader of maxprune: arbitrary bytes and mutations of valid files must give a
//! clean `Err` (with a message) or a value that works, never a panic.
//!
//! `cargo test --release --test fuzz` runs a short version (`MAXPRUNE_FUZZ_CASES`, default 64
//! cases per format); `scripts/fuzz_results.py` runs the long one and writes the counts the
//! README reports.

use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};
use flate2::Compression;
use flate2::write::GzEncoder;
use maxprune::data::idx;
use maxprune::data::split::Split;
use maxprune::model::network::Network;
use maxprune::model::spec::{ArchSpec, InputShape};
use maxprune::prune::neuron::apply;
use maxprune::prune::plan::PrunePlan;
use maxprune::prune::select::{Policy, select};
use maxprune::relevance::{CriterionKind, Relevance, TiePolicy, criterion};
use maxprune::train::RunDir;
use maxprune::train::TrainConfig;
use maxprune::verify::{load_image, parse_pairs};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::Digest;

/// A network small enough that every case builds, saves and runs it in microseconds: conv
/// maxout over rectified pieces, pooling, a flatten and dense maxout.
const TINY_SPEC: &str = r#"{
  "format_version": 1,
  "name": "tiny",
  "input": {"channels": 1, "height": 8, "width": 8},
  "layers": [
    {"kind": "conv2d", "name": "c1", "filters": 4, "kernel": 3, "stride": 1, "padding": 0},
    {"kind": "relu"},
    {"kind": "maxout", "pieces": {"units": 2, "k": 2}},
    {"kind": "max-pool", "kernel": 2, "stride": 2},
    {"kind": "flatten"},
    {"kind": "dense", "name": "fc1", "outputs": 6},
    {"kind": "relu"},
    {"kind": "dropout", "p": 0.5},
    {"kind": "maxout", "pieces": {"units": 3, "k": 2}},
    {"kind": "dense", "name": "fc2", "outputs": 3}
  ]
}"#;

/// Numbers that sit on the edges of sizes, counts and floats.
const EDGES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "255",
    "65536",
    "2147483648",
    "4294967296",
    "4611686018427387904",
    "9223372036854775807",
    "18446744073709551615",
    "1e308",
    "-1e308",
    "NaN",
    "0.5",
    "1000000000000",
];

fn device() -> Device {
    Device::flex()
}

fn tiny_spec() -> ArchSpec {
    ArchSpec::from_json(TINY_SPEC, "tiny").expect("the tiny spec is valid")
}

fn tiny_net() -> &'static Network {
    static NET: OnceLock<Network> = OnceLock::new();
    NET.get_or_init(|| Network::init(&tiny_spec(), 7, &device()).unwrap())
}

fn split(n: usize) -> Split {
    Split {
        channels: 1,
        rows: 8,
        cols: 8,
        pixels: (0..n * 64).map(|i| (i * 37 % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 3) as u8).collect(),
    }
}

/// A network that a reader accepted must run: one forward pass, one logit per class. (Finite
/// weights may still overflow to infinite logits, e.g. a weight of 3e38: that is arithmetic,
/// not a reader's defect, so the values are not checked.)
fn runs(net: &Network) {
    let input = &net.spec().input;
    let n = input.channels * input.height * input.width;
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![0.5f32; n], [1, input.channels, input.height, input.width]),
        net.device(),
    );
    let logits = net.forward(x);
    assert_eq!(logits.dims(), [1, net.spec().classes().unwrap()]);
}

/// One edit of a valid file.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Delete(usize, usize),
    Insert(usize, u8),
    Truncate(usize),
    /// Replaces the run of digits nearest a position by an edge number (text formats).
    Number(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), 1..32usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 0..EDGES.len()).prop_map(|(p, e)| Edit::Number(p, e)),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Flip(p, b) if !bytes.is_empty() => bytes[p % len] ^= b,
            Edit::Set(p, b) if !bytes.is_empty() => bytes[p % len] = b,
            Edit::Delete(p, n) if !bytes.is_empty() => {
                let start = p % len;
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert(p, b) => bytes.insert(p % (bytes.len() + 1), b),
            Edit::Truncate(p) => bytes.truncate(p % len),
            Edit::Number(p, e) => {
                let digits: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i].is_ascii_digit()).collect();
                if let Some(&at) = digits.get(p % digits.len().max(1)) {
                    let (mut start, mut end) = (at, at);
                    while start > 0 && bytes[start - 1].is_ascii_digit() {
                        start -= 1;
                    }
                    while end < bytes.len() && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                    bytes.splice(start..end, EDGES[e].bytes());
                }
            }
            _ => {}
        }
    }
    bytes
}

/// Arbitrary bytes half of the time, edits of `valid` the other half.
fn input(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(edit(), 1..6).prop_map(move |edits| mutate(valid.clone(), &edits)),
    ]
}

fn cases() -> u32 {
    std::env::var("MAXPRUNE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Runs `read` on `cases()` inputs derived from `valid`; a panic fails the test (proptest
/// shrinks it to a small input). An `Err` must carry a message. Prints the counts.
fn fuzz<T>(format: &str, valid: Vec<u8>, read: impl Fn(&[u8]) -> maxprune::Result<T>) {
    assert!(read(&valid).is_ok(), "{format}: the valid seed file is refused");
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let refused = std::cell::Cell::new(0u64);
    let result = runner.run(&input(valid), |bytes| {
        if let Err(e) = read(&bytes) {
            prop_assert!(!e.to_string().trim().is_empty(), "an error without a message");
            refused.set(refused.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{format}: {e}");
    }
    let n = u64::from(cases());
    eprintln!(
        "fuzz {format}: {n} cases, {} refused, {} accepted, 0 panics",
        refused.get(),
        n - refused.get()
    );
}

fn text(bytes: &[u8]) -> maxprune::Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| maxprune::Error::invalid("text", e.to_string()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn idx_images() -> Vec<u8> {
    let s = split(3);
    let images = idx::IdxImages {
        rows: s.rows,
        cols: s.cols,
        pixels: s.pixels,
    };
    let mut bytes = Vec::new();
    idx::write_images(&mut bytes, &images, false).unwrap();
    bytes
}

#[test]
fn idx_images_raw_and_gzip() {
    let read = |b: &[u8]| idx::read_images(b, "images.idx");
    fuzz("idx images", idx_images(), read);
    fuzz("idx images (gzip)", gzip(&idx_images()), read);
}

#[test]
fn idx_labels() {
    let mut bytes = Vec::new();
    idx::write_labels(&mut bytes, &[0, 1, 2, 1], false).unwrap();
    fuzz("idx labels", bytes, |b| idx::read_labels(b, "labels.idx", 3));
}

#[test]
fn safetensors_weights() {
    fuzz("model.safetensors", tiny_net().to_safetensors(), |b| {
        Network::from_safetensors(&tiny_spec(), b, "model.safetensors", &device()).map(|n| runs(&n))
    });
}

/// A sparse file's record: the embedded dataset, normalised (so the header's mean and std are
/// fuzzed too).
fn recorded() -> maxprune::sparse::Recorded {
    maxprune::sparse::Recorded {
        dataset: Some(maxprune::data::dataset::DatasetName::Embedded),
        mean: Some(vec![0.5]),
        std: Some(vec![0.25]),
    }
}

#[test]
fn sparse_mxs() {
    fuzz("model.mxs", maxprune::sparse::encode(tiny_net(), &recorded()), |b| {
        maxprune::sparse::decode(b, "model.mxs", &device()).map(|(n, _)| runs(&n))
    });
    // Past the checksum: edits of the header and payload with the trailer recomputed, so the
    // table and tensor checks are what refuses them.
    let file = maxprune::sparse::encode(tiny_net(), &recorded());
    let body = file[..file.len() - 32].to_vec();
    fuzz("model.mxs (checksum recomputed)", body, |b| {
        let mut file = b.to_vec();
        file.extend_from_slice(&sha2::Sha256::digest(b));
        maxprune::sparse::decode(&file, "model.mxs", &device()).map(|(n, _)| runs(&n))
    });
}

#[test]
fn checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::create(&tmp.path().join("run"), tiny_net(), &TrainConfig::default()).unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let valid = std::fs::read(&path).unwrap();
    fuzz("checkpoint.safetensors", valid, |b| {
        std::fs::write(&path, b).unwrap();
        dir.checkpoint(&maxprune::device()).map(|c| runs(&c.net))
    });
}

#[test]
fn spec_json() {
    fuzz("spec.json", TINY_SPEC.as_bytes().to_vec(), |b| {
        let spec = ArchSpec::from_json(text(b)?, "spec.json")?;
        // Build what is small enough to build in a test; the size limits are tested elsewhere.
        if spec.num_params()? <= 100_000 && spec.flops()? <= 10_000_000 {
            runs(&Network::init(&spec, 1, &device())?);
        }
        Ok(())
    });
}

fn tiny_relevance() -> Relevance {
    criterion(CriterionKind::WeightNorm, TiePolicy::Split, 1)
        .score(tiny_net(), &split(1), 1)
        .unwrap()
}

#[test]
fn relevance_json_through_every_policy() {
    let valid = serde_json::to_vec_pretty(&tiny_relevance()).unwrap();
    let policies = [
        Policy::PerUnit { n: 1 },
        Policy::Threshold { tau: 0.5 },
        Policy::Global { fraction: 0.5 },
        Policy::Units { fraction: 0.5 },
    ];
    fuzz("relevance.json", valid, |b| {
        let rel: Relevance =
            serde_json::from_slice(b).map_err(|e| maxprune::Error::invalid("relevance", e.to_string()))?;
        // Every policy's result counts: the file is accepted when each policy accepts it, and
        // each refusal must be a clean error.
        every(policies.map(|policy| {
            select(&rel, &tiny_spec(), policy)
                .and_then(|plan| apply(tiny_net(), &plan))
                .map(|n| runs(&n))
        }))
    });
}

/// Several readings of one input: the first error, after checking that every error carries a
/// message (as [`fuzz`] does for the one it returns).
fn every(results: impl IntoIterator<Item = maxprune::Result<()>>) -> maxprune::Result<()> {
    let results: Vec<_> = results.into_iter().collect();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(!e.to_string().trim().is_empty(), "an error without a message");
    }
    results.into_iter().collect()
}

#[test]
fn plan_json() {
    let plan = select(&tiny_relevance(), &tiny_spec(), Policy::PerUnit { n: 1 }).unwrap();
    fuzz("plan.json", plan.to_json().into_bytes(), |b| {
        let plan = PrunePlan::from_json(text(b)?, "plan.json")?;
        apply(tiny_net(), &plan).map(|n| runs(&n))
    });
}

#[test]
fn train_toml() {
    fuzz("train.toml", TrainConfig::default().to_toml().into_bytes(), |b| {
        TrainConfig::from_toml(text(b)?, "train.toml")?.validate()
    });
}

#[test]
fn lfw_pairs() {
    let valid = "2 2\nAnn 1 2\nBob 1 3\nAnn 1 Bob 2\nCid 4 Dan 1\nEve 2 3\nAnn 3 4\nEve 1 Bob 1\nDan 2 Cid 1\n";
    fuzz("pairs.txt", valid.as_bytes().to_vec(), |b| {
        parse_pairs(text(b)?, "pairs.txt")
    });
}

fn image_file(format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_fn(12, 9, |x, y| image::Luma([(x * 20 + y * 7) as u8]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn fuzz_image(name: &str, format: image::ImageFormat) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    let shape = InputShape {
        channels: 1,
        height: 8,
        width: 8,
    };
    fuzz(name, image_file(format), |b| {
        std::fs::write(&path, b).unwrap();
        load_image(Path::new(&path), &shape, &Default::default())
    });
}

#[test]
fn images_png_and_jpeg() {
    fuzz_image("image.png", image::ImageFormat::Png);
    fuzz_image("image.jpg", image::ImageFormat::Jpeg);
}
