//! criterion benches of maxprune's hot pieces: the convolution's forward and backward at
//! LeNet-5's two shapes, the maxout block's forward and backward (with its arg-max trace), relevance counting, applying a prune plan and applying weight masks.
//!
//! Timed with `cargo bench --bench hot`; CI runs every bench once as a test
//! (`cargo test --benches`), so they compile and run but nobody times them there.
//! Whole-network throughput against PyTorch is `maxprune bench` and `bench/torch_reference.py`.

use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use maxprune::data::dataset::Dataset;
use maxprune::data::split::Split;
use maxprune::model::conv::conv2d;
use maxprune::model::layers::{Dense, Flatten, Maxout};
use maxprune::model::network::Network;
use maxprune::model::presets::Preset;
use maxprune::model::spec::{ArchSpec, InputShape, LayerSpec, Pieces, SPEC_FORMAT_VERSION};
use maxprune::prune::neuron;
use maxprune::prune::select::{Policy, select};
use maxprune::prune::weight::{Target, WeightRule, apply_masks, magnitude_masks};
use maxprune::relevance::{CriterionKind, TiePolicy, criterion};
use maxprune::rng::SplitMix64;
use maxprune::train::{Masks, cross_entropy};

/// `lenet5-maxout`'s dense maxout block on its own: 800 inputs (conv2's 50 x 4 x 4) -> fc1 500
/// -> maxout 125 x 4 -> fc2 10.
fn maxout_block() -> ArchSpec {
    let dense = |name: &str, outputs| {
        LayerSpec::Dense(Dense {
            name: name.into(),
            outputs,
        })
    };
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "maxout-block".into(),
        input: InputShape {
            channels: 50,
            height: 4,
            width: 4,
        },
        layers: vec![
            LayerSpec::Flatten(Flatten {}),
            dense("fc1", 500),
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units: 125, k: 4 },
            }),
            dense("fc2", 10),
        ],
        init: Default::default(),
    }
}

/// A seeded batch of `n` inputs shaped like `spec`'s input, with labels.
fn batch(spec: &ArchSpec, n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let InputShape {
        channels,
        height,
        width,
    } = spec.input;
    let mut rng = SplitMix64::new(7);
    let x: Vec<f32> = (0..n * channels * height * width).map(|_| rng.next_f32()).collect();
    let y: Vec<i64> = (0..n).map(|_| rng.below(10) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, channels, height, width]), device),
        Tensor::from_data(TensorData::new(y, [n]), device),
    )
}

/// The first `n` training images of the embedded subset.
fn images(n: usize) -> Split {
    let train = Dataset::embedded().expect("the embedded subset loads").train;
    let pixels = n * train.rows * train.cols;
    Split {
        pixels: train.pixels[..pixels].to_vec(),
        labels: train.labels[..n].to_vec(),
        ..train
    }
}

fn maxout(c: &mut Criterion) {
    let device = Device::flex();
    let spec = maxout_block();
    let net = Network::init(&spec, 1, &device).expect("the block builds");
    let trainable = net.clone().into_trainable();
    let (x, y) = batch(&spec, 64, &device);
    let mut rng = SplitMix64::new(1);
    c.bench_function("maxout block forward+backward, batch 64", |b| {
        b.iter(|| cross_entropy(trainable.forward_train(x.clone(), &mut rng).0, y.clone()).backward())
    });
    let (x, _) = batch(&spec, 256, &device);
    c.bench_function("maxout block forward with arg-max trace, batch 256", |b| {
        b.iter(|| {
            let (_, traces) = net.forward_traced(x.clone());
            traces[0].winners().into_data()
        })
    });
}

/// `lenet5-maxout`'s two convolutions at batch 64 (conv1 1 -> 20 channels on 28 x 28, conv2
/// 20 -> 50 on 12 x 12, 5 x 5 kernels): inference, and forward + backward as in training (conv1's
/// input needs no gradient, conv2's does).
fn convolution(c: &mut Criterion) {
    let device = Device::flex();
    let mut rng = SplitMix64::new(3);
    let mut random = |shape: [usize; 4], device: &Device| {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.next_f32() - 0.5).collect();
        Tensor::<4>::from_data(TensorData::new(v, shape), device)
    };
    for (name, input, filters, input_grad) in [
        ("conv1", [64, 1, 28, 28], 20, false),
        ("conv2", [64, 20, 12, 12], 50, true),
    ] {
        let x = random(input, &device);
        let w = random([filters, input[1], 5, 5], &device);
        let b = Tensor::<1>::zeros([filters], &device);
        c.bench_function(&format!("{name} forward, batch 64"), |bench| {
            bench.iter(|| conv2d(x.clone(), w.clone(), b.clone(), 1, 0).into_data())
        });
        let x = x.clone().autodiff();
        let x = if input_grad { x.require_grad() } else { x };
        let (w, b) = (w.autodiff().require_grad(), b.autodiff().require_grad());
        c.bench_function(&format!("{name} forward+backward, batch 64"), |bench| {
            bench.iter(|| conv2d(x.clone(), w.clone(), b.clone(), 1, 0).sum().backward())
        });
    }
}

fn pruning(c: &mut Criterion) {
    let device = Device::flex();
    let net = Network::init(&Preset::Lenet5Maxout.spec(), 1, &device).expect("the preset builds");
    let split = images(512);
    let argmax = criterion(CriterionKind::Argmax, TiePolicy::Split, 1);
    c.bench_function("arg-max relevance of lenet5-maxout, 512 images", |b| {
        b.iter(|| argmax.score(&net, &split, 256).expect("scores"))
    });
    let relevance = argmax.score(&net, &split, 256).expect("scores");
    c.bench_function("select + apply a per-unit plan to lenet5-maxout", |b| {
        b.iter(|| {
            let plan = select(&relevance, net.spec(), Policy::PerUnit { n: 1 }).expect("a plan");
            neuron::apply(&net, &plan).expect("applies")
        })
    });
    let rule = WeightRule::Sparsity {
        targets: [(Target::Conv, 0.6), (Target::Dense, 0.9)].into(),
    };
    c.bench_function("magnitude masks for lenet5-maxout", |b| {
        b.iter(|| magnitude_masks(&net, &Masks::new(), &rule, 1, 1))
    });
    let masks = magnitude_masks(&net, &Masks::new(), &rule, 1, 1);
    c.bench_function("apply weight masks to lenet5-maxout", |b| {
        b.iter(|| apply_masks(net.clone(), &masks))
    });
}

criterion_group!(benches, convolution, maxout, pruning);
criterion_main!(benches);
