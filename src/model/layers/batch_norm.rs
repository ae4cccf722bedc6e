//! `batch-norm`: batch normalisation over channels (after a conv) or features (after a dense
//! layer), PyTorch's `BatchNorm2d` / `BatchNorm1d`: batch statistics in training, running ones
//! in evaluation.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{Act, Fill, Forward, Inferred, Kernels, Kind, ParamDecl, Role, flops};
use crate::model::norm::{self, BatchStats};
use crate::model::params::{LayerParams, ParamTensor};
use crate::model::spec::ActShape;
use crate::onnx::{Builder, float};

/// Batch normalisation: `y = (x - mean) / sqrt(var + eps) * weight + bias` per channel.
///
/// In training the mean and (biased) variance are the batch's, over examples and positions, and
/// the running statistics move toward them: `running = (1 - momentum) running + momentum stat`,
/// the variance unbiased (`n / (n - 1)`), as PyTorch does. In evaluation the running statistics
/// are used. Tensors: `<name>.weight`, `<name>.bias` (trained, one per channel), and the buffers
/// `<name>.running_mean`, `<name>.running_var` (PyTorch's names; buffers are not parameters:
/// they are saved with the network but not counted, trained or weight-pruned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNorm {
    /// Unique name (its tensors' prefix).
    pub name: String,
    /// Added to the variance before its square root (PyTorch's default 1e-5).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// How far the running statistics move toward each batch's (PyTorch's default 0.1).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_momentum() -> f64 {
    0.1
}

/// The channels (maps) or features (vectors) of `input`.
fn channels(input: ActShape) -> usize {
    match input {
        ActShape::Map([c, _, _]) => c,
        ActShape::Flat(n) => n,
    }
}

impl BatchNorm {
    /// A batch norm layer with PyTorch's defaults.
    pub fn new(name: &str) -> BatchNorm {
        BatchNorm {
            name: name.into(),
            eps: default_eps(),
            momentum: default_momentum(),
        }
    }

    /// The affine map evaluation mode applies per channel, `y = x * scale + shift`.
    pub fn scale_shift(&self, params: &LayerParams) -> (Tensor<1>, Tensor<1>) {
        let scale = params.t1("weight") / params.t1("running_var").add_scalar(self.eps).sqrt();
        let shift = params.t1("bias") - params.t1("running_mean") * scale.clone();
        (scale, shift)
    }

    /// The producer's parameters (conv or dense, directly before this layer) with this layer
    /// folded in: each output's weights and bias times its scale, plus its shift, so that
    /// producer-then-batch-norm in evaluation equals the folded producer alone. Masks are kept
    /// (a zero weight stays zero).
    pub fn fold_into(&self, own: &LayerParams, producer: &LayerParams) -> LayerParams {
        let (scale, shift) = self.scale_shift(own);
        producer.clone().map(|role, t| match role {
            "bias" => ParamTensor::R1(t.scale_rows(scale.clone()).into_r1() + shift.clone()),
            _ => t.scale_rows(scale.clone()),
        })
    }

    /// Normalises `x`, `[n, c]` with one row per example and position, by batch statistics
    /// with burn's operations (any backend); queues the running statistics' updates in `ctx`.
    fn train_burn(&self, params: &LayerParams, x: Tensor<2>, ctx: &mut Forward<'_>) -> Tensor<2> {
        let n = x.dims()[0];
        let (var, mean) = x.clone().var_mean_bias(0);
        let normed = (x - mean.clone()) / var.clone().add_scalar(self.eps).sqrt();
        let c = mean.dims()[1];
        let stats = BatchStats {
            mean: mean.detach().reshape([c]),
            var: var.detach().reshape([c]),
        };
        self.queue_updates(params, stats, n, ctx);
        normed * params.t1("weight").unsqueeze_dim(0) + params.t1("bias").unsqueeze_dim(0)
    }

    /// Normalises `x` (`[batch, channels, height, width]`, a vector being `[batch, features, 1,
    /// 1]`) by batch statistics with maxprune's own kernel ([`norm::train`]) where it applies;
    /// queues the running statistics' updates in `ctx`. `None`: use [`Self::train_burn`].
    fn train_own(&self, params: &LayerParams, x: &Tensor<4>, ctx: &mut Forward<'_>) -> Option<Tensor<4>> {
        if ctx.kernels != Kernels::Own {
            return None;
        }
        let [b, _, h, w] = x.dims();
        let (y, stats) = norm::train(x, &params.t1("weight"), &params.t1("bias"), self.eps)?;
        self.queue_updates(params, stats, b * h * w, ctx);
        Some(y)
    }

