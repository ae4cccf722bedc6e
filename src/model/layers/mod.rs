//! Layer kinds. Each kind is one type in its own file that knows everything about itself: its
//! fields (serde), shape rule and validation, parameter and FLOP count, its parameter tensors
//! (shapes, initialisation, which axis holds its outputs and which its inputs, so pruning can
//! slice them), its forward pass, and its ONNX node. [`LayerSpec`] registers the kinds: the spec,
//! the network, pruning and export only talk to a layer through [`Kind`].
//!
//! Adding a kind: its file here (a struct implementing [`Kind`]), and one line in [`LayerSpec`]
//! and in `dispatch!` below.

use std::fmt;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::params::{LayerParams, ParamTensor};
use super::spec::{ActShape, MAX_SIDE, MAX_TENSOR_ELEMENTS, Pieces};
use crate::onnx::Builder;
use crate::rng::SplitMix64;

mod avg_pool;
mod batch_norm;
mod conv2d;
mod dense;
mod dropout;
mod flatten;
mod global_avg_pool;
mod max_pool;
mod maxout;
mod relu;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod torch_goldens;

pub use avg_pool::AvgPool;
pub use batch_norm::BatchNorm;
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use global_avg_pool::GlobalAvgPool;
pub use max_pool::MaxPool;
pub use maxout::Maxout;
pub use relu::Relu;

/// What a layer makes of its input: the output shape and its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inferred {
    /// The output's shape (per example).
    pub output: ActShape,
    /// Parameters of the layer.
    pub params: usize,
    /// Floating-point operations per example (2 x multiply-accumulates; see
    /// [`LayerInfo::flops`](super::spec::LayerInfo::flops)).
    pub flops: usize,
}

/// How a layer takes part in unit pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Has outputs of its own (conv filters, dense rows): produces pieces and consumes units.
    Producer,
    /// Acts on every value alone (relu, dropout), or on every channel alone with tensors of
    /// one entry per channel (batch norm): may stand between a producer and its maxout, and
    /// loses the channels its producer loses.
    Piecewise,
    /// Takes the max over groups of its producer's outputs.
    Maxout,
    /// Anything else (pooling, flatten): passes units through without owning any.
    Other,
}

/// How a fresh parameter tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Uniform in `±bound(fan_in)` by the spec's [`Init`](super::spec::Init), `fan_in` being
    /// the product of the shape's dimensions after the first.
    Uniform,
    /// Zeros.
    Zeros,
    /// Ones.
    Ones,
}

/// One parameter tensor a layer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDecl {
    /// Its role, the tensor name's suffix (`weight` in `fc1.weight`).
    pub role: &'static str,
    /// Its shape (PyTorch's layout).
    pub shape: Vec<usize>,
    /// How a fresh one is filled.
    pub fill: Fill,
    /// The axis indexed by the layer's outputs (filters, rows), if any.
    pub out_axis: Option<usize>,
    /// The axis indexed by the layer's inputs (input channels or features), if any.
    pub in_axis: Option<usize>,
    /// Whether training updates it by gradient (a parameter) or not (a buffer such as a
    /// running statistic, which is saved but neither counted, trained nor weight-pruned).
    pub trainable: bool,
}

/// What a forward pass carries from layer to layer besides the activation.
pub struct Forward<'a> {
    /// Which convolution, pooling and batch-norm kernels to run.
    pub kernels: Kernels,
    /// Training mode: dropout masks are drawn from it. `None` in evaluation.
    pub rng: Option<&'a mut SplitMix64>,
    /// Whether this layer's pieces are wanted (set per layer by the network).
    pub trace: bool,
    /// The pieces a maxout layer saw, when `trace` was set (see
    /// [`MaxoutTrace`](super::network::MaxoutTrace)).
    pub traced: Option<Tensor<3>>,
    /// New values of this layer's buffers that a training pass computed (batch norm's running
    /// statistics), by role: the network collects them after each layer.
    pub updates: Vec<(&'static str, ParamTensor)>,
}

/// Which convolution, pooling and batch-norm kernels a network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kernels {
    /// maxprune's own ([`conv`](super::conv), [`pool`](super::pool), [`norm`](super::norm)):
    /// im2col GEMM convolution, arg-max and average pooling and per-channel batch norm with
    /// their own backward passes on flex (f32); burn's on any other backend.
    #[default]
    Own,
    /// burn's `conv2d`, `max_pool2d`, `avg_pool2d` and batch norm from its tensor operations
    /// everywhere (for comparisons).
    Burn,
}

/// An activation between layers.
pub enum Act {
    /// `[batch, channels, height, width]`
    Map(Tensor<4>),
    /// `[batch, features]`
    Flat(Tensor<2>),
}

