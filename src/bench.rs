//! Throughput and latency measurements of a network on the device it lives on.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::layers::{Act, Forward, Kind};
use crate::model::network::{Kernels, Network};
use crate::relevance::{ArgmaxFrequency, Criterion, TiePolicy};
use crate::rng::SplitMix64;
use crate::train::{Sgd, TrainConfig, cross_entropy};

/// How much to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Timed repetitions; the median is reported.
    pub reps: usize,
    /// Training batch size.
    pub train_batch: usize,
    /// Images per training repetition (`train_images / train_batch` SGD steps, at least 1).
    pub train_images: usize,
    /// Forward passes (batch 256) per inference repetition.
    pub infer_batches: usize,
    /// Batch-1 forward passes per latency repetition.
    pub latency_calls: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            reps: 5,
            train_batch: 64,
            train_images: 1280,
            infer_batches: 10,
            latency_calls: 100,
        }
    }
}

/// Measured figures (medians over repetitions, after one warm-up repetition).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Backend name.
    pub backend: String,
    /// Threads the backend computes with.
    pub threads: usize,
    /// The convolution and pooling kernels measured.
    pub kernels: Kernels,
    /// Training batch size.
    pub train_batch: usize,
    /// Training images per second (forward + backward + SGD step).
    pub train_img_per_s: f64,
    /// Inference images per second at batch 256.
    pub infer_img_per_s: f64,
    /// Milliseconds per batch-1 forward pass.
    pub latency_ms_b1: f64,
    /// Relevance-pass images per second (traced forward + arg-max counting, batch 500).
    pub relevance_img_per_s: f64,
    /// Parameters of the network measured.
    pub params: usize,
    /// FLOPs per example of the network measured.
    pub flops: usize,
    /// Inference speedups against another network (the unpruned one), when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Comparison>,
    /// Inference speedups against plain LeNet-5 ([`lenet5_reference`]), for a trained run with
    /// its input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_lenet5: Option<Comparison>,
    /// Per-layer latency profiles, one per batch size of [`PROFILE_BATCHES`], when asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_layer: Vec<LayerProfile>,
}

/// Inference speedups of a network against a reference network, one per batch size.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The reference network's run directory.
    pub base: String,
    /// One measurement per batch size.
    pub speedups: Vec<Speedup>,
}

/// The widest interquartile range of the per-round ratios, as a fraction of their median, that
/// is still reported as a measurement; a wider spread means the machine was too busy to tell.
pub const MAX_SPREAD: f64 = 0.2;

/// Alternating rounds per speedup measurement.
pub const SPEEDUP_ROUNDS: usize = 7;

/// The batch sizes speedups are reported at.
pub const SPEEDUP_BATCHES: [usize; 3] = [1, 64, 256];

/// [`speedup`] at every batch size of [`SPEEDUP_BATCHES`].
pub fn speedups(base: &Network, net: &Network, rounds: usize) -> Vec<Speedup> {
    SPEEDUP_BATCHES.map(|b| speedup(base, net, b, rounds)).to_vec()
}

/// Plain LeNet-5 (the `lenet5` preset, freshly initialised on `net`'s device: speed does not
/// depend on the weights), the reference a LeNet-sized network is compared with; `None` unless
/// `net` takes LeNet-5's 1x28x28 input.
pub fn lenet5_reference(net: &Network) -> Option<Network> {
    let spec = crate::model::presets::Preset::Lenet5.spec();
    (net.spec().input == spec.input)
        .then(|| Network::init(&spec, 1, net.device()).ok())
        .flatten()
        .map(|n| n.with_kernels(net.kernels()))
}

/// Inference speedup of a network against a reference at one batch size: per round, both are
/// timed back to back (in alternating order), and the round's ratio is the reference's seconds
/// over the network's; the median and quartiles of those ratios are kept. Alternating cancels
/// the drift of a shared machine that timing one network after the other does not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Speedup {
    /// Batch size.
    pub batch: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// Median of the per-round ratios.
    pub median: f64,
    /// Lower quartile of the per-round ratios.
    pub low: f64,
    /// Upper quartile of the per-round ratios.
    pub high: f64,
}

