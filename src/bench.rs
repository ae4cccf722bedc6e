//! Throughput and latency measurements of a network on the device it lives on.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

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
            let loss = cross_entropy(n.forward_train(x.clone(), &mut rng), y.clone());
            let _ = loss.clone().into_scalar::<f32>();
            let grads = loss.backward();
            train_net = Some(sgd.step(n, &grads, 1e-3, &train_cfg));
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
    let images = crate::data::dataset::Split {
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
    }
}