impl Act {
    /// Every channel or feature as a unit of one piece, `[contests, units, 1]` (one contest per
    /// example and spatial position, as a conv maxout layer's trace).
    pub fn as_units(&self) -> Tensor<3> {
        match self {
            Act::Map(x) => {
                let [b, c, h, w] = x.dims();
                x.clone().permute([0, 2, 3, 1]).reshape([b * h * w, c, 1])
            }
            Act::Flat(x) => {
                let [b, c] = x.dims();
                x.clone().reshape([b, c, 1])
            }
        }
    }

    /// The device its tensor lives on.
    pub fn device(&self) -> Device {
        match self {
            Act::Map(x) => x.device(),
            Act::Flat(x) => x.device(),
        }
    }

    /// Flattened per example, `[batch, features]`.
    pub fn into_flat(self) -> Tensor<2> {
        match self {
            Act::Map(x) => x.flatten(1, 3),
            Act::Flat(x) => x,
        }
    }
}

/// The behaviour of a layer kind. Errors of [`infer`](Kind::infer) are messages about the
/// layer's fields; the spec prefixes them with the layer's index, kind and name.
pub trait Kind {
    /// Short kind name, as in `spec.json` and `inspect`.
    fn kind(&self) -> &'static str;

    /// The layer's name, for layers with parameters.
    fn name(&self) -> Option<&str> {
        None
    }

    /// How it takes part in unit pruning.
    fn role(&self) -> Role {
        Role::Other
    }

    /// Checks the layer's fields against its input and infers its output and cost.
    fn infer(&self, input: ActShape) -> Result<Inferred, String>;

    /// Its parameter tensors for `input` (none by default), in the order they are saved.
    fn params(&self, _input: ActShape) -> Vec<ParamDecl> {
        Vec::new()
    }

    /// The number of outputs (filters, rows) of a producer; `None` for other kinds.
    fn outputs(&self) -> Option<usize> {
        None
    }

    /// Sets the number of outputs (filters, rows) of a producer; others ignore it.
    fn set_outputs(&mut self, _outputs: usize) {}

    /// The forward pass. The spec was validated, so `act` has the shape
    /// [`infer`](Kind::infer) accepted and `params` the shapes [`params`](Kind::params) declared.
    fn forward(&self, params: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act;

    /// Appends its ONNX nodes to `b` (`name` names them; `input` is its input's shape).
    fn onnx(&self, b: &mut Builder, name: &str, params: &LayerParams, input: ActShape);
}

/// One layer of an [`ArchSpec`](super::spec::ArchSpec): the registry of layer kinds, serialized
/// with its kind as a `kind` field beside the kind's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LayerSpec {
    /// 2-D convolution, square kernel.
    Conv2d(Conv2d),
    /// 2-D max pooling, square window.
    MaxPool(MaxPool),
    /// Flattens `[channels, height, width]` to a vector in that (row-major) order.
    Flatten(Flatten),
    /// Fully connected layer.
    Dense(Dense),
    /// Rectified linear unit.
    Relu(Relu),
    /// Inverted dropout.
    Dropout(Dropout),
    /// Maxout over groups of the preceding conv or dense layer's outputs.
    Maxout(Maxout),
    /// 2-D average pooling, square window.
    AvgPool(AvgPool),
    /// The mean of every channel, as a vector.
    GlobalAvgPool(GlobalAvgPool),
    /// Batch normalisation of channels or features.
    BatchNorm(BatchNorm),
}

/// Runs `$body` with `$k` bound to the kind inside `$layer` (a `&LayerSpec` or `&mut LayerSpec`).
macro_rules! dispatch {
    ($layer:expr, $k:ident => $body:expr) => {
        match $layer {
            LayerSpec::Conv2d($k) => $body,
            LayerSpec::MaxPool($k) => $body,
            LayerSpec::Flatten($k) => $body,
            LayerSpec::Dense($k) => $body,
            LayerSpec::Relu($k) => $body,
            LayerSpec::Dropout($k) => $body,
            LayerSpec::Maxout($k) => $body,
            LayerSpec::AvgPool($k) => $body,
            LayerSpec::GlobalAvgPool($k) => $body,
            LayerSpec::BatchNorm($k) => $body,
        }
    };
}

impl Kind for LayerSpec {
    fn kind(&self) -> &'static str {
        dispatch!(self, k => k.kind())
    }
    fn name(&self) -> Option<&str> {
        dispatch!(self, k => k.name())
    }
    fn role(&self) -> Role {
        dispatch!(self, k => k.role())
    }
    fn infer(&self, input: ActShape) -> Result<Inferred, String> {
        dispatch!(self, k => k.infer(input))
    }
    fn params(&self, input: ActShape) -> Vec<ParamDecl> {
        dispatch!(self, k => k.params(input))
    }
    fn outputs(&self) -> Option<usize> {
        dispatch!(self, k => k.outputs())
    }
    fn set_outputs(&mut self, outputs: usize) {
        dispatch!(self, k => k.set_outputs(outputs))
    }
    fn forward(&self, params: &LayerParams, act: Act, ctx: &mut Forward<'_>) -> Act {
        dispatch!(self, k => k.forward(params, act, ctx))
    }
    fn onnx(&self, b: &mut Builder, name: &str, params: &LayerParams, input: ActShape) {
        dispatch!(self, k => k.onnx(b, name, params, input))
    }
}

