//! Batch normalisation with its own forward and backward pass for the flex backend (f32).
//!
//! Built from burn's tensor operations, a training pass permutes the maps to one row per
//! example and position, reduces over rows, broadcasts the statistics back and permutes again,
//! each step a pass over the activations that autodiff records. Here each channel is one task:
//! its batch mean and variance are summed in f64 over the channel's planes, in order, then one
//! pass writes the normalised input `x̂` (kept for the backward pass) and the output. The
//! backward pass is the closed form: `dx = w / σ / N · (N dy − Σdy − x̂ Σ(dy x̂))`,
//! `dw = Σ dy x̂`, `db = Σ dy`. A channel's result does not depend on how channels are split
//! over threads, so training stays bit-identical whatever the thread count. Evaluation applies
//! the per-channel scale and shift in one pass.
//!
//! On any other backend or dtype the functions return `None` and the layer uses burn's
//! operations.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::host::{Kept, Placement, dims4, lifted, placement, tensor, values};

/// A training pass's batch statistics, per channel: the mean and the biased variance (the
/// running statistics' updates are made from them).
pub struct BatchStats {
    /// Mean over examples and positions.
    pub mean: Tensor<1>,
    /// Biased variance over examples and positions.
    pub var: Tensor<1>,
}

/// The sizes of one batch norm: `batch` examples of `channels` planes of `plane` values.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    dims: [usize; 4],
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Geometry {
    fn new(x: &FlexTensor) -> Geometry {
        let dims = dims4(x);
        let [batch, channels, h, w] = dims;
        Geometry {
            dims,
            batch,
            channels,
            plane: h * w,
        }
    }

    /// Values per channel.
    fn count(&self) -> usize {
        self.batch * self.plane
    }

    /// The planes of channel `c`, one per example.
    fn planes<'a>(&self, v: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (p, cs) = (self.plane, self.channels);
        (0..self.batch).map(move |b| &v[(b * cs + c) * p..(b * cs + c + 1) * p])
    }
}

/// Batch normalisation of `x` in training mode, `y = (x − mean) / sqrt(var + eps) · weight +
/// bias` with the batch's per-channel statistics, and those statistics; `None` where the
/// tensors are not f32 on flex (the caller then uses burn's operations).
///
/// # Shapes
/// - x: `[batch, channels, height, width]` (a vector of features is `[batch, features, 1, 1]`)
/// - weight, bias: `[channels]`
pub fn train(x: &Tensor<4>, weight: &Tensor<1>, bias: &Tensor<1>, eps: f64) -> Option<(Tensor<4>, BatchStats)> {
    let place = placement(&[
        (x.device(), x.dtype()),
        (weight.device(), weight.dtype()),
        (bias.device(), bias.dtype()),
    ]);
    let device = x.device();
    let (y, mean, var) = match place {
        Placement::Flex => {
            let (x, w, b) = (
                x.clone().try_into_primitive::<Flex>().ok()?,
                weight.clone().try_into_primitive::<Flex>().ok()?,
                bias.clone().try_into_primitive::<Flex>().ok()?,
            );
            let f = forward(&Geometry::new(&x), &x, &w, &b, eps);
            (Tensor::from_primitive::<Flex>(f.y), f.mean, f.var)
        }
        Placement::AutodiffFlex => {
            let (x, w, b) = (
                lifted(x).try_into_primitive::<Autodiff<Flex>>().ok()?,
                lifted(weight).try_into_primitive::<Autodiff<Flex>>().ok()?,
                lifted(bias).try_into_primitive::<Autodiff<Flex>>().ok()?,
            );
            let (y, mean, var) = tracked(x, w, b, eps);
            (Tensor::from_primitive::<Autodiff<Flex>>(y), mean, var)
        }
        Placement::Other => return None,
    };
    let stat = |v: Vec<f64>| {
        let n = v.len();
        let v: Vec<f32> = v.into_iter().map(|s| s as f32).collect();
        Tensor::<1>::from_data(TensorData::new(v, [n]), &device)
    };
    Some((
        y,
        BatchStats {
            mean: stat(mean),
            var: stat(var),
        },
    ))
}

/// `x · scale + shift` per channel (batch normalisation in evaluation mode, its statistics
/// folded into `scale` and `shift`); `None` unless every tensor is f32 on flex outside autodiff.
///
/// # Shapes
/// - x: `[batch, channels, height, width]`
/// - scale, shift: `[channels]`
pub fn affine(x: &Tensor<4>, scale: &Tensor<1>, shift: &Tensor<1>) -> Option<Tensor<4>> {
    let place = placement(&[
        (x.device(), x.dtype()),
        (scale.device(), scale.dtype()),
        (shift.device(), shift.dtype()),
    ]);
    if place != Placement::Flex {
        return None;
    }
    let xp = x.clone().try_into_primitive::<Flex>().ok()?;
    let (scale, shift) = (scale.to_data(), shift.to_data());
    let (scale, shift) = (scale.as_slice::<f32>().ok()?, shift.as_slice::<f32>().ok()?);
    let g = Geometry::new(&xp);
    let mut y = values(&xp).into_owned();
    y.par_chunks_mut(g.plane.max(1)).enumerate().for_each(|(i, plane)| {
        let c = i % g.channels;
        let (s, t) = (scale[c], shift[c]);
        plane.iter_mut().for_each(|v| *v = *v * s + t);
    });
    Some(Tensor::from_primitive::<Flex>(tensor(y, g.dims.to_vec())))
}

