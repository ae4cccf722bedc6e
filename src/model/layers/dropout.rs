//! `dropout`: inverted dropout in training, the identity in evaluation.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kind, Role};
use crate::model::params::LayerParams;
use crate::model::spec::ActShape;
use crate::onnx::Builder;
use crate::rng::SplitMix64;

/// Inverted dropout with drop probability `p` during training; identity in evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    /// Probability of dropping an element, in `[0, 1)`.
    pub p: f32,
}

impl Kind for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn role(&self) -> Role {
        Role::Piecewise
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("p: expected a value in [0, 1), found {}", self.p));
        }
        Ok(Inferred {
            output: input,
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        match ctx.rng.as_deref_mut() {
            Some(rng) if self.p > 0.0 => match act {
                Act::Map(x) => Act::Map(dropout(x, self.p, rng)),
                Act::Flat(x) => Act::Flat(dropout(x, self.p, rng)),
            },
            _ => act,
        }
    }

    /// Nothing: an exported network is evaluated.
    fn onnx(&self, _: &mut Builder, _: &str, _: &LayerParams, _: ActShape) {}
}

/// Inverted dropout: keeps each value with probability `1 - p`, scaled by `1 / (1 - p)`.
fn dropout<const D: usize>(x: Tensor<D>, p: f32, rng: &mut SplitMix64) -> Tensor<D> {
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..n).map(|_| if rng.next_f32() < p { 0.0 } else { scale }).collect();
    let device = x.device().without_autodiff();
    x * Tensor::<D>::from_data(TensorData::new(mask, dims), &device)
}
