//! Layer kinds against PyTorch: forward passes, gradients and running statistics equal the
//! golden values of `bench/layer_goldens.py` (in `torch_goldens.rs`) within 1e-5.

use burn::tensor::{Device, Tensor, TensorData};

use super::torch_goldens::*;
use crate::model::network::Network;
use crate::model::params::ParamTensor;
use crate::model::spec::{ArchSpec, Init, InputShape, LayerSpec, SPEC_FORMAT_VERSION};
use crate::rng::SplitMix64;

/// `((i * a) % b) * scale + shift` for i < n (the script's `pattern`).
fn pattern(n: usize, a: usize, b: usize, scale: f32, shift: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * a) % b) as f32 * scale + shift).collect()
}

/// The script's `x_of`: its input at training pass `step`.
fn x_of(shape: [usize; 4], step: usize) -> Vec<f32> {
    let n = shape.iter().product();
    pattern(n, 37, 17, 0.25, -2.0)
        .into_iter()
        .map(|v| v + 0.5 * step as f32)
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what}[{i}]: {g} vs PyTorch's {w}");
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// A spec of `layers` on `[c, h, w]` input.
fn spec(layers: Vec<LayerSpec>, [c, h, w]: [usize; 3]) -> ArchSpec {
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "golden".into(),
        input: InputShape {
            channels: c,
            height: h,
            width: w,
        },
        layers,
        init: Init::Xavier,
    }
}

/// A network of `layers` on `[c, h, w]` input, batch norm weights and biases set as the script
/// sets them.
fn network(layers: Vec<LayerSpec>, input: [usize; 3]) -> Network {
    let spec = spec(layers, input);
    let d = Device::flex();
    let params = Network::init(&spec, 0, &d)
        .unwrap()
        .params()
        .iter()
        .map(|p| {
            p.clone().map(|role, t| match role {
                "weight" => ParamTensor::from_values(vec![0.5, 1.5, -1.0], &[3], &d),
                "bias" => ParamTensor::from_values(vec![0.1, -0.2, 0.3], &[3], &d),
                _ => t,
            })
        })
        .collect();
    Network::from_params(&spec, params, &d).unwrap()
}

/// One training pass of `net` on `x` with the loss `sum(y * r)`: the output, the input's
/// gradient, and the network with the pass's running statistics.
fn train_pass(net: Network, x: &[f32], shape: [usize; 4]) -> (Vec<f32>, Vec<f32>, Network, burn::tensor::Gradients) {
    let device = net.device().clone();
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), &device).require_grad();
    let (y, stats) = net.forward_train(x.clone(), &mut SplitMix64::new(1));
    let n = y.dims().iter().product::<usize>();
    let r = Tensor::<1>::from_data(TensorData::new(pattern(n, 13, 7, 1.0, -3.0), [n]), &device);
    let grads = (y.clone().reshape([n]) * r).sum().backward();
    let dx = values(x.grad(&grads).unwrap());
    (values(y.inner()), dx, net.with_running_stats(stats), grads)
}

struct BnGolden<'a> {
    train_y: &'a [f32],
    dx: &'a [f32],
    dweight: &'a [f32],
    dbias: &'a [f32],
    running_mean: &'a [f32],
    running_var: &'a [f32],
    eval_y: &'a [f32],
}

fn check_batch_norm(what: &str, layers: Vec<LayerSpec>, input: [usize; 3], batch: usize, g: BnGolden) {
    let shape = [batch, input[0], input[1], input[2]];
    let bn = layers
        .iter()
        .position(|l| matches!(l, LayerSpec::BatchNorm(_)))
        .unwrap();
    let net = network(layers, input).into_trainable();
    let (y, dx, mut net, grads) = train_pass(net, &x_of(shape, 0), shape);
    assert_close(&format!("{what} training output"), &y, g.train_y);
    assert_close(&format!("{what} input gradient"), &dx, g.dx);
    let grad = |role| values(net.params()[bn].t1(role).grad(&grads).unwrap());
    assert_close(&format!("{what} weight gradient"), &grad("weight"), g.dweight);
    assert_close(&format!("{what} bias gradient"), &grad("bias"), g.dbias);
    for step in 1..3 {
        net = train_pass(net, &x_of(shape, step), shape).2;
    }
    let net = net.into_inference();
    let p = &net.params()[bn];
    assert_close(
        &format!("{what} running mean"),
        &values(p.t1("running_mean")),
        g.running_mean,
    );
    assert_close(
        &format!("{what} running var"),
        &values(p.t1("running_var")),
        g.running_var,
    );
    let x = Tensor::<4>::from_data(TensorData::new(x_of(shape, 0), shape), net.device());
    assert_close(&format!("{what} evaluation output"), &values(net.forward(x)), g.eval_y);
}