impl Speedup {
    /// Summarises per-round ratios (reference seconds / network seconds).
    pub fn from_ratios(batch: usize, mut ratios: Vec<f64>) -> Speedup {
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len().max(1);
        let at = |i: usize| ratios.get(i).copied().unwrap_or(f64::NAN);
        Speedup {
            batch,
            rounds: ratios.len(),
            median: at(n / 2),
            low: at((n - 1) / 4),
            high: at((3 * (n - 1)).div_ceil(4)),
        }
    }

    /// Whether the quartiles lie further apart than [`MAX_SPREAD`] of the median, or fewer than
    /// 3 rounds were measured (no spread to judge): then the median is no measurement to
    /// report.
    pub fn too_noisy(&self) -> bool {
        self.rounds < 3 || !(self.median > 0.0 && (self.high - self.low) / self.median <= MAX_SPREAD)
    }

    /// `1.23x (1.20–1.26)`; `noisy (0.30–3.40x)` when the spread is too wide; `1.05x? (1
    /// timing)` when fewer than 3 rounds were measured (reports written before alternating
    /// runs).
    pub fn cell(&self) -> String {
        if self.rounds < 3 {
            format!("{:.2}x? ({} timing)", self.median, self.rounds)
        } else if self.too_noisy() {
            format!("noisy ({:.2}–{:.2}x)", self.low, self.high)
        } else {
            format!("{:.2}x ({:.2}–{:.2})", self.median, self.low, self.high)
        }
    }
}

/// Measures the inference speedup of `net` against `base` at `batch` over `rounds` alternating
/// rounds (see [`Speedup`]); each timing runs `ceil(1024 / batch)` forward passes, after one
/// warm-up pass of each network. Inputs are random.
pub fn speedup(base: &Network, net: &Network, batch: usize, rounds: usize) -> Speedup {
    let batch = batch.max(1);
    let passes = 1024usize.div_ceil(batch);
    let timed = |net: &Network| {
        let net = net.clone().into_inference();
        let x = random_input(batch, &net, &mut SplitMix64::new(11), net.device());
        move || {
            let t = Instant::now();
            for _ in 0..passes {
                let _ = net.forward(x.clone()).into_data();
            }
            t.elapsed().as_secs_f64()
        }
    };
    let (base_s, net_s) = (timed(base), timed(net));
    let _ = (base_s(), net_s());
    let ratios = (0..rounds.max(1))
        .map(|round| {
            let (b, n) = if round % 2 == 0 {
                let b = base_s();
                (b, net_s())
            } else {
                let n = net_s();
                (base_s(), n)
            };
            b / n
        })
        .collect();
    Speedup::from_ratios(batch, ratios)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `f` once as warm-up, then `reps` times; returns the median seconds.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn random_input(batch: usize, net: &Network, rng: &mut SplitMix64, device: &Device) -> Tensor<4> {
    let i = net.spec().input;
    let n = batch * i.channels * i.height * i.width;
    let v: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
    Tensor::from_data(TensorData::new(v, [batch, i.channels, i.height, i.width]), device)
}

/// Inference images per second of `net` at `batch`, over `batches` forward passes: the
/// median of `reps` repetitions after one warm-up. Inputs are random (speed does not depend on
/// them).
pub fn inference_img_per_s(net: &Network, batch: usize, batches: usize, reps: usize) -> f64 {
    let net = net.clone().into_inference();
    let device = net.device().clone();
    let x = random_input(batch, &net, &mut SplitMix64::new(11), &device);
    let seconds = time(reps, || {
        for _ in 0..batches {
            let _ = net.forward(x.clone()).into_data();
        }
    });
    (batch * batches) as f64 / seconds
}

/// Measures training throughput, inference throughput, batch-1 latency and relevance-pass
/// throughput of `net`. Inputs are random; the images of the relevance pass too.
pub fn bench(net: &Network, config: &BenchConfig) -> BenchResult {
    let device = net.device().clone().without_autodiff();
    let classes = crate::model::spec::ArchSpec::classes(net.spec()).unwrap_or(1);
    let mut rng = SplitMix64::new(7);
    let train_cfg = TrainConfig::default();

    let mut train_net = Some(net.clone().into_trainable());
    let mut sgd = Sgd::default();
    let b = config.train_batch.max(1);
    let steps = (config.train_images / b).max(1);
    let x = random_input(b, net, &mut rng, &device);
    let labels: Vec<i64> = (0..b).map(|i| (i % classes) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), &device);
    let train_s = time(config.reps, || {
        for _ in 0..steps {
            let n = train_net.take().expect("network present between steps");
            let (logits, stats) = n.forward_train(x.clone(), &mut rng);
            let loss = cross_entropy(logits, y.clone());
            let _ = loss.clone().into_scalar::<f32>();
            let grads = loss.backward();
            train_net = Some(sgd.step(n, &grads, 1e-3, &train_cfg).with_running_stats(stats));
        }
    });

    let eval_net = net.clone().into_inference();
    let infer_img_per_s = inference_img_per_s(&eval_net, 256, config.infer_batches, config.reps);
    let x1 = random_input(1, net, &mut rng, &device);
    let lat_s = time(config.reps, || {
        for _ in 0..config.latency_calls {
            let _ = eval_net.forward(x1.clone()).into_data();
        }
    });
    let images = crate::data::split::Split {
        channels: 1,
        rows: net.spec().input.height,
        cols: net.spec().input.width,
        pixels: (0..1000 * net.spec().input.height * net.spec().input.width)
            .map(|_| (rng.next_u64() & 0xff) as u8)
            .collect(),
        labels: vec![0; 1000],
    };
    let criterion = ArgmaxFrequency { ties: TiePolicy::Split };
    let rel_s = time(config.reps, || {
        criterion
            .score(&eval_net, &images, 500)
            .expect("scoring a valid network cannot fail");
    });
    BenchResult {
        relevance_img_per_s: images.len() as f64 / rel_s,
        backend: match format!("{:?}", net.device()) {
            d if d.contains("Flex") => "flex".into(),
            d => d,
        },
        threads: crate::threads(),
        kernels: net.kernels(),
        train_batch: b,
        train_img_per_s: (b * steps) as f64 / train_s,
        infer_img_per_s,
        latency_ms_b1: 1e3 * lat_s / config.latency_calls as f64,
        params: net.num_params(),
        flops: net.spec().flops().unwrap_or(0),
        against: None,
        vs_lenet5: None,
        per_layer: Vec::new(),
    }
}

