//! `avg-pool`: 2-D average pooling over square windows, zero padding counted (PyTorch's
//! `AvgPool2d` defaults: `count_include_pad=True`, floor).

use serde::{Deserialize, Serialize};

use super::{Act, Forward, Inferred, Kernels, Kind, check_sides, maps, window_out};
use crate::model::params::LayerParams;
use crate::model::pool;
use crate::model::spec::ActShape;
use crate::onnx::{Builder, int, ints};

/// 2-D average pooling, square window; padded zeros count in every window's mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgPool {
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side (at most half the window, as PyTorch requires).
    #[serde(default)]
    pub padding: usize,
}

impl Kind for AvgPool {
    fn kind(&self) -> &'static str {
        "avg-pool"
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        let [c, h, w] = maps(input)?;
        if self.kernel == 0 || self.stride == 0 {
            return Err("expected positive kernel and stride".into());
        }
        check_sides(&[
            ("kernel", self.kernel),
            ("stride", self.stride),
            ("padding", self.padding),
        ])?;
        if 2 * self.padding > self.kernel {
            return Err(format!(
                "padding: expected at most half the kernel ({}), found {}",
                self.kernel / 2,
                self.padding
            ));
        }
        let (ho, wo) = window_out(input, [h, w], self.kernel, self.stride, self.padding)?;
        Ok(Inferred {
            output: ActShape::Map([c, ho, wo]),
            params: 0,
            flops: 0,
        })
    }

    fn forward(&self, _: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        let Act::Map(x) = act else {
            unreachable!("a validated avg-pool reads feature maps")
        };
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        Act::Map(match ctx.kernels {
            Kernels::Own => pool::avg_pool2d(x, k, s, p),
            Kernels::Burn => pool::burn_avg_pool2d(x, k, s, p),
        })
    }

    fn onnx(&self, b: &mut Builder, name: &str, _: &LayerParams, _: ActShape) {
        let attrs = vec![
            ints("kernel_shape", &[self.kernel, self.kernel]),
            ints("strides", &[self.stride, self.stride]),
            ints("pads", &[self.padding; 4]),
            int("count_include_pad", 1),
        ];
        b.node("AveragePool", name, vec![], attrs);
    }
}