#[test]
fn torch_goldens_batch_norm_2d_and_1d() {
    check_batch_norm(
        "BatchNorm2d",
        vec![LayerSpec::batch_norm("bn"), LayerSpec::flatten()],
        [3, 2, 2],
        2,
        BnGolden {
            train_y: BN2D_TRAIN_Y,
            dx: BN2D_DX,
            dweight: BN2D_DWEIGHT,
            dbias: BN2D_DBIAS,
            running_mean: BN2D_RUNNING_MEAN,
            running_var: BN2D_RUNNING_VAR,
            eval_y: BN2D_EVAL_Y,
        },
    );
    check_batch_norm(
        "BatchNorm1d",
        vec![LayerSpec::flatten(), LayerSpec::batch_norm("bn")],
        [3, 1, 1],
        4,
        BnGolden {
            train_y: BN1D_TRAIN_Y,
            dx: BN1D_DX,
            dweight: BN1D_DWEIGHT,
            dbias: BN1D_DBIAS,
            running_mean: BN1D_RUNNING_MEAN,
            running_var: BN1D_RUNNING_VAR,
            eval_y: BN1D_EVAL_Y,
        },
    );
}

#[test]
fn torch_goldens_average_and_global_average_pooling() {
    let shape = [2, 2, 5, 5];
    for (what, layers, want_y, want_dx) in [
        (
            "AvgPool2d(3, 2, 1)",
            vec![LayerSpec::avg_pool(3, 2, 1), LayerSpec::flatten()],
            AVG_POOL_Y,
            AVG_POOL_DX,
        ),
        (
            "AdaptiveAvgPool2d(1)",
            vec![LayerSpec::global_avg_pool()],
            GLOBAL_AVG_POOL_Y,
            GLOBAL_AVG_POOL_DX,
        ),
    ] {
        let net = network(layers, [2, 5, 5]).into_trainable();
        let (y, dx, _, _) = train_pass(net, &x_of(shape, 0), shape);
        assert_close(&format!("{what} output"), &y, want_y);
        assert_close(&format!("{what} input gradient"), &dx, want_dx);
    }
}

/// One training pass (as [`train_pass`]) and an evaluation pass of `net` running `kernels` on a
/// pseudo-random `shape` input: output, input gradient, every parameter's gradient, the running
/// statistics after the pass, and the evaluation output.
fn passes(net: &Network, kernels: super::Kernels, shape: [usize; 4]) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(11);
    let x: Vec<f32> = (0..shape.iter().product())
        .map(|_| 4.0 * rng.next_f32() - 1.0)
        .collect();
    let trainable = net.clone().with_kernels(kernels).into_trainable();
    let (y, dx, after, grads) = train_pass(trainable.clone(), &x, shape);
    let mut out = vec![y, dx];
    for p in trainable.params() {
        for role in ["weight", "bias"] {
            let grad = match p.get(role).map(|t| t.dims().len()) {
                Some(1) => p.t1(role).grad(&grads).map(values),
                Some(2) => p.t2(role).grad(&grads).map(values),
                Some(_) => p.t4(role).grad(&grads).map(values),
                None => None,
            };
            out.extend(grad);
        }
    }
    let after = after.into_inference();
    for p in after.params() {
        for role in ["running_mean", "running_var"] {
            if p.get(role).is_some() {
                out.push(values(p.t1(role)));
            }
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(x, shape), after.device());
    out.push(values(after.forward(x)));
    out
}

/// Networks through batch norm (after a conv, and on features after a dense layer) and average
/// pooling.
fn norm_and_pool_network() -> Network {
    let layers = vec![
        LayerSpec::conv2d("conv", 5, 3, 1, 1),
        LayerSpec::batch_norm("bn1"),
        LayerSpec::relu(),
        LayerSpec::avg_pool(3, 2, 1),
        LayerSpec::flatten(),
        LayerSpec::dense("fc1", 6),
        LayerSpec::batch_norm("bn2"),
        LayerSpec::dense("fc2", 4),
    ];
    Network::init(&spec(layers, [3, 9, 7]), 3, &Device::flex()).unwrap()
}

/// maxprune's own batch norm and average pooling kernels agree with burn's operations within
/// rounding (1e-5 relative; the own batch norm sums its statistics in f64, burn's in f32):
/// training output, every gradient, the running statistics and evaluation output.
#[test]
fn own_norm_and_pooling_kernels_agree_with_burns() {
    let net = norm_and_pool_network();
    let shape = [5, 3, 9, 7];
    let own = passes(&net, super::Kernels::Own, shape);
    let burn = passes(&net, super::Kernels::Burn, shape);
    assert_eq!(own.len(), burn.len());
    assert_eq!(own.len(), 2 + 2 * 5 + 2 * 2 + 1, "every value compared");
    for (i, (a, b)) in own.iter().zip(&burn).enumerate() {
        assert_eq!(a.len(), b.len(), "value {i}: length");
        for (j, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "value {i}[{j}]: own {a} vs burn's {b}"
            );
        }
    }
}

/// Training through the own batch norm and pooling kernels is bit-identical whatever the thread
/// count.
#[test]
fn own_norm_and_pooling_kernels_are_bit_identical_whatever_the_thread_count() {
    let net = norm_and_pool_network();
    let with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        let out = pool.install(|| passes(&net, super::Kernels::Own, [17, 3, 9, 7]));
        out.concat().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let one = with(1);
    assert_eq!(one, with(2));
    assert_eq!(one, with(3));
}