/// The batch sizes a per-layer profile is taken at.
pub const PROFILE_BATCHES: [usize; 2] = [1, 256];

/// One layer's part of an evaluation-mode forward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTime {
    /// Index in the spec's layers.
    pub index: usize,
    /// Kind name, as in `spec.json`.
    pub kind: String,
    /// Name, for layers with parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// FLOPs for one example, as the spec counts them (pooling, activations and maxout count 0).
    pub flops: usize,
    /// Milliseconds per batch: the median over the rounds.
    pub ms: f64,
    /// Its share of the summed milliseconds of every layer.
    pub share: f64,
}

/// The forward time of every layer of a network at one batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerProfile {
    /// Batch size.
    pub batch: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// One entry per layer of the spec, in order.
    pub layers: Vec<LayerTime>,
}

/// The same activation again (a tensor clone shares its buffer).
fn copy(act: &Act) -> Act {
    match act {
        Act::Map(x) => Act::Map(x.clone()),
        Act::Flat(x) => Act::Flat(x.clone()),
    }
}

/// Times each layer of `net` alone in evaluation mode at `batch`, on the activation the layers
/// before it produce from a random input. Per round every layer runs `ceil(1024 / batch)`
/// passes (after one warm-up pass each), the device synchronised after each; the rounds walk
/// the layers first to last and last to first in turn, as [`speedup`] alternates its two
/// networks, so a shared machine's drift falls on every layer alike. A layer's time is the
/// median over `rounds` (at least 1) of its seconds per pass. The layers' times sum to a
/// little more than a whole forward pass's: each layer's output is computed and synchronised
/// on its own.
pub fn layer_profile(net: &Network, batch: usize, rounds: usize) -> Result<LayerProfile> {
    let net = net.clone().into_inference();
    let batch = batch.max(1);
    let passes = 1024usize.div_ceil(batch);
    let spec = net.spec();
    let infos = spec.validate()?;
    let run = |i: usize, act: Act| -> Result<Act> {
        let mut ctx = Forward {
            kernels: net.kernels(),
            rng: None,
            trace: false,
            traced: None,
            updates: Vec::new(),
        };
        let out = spec.layers[i].forward(&net.params()[i], act, &mut ctx);
        out.device()
            .sync()
            .map_err(|e| Error::invalid("device", format!("layer {i} of {}: {e:?}", spec.name)))?;
        Ok(out)
    };
    // The input of every layer: inputs[i] is what layer i reads.
    let mut inputs = vec![Act::Map(random_input(
        batch,
        &net,
        &mut SplitMix64::new(11),
        net.device(),
    ))];
    for i in 0..spec.layers.len() {
        let next = run(i, copy(&inputs[i]))?;
        inputs.push(next);
    }
    let timed = |i: usize| -> Result<f64> {
        let t = Instant::now();
        for _ in 0..passes {
            run(i, copy(&inputs[i]))?;
        }
        Ok(t.elapsed().as_secs_f64() / passes as f64)
    };
    let n = spec.layers.len();
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..rounds.max(1) {
        for step in 0..n {
            let i = if round % 2 == 0 { step } else { n - 1 - step };
            seconds[i].push(timed(i)?);
        }
    }
    let ms: Vec<f64> = seconds.into_iter().map(|s| 1e3 * median(s)).collect();
    let total: f64 = ms.iter().sum();
    Ok(LayerProfile {
        batch,
        rounds: rounds.max(1),
        layers: infos
            .iter()
            .zip(&ms)
            .map(|(info, &ms)| LayerTime {
                index: info.index,
                kind: info.kind.into(),
                name: info.name.clone(),
                flops: info.flops,
                ms,
                share: if total > 0.0 { ms / total } else { 0.0 },
            })
            .collect(),
    })
}

