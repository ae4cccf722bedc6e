//! `max-pool`: 2-D max pooling over square windows, no padding.

use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kernels, Kind, check_sides, maps, window_out};
use crate::model::params::LayerParams;
use crate::model::pool;
use crate::model::spec::ActShape;
use crate::onnx::{Builder, ints};

/// 2-D max pooling, square window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPool {
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl Kind for MaxPool {
    fn kind(&self) -> &'static str {
        "max-pool"
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        let [c, h, w] = maps(input)?;
        if self.kernel == 0 || self.stride == 0 {
            return Err("expected positive kernel and stride".into());
        }
        check_sides(&[("kernel", self.kernel), ("stride", self.stride)])?;
        let (ho, wo) = window_out(input, [h, w], self.kernel, self.stride, 0)?;
        Ok(Inferred {
            output: ActShape::Map([c, ho, wo]),
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        let Act::Map(x) = act else {
            unreachable!("a validated max-pool reads feature maps")
        };
        Act::Map(match ctx.kernels {
            Kernels::Own => pool::max_pool2d(x, self.kernel, self.stride),
            Kernels::Burn => pool::burn_max_pool2d(x, self.kernel, self.stride),
        })
    }

    fn onnx(&self, b: &mut Builder, name: &str, _: &LayerParams, _: ActShape) {
        let attrs = vec![
            ints("kernel_shape", &[self.kernel, self.kernel]),
            ints("strides", &[self.stride, self.stride]),
        ];
        b.node("MaxPool", name, vec![], attrs);
    }
}
