//! `relu`: the rectified linear unit.

use burn::tensor::activation;
use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kind, Role};
use crate::model::params::LayerParams;
use crate::model::spec::ActShape;
use crate::onnx::Builder;

/// Rectified linear unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relu {}

impl Kind for Relu {
    fn kind(&self) -> &'static str {
        "relu"
    }

    fn role(&self) -> Role {
        Role::Piecewise
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        Ok(Inferred {
            output: input,
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, _: &mut Forward<'_>) -> Act {
        match act {
            Act::Map(x) => Act::Map(activation::relu(x)),
            Act::Flat(x) => Act::Flat(activation::relu(x)),
        }
    }

    fn onnx(&self, b: &mut Builder, name: &str, _: &LayerParams, _: ActShape) {
        b.node("Relu", name, vec![], vec![]);
    }
}