/// [`layer_profile`] at every batch size of [`PROFILE_BATCHES`].
pub fn layer_profiles(net: &Network, rounds: usize) -> Result<Vec<LayerProfile>> {
    PROFILE_BATCHES.iter().map(|&b| layer_profile(net, b, rounds)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedup_reports_median_and_quartiles_and_refuses_a_wide_spread() {
        let s = Speedup::from_ratios(64, vec![1.4, 1.0, 1.2, 1.1, 1.3, 1.15, 1.25]);
        assert_eq!((s.rounds, s.median, s.low, s.high), (7, 1.2, 1.1, 1.3));
        // Quartiles 1.1 and 1.3 lie 17% of the median apart: still a measurement.
        assert!(!s.too_noisy());
        assert_eq!(s.cell(), "1.20x (1.10–1.30)");
        let tight = Speedup::from_ratios(1, vec![1.21, 1.19, 1.2, 1.22, 1.18]);
        assert!(!tight.too_noisy());
        assert_eq!(tight.cell(), "1.20x (1.19–1.21)");
        let wide = Speedup::from_ratios(256, vec![0.3, 3.4, 1.1, 0.9, 2.0, 0.5, 1.0]);
        assert!(wide.too_noisy());
        assert_eq!(wide.cell(), "noisy (0.50–2.00x)");
        let once = Speedup::from_ratios(8, vec![0.9]);
        assert!(once.too_noisy());
        assert_eq!(once.cell(), "0.90x? (1 timing)");
        assert!(Speedup::from_ratios(8, vec![]).too_noisy());
    }

    #[test]
    fn a_layer_profile_lists_every_layer_and_its_shares_sum_to_one() {
        let spec = crate::model::presets::Preset::Lenet5MaxoutConv.spec();
        let net = Network::init(&spec, 1, &crate::device()).unwrap();
        let p = layer_profile(&net, 2, 3).unwrap();
        assert_eq!((p.batch, p.rounds), (2, 3));
        let kinds: Vec<&str> = p.layers.iter().map(|l| l.kind.as_str()).collect();
        let expected: Vec<&str> = spec.validate().unwrap().iter().map(|l| l.kind).collect();
        assert_eq!(kinds, expected);
        assert_eq!(
            p.layers.iter().map(|l| l.index).collect::<Vec<_>>(),
            (0..spec.layers.len()).collect::<Vec<_>>()
        );
        assert!(p.layers.iter().all(|l| l.ms > 0.0 && l.share > 0.0), "{p:?}");
        // Tolerance: rounding of the summed shares.
        assert!((p.layers.iter().map(|l| l.share).sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