    /// Queues `running = (1 − momentum) running + momentum stat` for both statistics, the
    /// variance made unbiased over the `n` values each channel had.
    fn queue_updates(&self, params: &LayerParams, stats: BatchStats, n: usize, ctx: &mut Forward<'_>) {
        let m = self.momentum;
        let unbiased = if n > 1 { n as f64 / (n as f64 - 1.0) } else { 1.0 };
        let update = |running: Tensor<1>, stat: Tensor<1>, factor: f64| {
            ParamTensor::R1(running.mul_scalar(1.0 - m) + stat.mul_scalar(factor * m))
        };
        ctx.updates
            .push(("running_mean", update(params.t1("running_mean"), stats.mean, 1.0)));
        ctx.updates
            .push(("running_var", update(params.t1("running_var"), stats.var, unbiased)));
    }
}

impl Kind for BatchNorm {
    fn kind(&self) -> &'static str {
        "batch-norm"
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }

    /// Acts on each channel alone: it may stand between a producer and its maxout, and pruning
    /// a channel removes its statistics with it.
    fn role(&self) -> Role {
        Role::Piecewise
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(format!("eps: expected a positive number, found {}", self.eps));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(format!(
                "momentum: expected a number in [0, 1], found {}",
                self.momentum
            ));
        }
        Ok(Inferred {
            output: input,
            params: 2 * channels(input),
            flops: flops(&[input.numel()]),
        })
    }

    fn params(&self, input: ActShape) -> Vec<ParamDecl> {
        let c = channels(input);
        let decl = |role, fill, trainable| ParamDecl {
            role,
            shape: vec![c],
            fill,
            out_axis: Some(0),
            in_axis: None,
            trainable,
        };
        vec![
            decl("weight", Fill::Ones, true),
            decl("bias", Fill::Zeros, true),
            decl("running_mean", Fill::Zeros, false),
            decl("running_var", Fill::Ones, false),
        ]
    }

    fn forward(&self, params: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        let training = ctx.rng.is_some();
        match act {
            Act::Flat(x) if training => {
                let [n, c] = x.dims();
                let maps = x.clone().reshape([n, c, 1, 1]);
                Act::Flat(match self.train_own(params, &maps, ctx) {
                    Some(y) => y.reshape([n, c]),
                    None => self.train_burn(params, x, ctx),
                })
            }
            Act::Map(x) if training => Act::Map(match self.train_own(params, &x, ctx) {
                Some(y) => y,
                None => {
                    let [b, c, h, w] = x.dims();
                    let rows = x.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
                    let y = self.train_burn(params, rows, ctx);
                    y.reshape([b, h, w, c]).permute([0, 3, 1, 2])
                }
            }),
            Act::Flat(x) => {
                let (scale, shift) = self.scale_shift(params);
                let [n, c] = x.dims();
                let own = (ctx.kernels == Kernels::Own)
                    .then(|| norm::affine(&x.clone().reshape([n, c, 1, 1]), &scale, &shift))
                    .flatten();
                Act::Flat(match own {
                    Some(y) => y.reshape([n, c]),
                    None => x * scale.unsqueeze_dim(0) + shift.unsqueeze_dim(0),
                })
            }
            Act::Map(x) => {
                let (scale, shift) = self.scale_shift(params);
                let c = scale.dims()[0];
                let own = (ctx.kernels == Kernels::Own)
                    .then(|| norm::affine(&x, &scale, &shift))
                    .flatten();
                Act::Map(own.unwrap_or_else(|| x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])))
            }
        }
    }

    fn onnx(&self, b: &mut Builder, name: &str, params: &LayerParams, _input: ActShape) {
        // weight, bias, running_mean, running_var: ONNX's scale, B, input_mean, input_var.
        let inputs = b.params(name, params);
        b.node(
            "BatchNormalization",
            name,
            inputs,
            vec![float("epsilon", self.eps as f32)],
        );
    }
}
