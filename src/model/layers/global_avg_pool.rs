//! `global-avg-pool`: the mean of every channel over its whole map, as a vector of channels
//! (PyTorch's `AdaptiveAvgPool2d(1)` then `flatten(1)`), so a dense classifier can follow
//! without a `flatten`.

use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kind, maps};
use crate::model::params::LayerParams;
use crate::model::spec::ActShape;
use crate::onnx::{Builder, int};

/// Global average pooling: `[channels, height, width]` to a vector of `channels` means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAvgPool {}

impl Kind for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "global-avg-pool"
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        let [c, _, _] = maps(input)?;
        Ok(Inferred {
            output: ActShape::Flat(c),
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, _: &mut Forward<'_>) -> Act {
        let Act::Map(x) = act else {
            unreachable!("a validated global-avg-pool reads feature maps")
        };
        let [b, c, h, w] = x.dims();
        // [batch, channels, positions] -> mean over positions
        Act::Flat(x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]))
    }

    fn onnx(&self, b: &mut Builder, name: &str, _: &LayerParams, _: ActShape) {
        b.node("GlobalAveragePool", name, vec![], vec![]);
        b.node("Flatten", &format!("{name}.flatten"), vec![], vec![int("axis", 1)]);
    }
}
