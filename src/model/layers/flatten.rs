//! `flatten`: feature maps to a vector, in `C, H, W` (row-major) order.

use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kind};
use crate::model::params::LayerParams;
use crate::model::spec::ActShape;
use crate::onnx::{Builder, int};

/// Flattens `[channels, height, width]` to a vector in that (row-major) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {}

impl Kind for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        Ok(Inferred {
            output: ActShape::Flat(input.numel()),
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, _: &mut Forward<'_>) -> Act {
        Act::Flat(act.into_flat())
    }

    fn onnx(&self, b: &mut Builder, name: &str, _: &LayerParams, _: ActShape) {
        b.node("Flatten", name, vec![], vec![int("axis", 1)]);
    }
}
