//! `dense`: a fully connected layer.

use serde::{Deserialize, Serialize};

use super::{Act, Fill, Forward, Inferred, Kind, ParamDecl, Role, check_elements, flops};
use crate::model::params::LayerParams;
use crate::model::spec::ActShape;
use crate::onnx::{Builder, int};

/// Fully connected layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    /// Unique name; its tensors are `<name>.weight` `[outputs, inputs]` and `<name>.bias`
    /// `[outputs]` (PyTorch's layout).
    pub name: String,
    /// Output width.
    pub outputs: usize,
}

impl Kind for Dense {
    fn kind(&self) -> &'static str {
        "dense"
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn role(&self) -> Role {
        Role::Producer
    }

    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        let ActShape::Flat(n) = input else {
            return Err(format!(
                "expected a vector as input (add a flatten layer), found maps {input}"
            ));
        };
        if self.outputs == 0 {
            return Err("expected at least one output".into());
        }
        let weights = check_elements("weight", &[n, self.outputs])?;
        Ok(Inferred {
            output: ActShape::Flat(self.outputs),
            params: weights + self.outputs,
            flops: flops(&[weights]),
        })
    }

    fn params(&self, input: ActShape) -> Vec<ParamDecl> {
        vec![
            ParamDecl {
                role: "weight",
                shape: vec![self.outputs, input.numel()],
                fill: Fill::Uniform,
                out_axis: Some(0),
                in_axis: Some(1),
                trainable: true,
            },
            ParamDecl {
                role: "bias",
                shape: vec![self.outputs],
                fill: Fill::Zeros,
                out_axis: Some(0),
                in_axis: None,
                trainable: true,
            },
        ]
    }

    fn outputs(&self) -> Option<usize> {
        Some(self.outputs)
    }

    fn set_outputs(&mut self, outputs: usize) {
        self.outputs = outputs;
    }

    fn forward(&self, params: &LayerParams, act: Act, _ctx: &mut Forward<'_>) -> Act {
        let Act::Flat(x) = act else {
            unreachable!("a validated dense layer reads a vector")
        };
        let (w, b) = (params.t2("weight"), params.t1("bias"));
        // [batch, in] x [in, out] + [1, out]
        Act::Flat(x.matmul(w.transpose()) + b.unsqueeze_dim(0))
    }

    fn onnx(&self, b: &mut Builder, name: &str, params: &LayerParams, _input: ActShape) {
        let inputs = b.params(name, params);
        b.node("Gemm", name, inputs, vec![int("transB", 1)]);
    }
}
