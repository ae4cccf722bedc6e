//! `maxout`: the max over contiguous groups of the producing layer's outputs.

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kind, Role};
use crate::model::layout;
use crate::model::params::LayerParams;
use crate::model::spec::{ActShape, Pieces};
use crate::onnx::{Builder, int, ints};

/// Maxout over groups of the preceding conv or dense layer's outputs: `h_u = max_j z_{u,j}`.
/// A `relu` and a `dropout` may stand between them, as in the paper's network
/// (`dense -> relu -> dropout -> maxout`): the pieces are then rectified, `h_u = max_j
/// relu(z_{u,j}) = relu(max_j z_{u,j})`, and a unit of one piece is a ReLU, not the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maxout {
    /// Pieces per unit.
    pub pieces: Pieces,
}

/// The max over the pieces axis of `[batch, units, pieces, positions]`, as `[batch, units, 1,
/// positions]`: piece by piece, element-wise over runs of `positions`, where flex's `max_dim`
/// walks a middle axis one element at a time (half the time of `max_dim` for LeNet's conv
/// maxout layers, by `bench --per-layer`). As `max_dim`: a NaN in any piece is kept, and among
/// equal pieces the first wins and takes the gradient.
fn max_over_pieces(grouped: Tensor<4>) -> Tensor<4> {
    let k = grouped.dims()[2];
    (1..k).fold(grouped.clone().narrow(2, 0, 1), |m, j| {
        let p = grouped.clone().narrow(2, j, 1);
        let take = m.clone().lower(p.clone()).bool_or(p.clone().is_nan());
        m.mask_where(take, p)
    })
}

impl Kind for Maxout {
    fn kind(&self) -> &'static str {
        "maxout"
    }

    fn role(&self) -> Role {
        Role::Maxout
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        let pieces = &self.pieces;
        let units = pieces.units();
        if units == 0 {
            return Err("expected at least one unit".into());
        }
        // Not `(0..units).find(..)`: a uniform layer may claim 2^62 units (seen in fuzzing).
        let empty = match pieces {
            Pieces::Uniform { k, .. } => (*k == 0).then_some(0),
            Pieces::Ragged { per_unit } => per_unit.iter().position(|&c| c == 0),
        };
        if let Some(u) = empty {
            return Err(format!("unit {u}: expected k >= 1 pieces, found 0"));
        }
        let width = input.channels();
        if pieces.total() != width {
            return Err(match pieces {
                Pieces::Uniform { units, k } => format!(
                    "{units} units of k={k} need a producer width of {}, found {width} (width must be units x k)",
                    units.saturating_mul(*k)
                ),
                Pieces::Ragged { .. } => format!(
                    "the per-unit pieces sum to {}, but the producer's width is {width}",
                    pieces.total()
                ),
            });
        }
        let output = match input {
            ActShape::Map([_, h, w]) => ActShape::Map([units, h, w]),
            ActShape::Flat(_) => ActShape::Flat(units),
        };
        Ok(Inferred {
            output,
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        let pieces = &self.pieces;
        let (units, k) = (pieces.units(), pieces.k_max());
        if pieces.is_uniform() && k == 1 {
            // The max over one piece is that piece: no copy (a pruned layer's usual end point).
            ctx.traced = ctx.trace.then(|| act.as_units());
            return act;
        }
        let gather = (!pieces.is_uniform()).then(|| {
            let idx: Vec<i64> = layout::padded_gather_index(pieces, pieces.total())
                .into_iter()
                .map(|i| i as i64)
                .collect();
            let n = idx.len();
            Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &act.device())
        });
        match act {
            Act::Flat(x) => {
                let [b, _] = x.dims();
                let x = match gather {
                    Some(idx) => pad_neg_inf(x, 1).select(1, idx),
                    None => x,
                };
                let grouped = x.reshape([b, units, k]); // [batch, units, pieces]
                let out = grouped.clone().max_dim(2).reshape([b, units]);
                ctx.traced = ctx.trace.then_some(grouped);
                Act::Flat(out)
            }
            Act::Map(x) => {
                let [b, _, h, w] = x.dims();
                let x = match gather {
                    Some(idx) => pad_neg_inf(x, 1).select(1, idx),
                    None => x,
                };
                let grouped = x.reshape([b, units, k, h * w]); // [batch, units, pieces, positions]
                let out = max_over_pieces(grouped.clone()).reshape([b, units, h, w]);
                // [batch, positions, units, pieces] -> [contests, units, pieces]
                ctx.traced = ctx
                    .trace
                    .then(|| grouped.permute([0, 3, 1, 2]).reshape([b * h * w, units, k]));
                Act::Map(out)
            }
        }
    }

    /// Maxout over the channel axis of a `[batch, width(, H, W)]` value: a `Gather` that pads
    /// ragged units with a repeat of their first piece, a `Reshape` to `[batch, units, k(, H,
    /// W)]` and a `ReduceMax` over the pieces.
    fn onnx(&self, b: &mut Builder, name: &str, _: &LayerParams, input: ActShape) {
        let pieces = &self.pieces;
        let (units, k) = (pieces.units(), pieces.k_max());
        if let Pieces::Ragged { per_unit } = pieces {
            let mut index = Vec::with_capacity(units * k);
            let mut offset = 0i64;
            for &c in per_unit {
                index.extend((0..k as i64).map(|j| offset + if j < c as i64 { j } else { 0 }));
                offset += c as i64;
            }
            let index = b.int_tensor(format!("{name}.gather_index"), &index);
            b.node("Gather", &format!("{name}.gather"), vec![index], vec![int("axis", 1)]);
        }
        // 0 keeps the batch dimension as it is.
        let mut shape = vec![0, units as i64, k as i64];
        if let ActShape::Map([_, h, w]) = input {
            shape.extend([h as i64, w as i64]);
        }
        let shape = b.int_tensor(format!("{name}.shape"), &shape);
        b.node("Reshape", &format!("{name}.reshape"), vec![shape], vec![]);
        b.node(
            "ReduceMax",
            &format!("{name}.max"),
            vec![],
            vec![ints("axes", &[2]), int("keepdims", 0)],
        );
    }
}