impl LayerSpec {
    /// A convolution of `filters` square `kernel`s.
    pub fn conv2d(name: &str, filters: usize, kernel: usize, stride: usize, padding: usize) -> LayerSpec {
        LayerSpec::Conv2d(Conv2d {
            name: name.into(),
            filters,
            kernel,
            stride,
            padding,
        })
    }

    /// A dense layer of `outputs` outputs.
    pub fn dense(name: &str, outputs: usize) -> LayerSpec {
        LayerSpec::Dense(Dense {
            name: name.into(),
            outputs,
        })
    }

    /// Max pooling over `kernel` x `kernel` windows every `stride` pixels.
    pub fn max_pool(kernel: usize, stride: usize) -> LayerSpec {
        LayerSpec::MaxPool(MaxPool { kernel, stride })
    }

    /// Average pooling over `kernel` x `kernel` windows every `stride` pixels, `padding` zeros
    /// counted.
    pub fn avg_pool(kernel: usize, stride: usize, padding: usize) -> LayerSpec {
        LayerSpec::AvgPool(AvgPool {
            kernel,
            stride,
            padding,
        })
    }

    /// Global average pooling.
    pub fn global_avg_pool() -> LayerSpec {
        LayerSpec::GlobalAvgPool(GlobalAvgPool {})
    }

    /// Batch normalisation with PyTorch's defaults (eps 1e-5, momentum 0.1).
    pub fn batch_norm(name: &str) -> LayerSpec {
        LayerSpec::BatchNorm(BatchNorm::new(name))
    }

    /// A flatten layer.
    pub fn flatten() -> LayerSpec {
        LayerSpec::Flatten(Flatten {})
    }

    /// A relu.
    pub fn relu() -> LayerSpec {
        LayerSpec::Relu(Relu {})
    }

    /// Dropout with drop probability `p`.
    pub fn dropout(p: f32) -> LayerSpec {
        LayerSpec::Dropout(Dropout { p })
    }

    /// A maxout layer with `pieces`.
    pub fn maxout(pieces: Pieces) -> LayerSpec {
        LayerSpec::Maxout(Maxout { pieces })
    }

    /// The pieces of a maxout layer; `None` for other kinds.
    pub fn pieces(&self) -> Option<&Pieces> {
        match self {
            LayerSpec::Maxout(m) => Some(&m.pieces),
            _ => None,
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} '{n}'", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// Checks kernel, stride and padding against [`MAX_SIDE`].
pub(crate) fn check_sides(sides: &[(&str, usize)]) -> Result<(), String> {
    match sides.iter().find(|(_, v)| *v > MAX_SIDE) {
        Some((field, v)) => Err(format!("{field}: {v} exceeds the limit of {MAX_SIDE}")),
        None => Ok(()),
    }
}

/// The product of `dims` (the elements of a tensor), checked against [`MAX_TENSOR_ELEMENTS`]
/// without overflow.
pub(crate) fn check_elements(what: &str, dims: &[usize]) -> Result<usize, String> {
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS);
    n.ok_or_else(|| {
        let shape: Vec<String> = dims.iter().map(usize::to_string).collect();
        format!(
            "{what} of shape [{}] exceeds the limit of {MAX_TENSOR_ELEMENTS} elements",
            shape.join(", ")
        )
    })
}

/// 2 x the product of `factors` (multiply-accumulates), saturating: FLOPs are reported, never
/// allocated.
pub(crate) fn flops(factors: &[usize]) -> usize {
    factors.iter().fold(2usize, |a, &f| a.saturating_mul(f))
}

/// The output side of a window of `kernel` every `stride` over `size` padded by `padding`.
pub(crate) fn out_size(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding).checked_sub(kernel).map_or(0, |d| d / stride + 1)
}

/// The feature maps of `input`, or the error a layer that needs them gives.
pub(crate) fn maps(input: ActShape) -> Result<[usize; 3], String> {
    match input {
        ActShape::Map(m) => Ok(m),
        ActShape::Flat(_) => Err(format!("expected feature maps as input, found a vector of {input}")),
    }
}

/// The positive output sides of a window over `[h, w]`, or the error.
pub(crate) fn window_out(
    input: ActShape,
    [h, w]: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<(usize, usize), String> {
    let (ho, wo) = (
        out_size(h, kernel, stride, padding),
        out_size(w, kernel, stride, padding),
    );
    if ho == 0 || wo == 0 {
        return Err(format!("output size {ho}x{wo} from input {input}: expected positive"));
    }
    Ok((ho, wo))
}

fn one() -> usize {
    1
}
