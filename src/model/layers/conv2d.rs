//! `conv2d`: a 2-D convolution with square kernels.

use serde::{Deserialize, Serialize};

use super::{
    Act, Fill, Forward, Inferred, Kernels, Kind, ParamDecl, Role, check_elements, check_sides, flops, maps, one,
    window_out,
};
use crate::model::conv;
use crate::model::params::LayerParams;
use crate::model::spec::ActShape;
use crate::onnx::{Builder, ints};

/// 2-D convolution, square kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2d {
    /// Unique name; its tensors are `<name>.weight` `[filters, in, kernel, kernel]` and
    /// `<name>.bias` `[filters]`.
    pub name: String,
    /// Output channels.
    pub filters: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding on every side.
    #[serde(default)]
    pub padding: usize,
}

impl Kind for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn role(&self) -> Role {
        Role::Producer
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        let [c, h, w] = maps(input)?;
        let Conv2d {
            filters,
            kernel,
            stride,
            padding,
            ..
        } = *self;
        if filters == 0 || kernel == 0 || stride == 0 {
            return Err("expected positive filters, kernel and stride".into());
        }
        check_sides(&[("kernel", kernel), ("stride", stride), ("padding", padding)])?;
        check_elements("filters", &[filters])?;
        let (ho, wo) = window_out(input, [h, w], kernel, stride, padding)?;
        let weights = check_elements("weight", &[filters, c, kernel, kernel])?;
        check_elements("output", &[filters, ho, wo])?;
        Ok(Inferred {
            output: ActShape::Map([filters, ho, wo]),
            params: weights + filters,
            flops: flops(&[weights, ho, wo]),
        })
    }

    fn params(&self, input: ActShape) -> Vec<ParamDecl> {
        let (f, k) = (self.filters, self.kernel);
        vec![
            ParamDecl {
                role: "weight",
                shape: vec![f, input.channels(), k, k],
                fill: Fill::Uniform,
                out_axis: Some(0),
                in_axis: Some(1),
                trainable: true,
            },
            ParamDecl {
                role: "bias",
                shape: vec![f],
                fill: Fill::Zeros,
                out_axis: Some(0),
                in_axis: None,
                trainable: true,
            },
        ]
    }

    fn outputs(&self) -> Option<usize> {
        Some(self.filters)
    }

    fn set_outputs(&mut self, outputs: usize) {
        self.filters = outputs;
    }

    fn forward(&self, params: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        let Act::Map(x) = act else {
            unreachable!("a validated conv2d reads feature maps")
        };
        let (w, b) = (params.t4("weight"), params.t1("bias"));
        Act::Map(match ctx.kernels {
            Kernels::Own => conv::conv2d(x, w, b, self.stride, self.padding),
            Kernels::Burn => conv::burn_conv2d(x, w, b, self.stride, self.padding),
        })
    }

    fn onnx(&self, b: &mut Builder, name: &str, params: &LayerParams, _input: ActShape) {
        let inputs = b.params(name, params);
        let attrs = vec![
            ints("kernel_shape", &[self.kernel, self.kernel]),
            ints("strides", &[self.stride, self.stride]),
            ints("pads", &[self.padding; 4]),
        ];
        b.node("Conv", name, inputs, attrs);
    }
}