/// Appends one `-inf` channel/feature along `dim` 1, the padding target of ragged gathers.
fn pad_neg_inf<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let mut shape = x.dims();
    shape[dim] = 1;
    let pad = Tensor::full(shape, f32::NEG_INFINITY, &x.device());
    Tensor::cat(vec![x, pad], dim)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::max_over_pieces;
    use crate::rng::SplitMix64;

    /// Output and input gradient of `f` on `[2, 3, k, 5]` (values from a few levels, so pieces
    /// tie) weighted by random numbers.
    fn run(f: impl Fn(Tensor<4>) -> Tensor<4>, k: usize, nan_at: Option<usize>) -> (Vec<f32>, Vec<f32>) {
        let d = Device::flex().autodiff();
        let mut rng = SplitMix64::new(5);
        let shape = [2, 3, k, 5];
        let n = shape.iter().product();
        let mut v: Vec<f32> = (0..n).map(|_| (rng.next_u64() % 4) as f32 - 1.5).collect();
        if let Some(i) = nan_at {
            v[i] = f32::NAN;
        }
        let x = Tensor::<4>::from_data(TensorData::new(v, shape), &d).require_grad();
        let out = f(x.clone());
        let r: Vec<f32> = (0..2 * 3 * 5).map(|_| rng.next_f32()).collect();
        let grads = (out.clone() * Tensor::<4>::from_data(TensorData::new(r, [2, 3, 1, 5]), &d))
            .sum()
            .backward();
        let values = |t: Tensor<4>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        (values(out), values(x.grad(&grads).unwrap()))
    }

    #[test]
    fn the_max_over_pieces_equals_max_dim_with_its_gradient_ties_and_nan() {
        for k in 1..=4 {
            let ours = run(max_over_pieces, k, None);
            assert_eq!(ours, run(|x| x.max_dim(2), k, None), "k = {k}");
        }
        // A NaN in the last piece of unit 0's first position is the unit's output there.
        let (out, _) = run(max_over_pieces, 3, Some(2 * 5));
        assert!(out[0].is_nan() && out[1..].iter().all(|v| !v.is_nan()), "{out:?}");
    }
}