/// What a training forward pass computes.
struct Forwarded {
    y: FlexTensor,
    /// The normalised input `x̂`, kept for the backward pass.
    normed: Vec<f32>,
    mean: Vec<f64>,
    var: Vec<f64>,
    /// `1 / sqrt(var + eps)` per channel.
    inv_std: Vec<f32>,
}

/// Per channel (one task each): mean, biased variance (two passes in f64), then `x̂` and `y`.
fn forward(g: &Geometry, x: &FlexTensor, w: &FlexTensor, b: &FlexTensor, eps: f64) -> Forwarded {
    let (xv, wv, bv) = (values(x), values(w), values(b));
    let n = g.count().max(1) as f64;
    let stats: Vec<(f64, f64)> = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let mean = g.planes(&xv, c).flatten().map(|&v| v as f64).sum::<f64>() / n;
            let var = g
                .planes(&xv, c)
                .flatten()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean, var)
        })
        .collect();
    let inv_std: Vec<f32> = stats
        .iter()
        .map(|&(_, var)| (1.0 / (var + eps).sqrt()) as f32)
        .collect();
    let mut normed = vec![0.0f32; xv.len()];
    let mut y = vec![0.0f32; xv.len()];
    normed
        .par_chunks_mut(g.plane.max(1))
        .zip(y.par_chunks_mut(g.plane.max(1)))
        .zip(xv.par_chunks(g.plane.max(1)))
        .enumerate()
        .for_each(|(i, ((normed, y), x))| {
            let c = i % g.channels;
            let (mean, s) = (stats[c].0 as f32, inv_std[c]);
            let (wc, bc) = (wv[c], bv[c]);
            for ((n, y), &x) in normed.iter_mut().zip(y.iter_mut()).zip(x) {
                *n = (x - mean) * s;
                *y = *n * wc + bc;
            }
        });
    Forwarded {
        y: tensor(y, g.dims.to_vec()),
        normed,
        mean: stats.iter().map(|s| s.0).collect(),
        var: stats.iter().map(|s| s.1).collect(),
        inv_std,
    }
}

/// What the backward pass needs from the forward pass.
#[derive(Clone, Debug)]
struct Saved {
    geometry: Geometry,
    normed: Kept<f32>,
    inv_std: Kept<f32>,
    weight: FlexTensor,
}

/// The autodiff operation: parents are the input, the weight and the bias.
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Saved {
            geometry: g,
            normed,
            inv_std,
            weight,
        } = ops.state;
        let dy = values(&grad);
        let normed = &normed.0;
        // Per channel: Σ dy and Σ dy·x̂, in f64, in order.
        let sums: Vec<(f64, f64)> = (0..g.channels)
            .into_par_iter()
            .map(|c| {
                g.planes(&dy, c)
                    .zip(g.planes(normed, c))
                    .flat_map(|(d, n)| d.iter().zip(n))
                    .fold((0.0, 0.0), |(s, sn), (&d, &n)| (s + d as f64, sn + (d * n) as f64))
            })
            .collect();
        if let Some(node) = node_w {
            let dw = sums.iter().map(|s| s.1 as f32).collect();
            grads.register::<Flex>(node.id, tensor(dw, vec![g.channels]));
        }
        if let Some(node) = node_b {
            let db = sums.iter().map(|s| s.0 as f32).collect();
            grads.register::<Flex>(node.id, tensor(db, vec![g.channels]));
        }
        if let Some(node) = node_x {
            let wv = values(&weight);
            let n = g.count().max(1) as f32;
            let mut dx = vec![0.0f32; dy.len()];
            dx.par_chunks_mut(g.plane.max(1))
                .zip(dy.par_chunks(g.plane.max(1)).zip(normed.par_chunks(g.plane.max(1))))
                .enumerate()
                .for_each(|(i, (dx, (dy, normed)))| {
                    let c = i % g.channels;
                    let k = wv[c] * inv_std.0[c] / n;
                    let (s, sn) = (sums[c].0 as f32, sums[c].1 as f32);
                    for ((dx, &d), &xn) in dx.iter_mut().zip(dy).zip(normed) {
                        *dx = k * (n * d - s - xn * sn);
                    }
                });
            grads.register::<Flex>(node.id, tensor(dx, g.dims.to_vec()));
        }
    }
}

/// The batch norm on the autodiff device, recording [`NormBackward`] when any input is tracked;
/// returns the output and the per-channel mean and biased variance.
fn tracked(
    x: FloatTensor<Autodiff<Flex>>,
    w: FloatTensor<Autodiff<Flex>>,
    b: FloatTensor<Autodiff<Flex>>,
    eps: f64,
) -> (FloatTensor<Autodiff<Flex>>, Vec<f64>, Vec<f64>) {
    let g = Geometry::new(x.primitive());
    let f = forward(&g, x.primitive(), w.primitive(), b.primitive(), eps);
    let prep = NormBackward
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful();
    let y = match prep {
        OpsKind::Tracked(prep) => {
            let saved = Saved {
                geometry: g,
                normed: Kept(Arc::new(f.normed)),
                inv_std: Kept(Arc::new(f.inv_std)),
                weight: w.primitive().clone(),
            };
            prep.finish(saved, f.y)
        }
        OpsKind::UnTracked(prep) => prep.finish(f.y),
    };
    (y, f.mean, f.var)
}
