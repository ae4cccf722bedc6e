//! A layer's tensors, whatever its kind: each named by its role (`weight`, `bias`), with the
//! axes that hold the layer's outputs and inputs, so pruning slices every tensor of a layer
//! the same way without knowing the kind.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::layers::{Fill, ParamDecl};
use super::spec::Init;
use crate::rng::SplitMix64;

/// A parameter tensor of rank 1, 2 or 4.
#[derive(Debug, Clone)]
pub enum ParamTensor {
    /// A vector (biases).
    R1(Tensor<1>),
    /// A matrix (dense weights).
    R2(Tensor<2>),
    /// A 4-D tensor (conv filters).
    R4(Tensor<4>),
}

/// Runs `$body` with `$t` bound to the tensor inside `$p`, rebuilding the same rank with `$wrap`.
macro_rules! each_rank {
    ($p:expr, $t:ident => $body:expr) => {
        match $p {
            ParamTensor::R1($t) => ParamTensor::R1($body),
            ParamTensor::R2($t) => ParamTensor::R2($body),
            ParamTensor::R4($t) => ParamTensor::R4($body),
        }
    };
}

/// Runs `$body` with `$t` bound to the tensor inside `$p`, returning `$body`'s value.
macro_rules! on_rank {
    ($p:expr, $t:ident => $body:expr) => {
        match $p {
            ParamTensor::R1($t) => $body,
            ParamTensor::R2($t) => $body,
            ParamTensor::R4($t) => $body,
        }
    };
}

impl ParamTensor {
    /// A tensor of `shape` (rank 1, 2 or 4) holding `values`, row-major.
    ///
    /// # Panics
    /// On another rank or a length that is not the shape's product (internal invariants:
    /// layer kinds declare ranks 1, 2 and 4, and callers check lengths).
    pub fn from_values(values: Vec<f32>, shape: &[usize], device: &Device) -> ParamTensor {
        match *shape {
            [a] => ParamTensor::R1(Tensor::from_data(TensorData::new(values, [a]), device)),
            [a, b] => ParamTensor::R2(Tensor::from_data(TensorData::new(values, [a, b]), device)),
            [a, b, c, d] => ParamTensor::R4(Tensor::from_data(TensorData::new(values, [a, b, c, d]), device)),
            _ => panic!("parameter tensors have rank 1, 2 or 4, found shape {shape:?}"),
        }
    }

    /// Its shape.
    pub fn dims(&self) -> Vec<usize> {
        on_rank!(self, t => t.dims().to_vec())
    }

    /// Its values (a copy).
    pub fn to_data(&self) -> TensorData {
        on_rank!(self, t => t.to_data())
    }

    /// The entries `index` along `axis`.
    pub fn select(&self, axis: usize, index: Tensor<1, Int>) -> ParamTensor {
        each_rank!(self, t => t.clone().select(axis, index))
    }

    /// Flattened, in row-major order.
    pub fn flat(&self) -> Tensor<1> {
        on_rank!(self, t => {
            let n = t.dims().iter().product::<usize>();
            t.clone().reshape([n])
        })
    }

    /// `flat` laid out in this tensor's shape (it must have as many values).
    pub fn shaped(&self, flat: Tensor<1>) -> ParamTensor {
        each_rank!(self, t => flat.reshape(t.dims()))
    }

    /// As a matrix with one row per entry of `axis`: `[dims[axis], rest]`.
    pub fn rows(&self, axis: usize) -> Tensor<2> {
        on_rank!(self, t => {
            let n = t.dims()[axis];
            let t = if axis == 0 { t.clone() } else { t.clone().swap_dims(0, axis) };
            t.reshape([n as i64, -1])
        })
    }
}

/// One parameter tensor of a layer.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its role, the tensor name's suffix (`weight` in `fc1.weight`).
    pub role: &'static str,
    /// Its value.
    pub value: ParamTensor,
    /// The axis indexed by the layer's outputs, if any.
    pub out_axis: Option<usize>,
    /// The axis indexed by the layer's inputs, if any.
    pub in_axis: Option<usize>,
    /// Its weight-pruning mask (0 removed, 1 kept), of its shape: held through training and
    /// sliced with it.
    pub mask: Option<ParamTensor>,
    /// A parameter (trained by gradient) or a buffer (running statistics: see
    /// [`ParamDecl::trainable`]).
    pub trainable: bool,
}

impl Param {
    /// The tensor `decl` declares, holding `values` (row-major, as many as its shape has), with
    /// no mask.
    pub fn declared(decl: &ParamDecl, values: Vec<f32>, device: &Device) -> Param {
        Param {
            role: decl.role,
            value: ParamTensor::from_values(values, &decl.shape, device),
            out_axis: decl.out_axis,
            in_axis: decl.in_axis,
            mask: None,
            trainable: decl.trainable,
        }
    }
}

/// 0/1 masks of pruned weights, flattened, keyed by parameter name (`fc1.weight`).
pub type Masks = std::collections::BTreeMap<String, Tensor<1>>;

/// The parameters of one layer, in the order its kind declares them (empty for layers without).
#[derive(Debug, Clone, Default)]
pub struct LayerParams {
    /// The tensors.
    pub params: Vec<Param>,
}

fn index(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [indices.len()]), device)
}

impl LayerParams {
    /// Fresh tensors for `decls`: uniform weights by `init`, drawn from `rng` in order, zeros.
    pub fn init(decls: Vec<ParamDecl>, init: Init, rng: &mut SplitMix64, device: &Device) -> LayerParams {
        let params = decls
            .into_iter()
            .map(|d| {
                let n: usize = d.shape.iter().product();
                let values = match d.fill {
                    Fill::Uniform => {
                        let a = init.bound(d.shape[1..].iter().product());
                        (0..n).map(|_| (2.0 * rng.next_f32() - 1.0) * a).collect()
                    }
                    Fill::Zeros => vec![0.0; n],
                    Fill::Ones => vec![1.0; n],
                };
                Param::declared(&d, values, device)
            })
            .collect();
        LayerParams { params }
    }

    /// Whether the layer has no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The tensor with role `role`.
    pub fn get(&self, role: &str) -> Option<&ParamTensor> {
        self.params.iter().find(|p| p.role == role).map(|p| &p.value)
    }

    /// `(role, shape)` of every tensor.
    pub fn shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        self.params.iter().map(|p| (p.role, p.value.dims())).collect()
    }

    /// The vector with role `role`.
    ///
    /// # Panics
    /// When the layer has none (an internal invariant: networks are built from validated specs).
    pub fn t1(&self, role: &str) -> Tensor<1> {
        match self.get(role) {
            Some(ParamTensor::R1(t)) => t.clone(),
            other => panic!("expected a vector '{role}', found {other:?}"),
        }
    }

    /// The matrix with role `role` (panics as [`t1`](Self::t1)).
    pub fn t2(&self, role: &str) -> Tensor<2> {
        match self.get(role) {
            Some(ParamTensor::R2(t)) => t.clone(),
            other => panic!("expected a matrix '{role}', found {other:?}"),
        }
    }

    /// The 4-D tensor with role `role` (panics as [`t1`](Self::t1)).
    pub fn t4(&self, role: &str) -> Tensor<4> {
        match self.get(role) {
            Some(ParamTensor::R4(t)) => t.clone(),
            other => panic!("expected a 4-D tensor '{role}', found {other:?}"),
        }
    }

    fn keep(&self, rows: &[usize], axis: fn(&Param) -> Option<usize>) -> LayerParams {
        let params = self
            .params
            .iter()
            .map(|p| match axis(p) {
                Some(a) => {
                    let device = on_rank!(&p.value, t => t.device());
                    let index = index(rows, &device);
                    Param {
                        value: p.value.select(a, index.clone()),
                        mask: p
                            .mask
                            .as_ref()
                            .map(|m| m.select(a, index.to_device(&on_rank!(m, t => t.device())))),
                        ..p.clone()
                    }
                }
                None => p.clone(),
            })
            .collect();
        LayerParams { params }
    }

    /// Keeps the outputs `rows` (dense rows, conv filters) of every tensor that has them, and
    /// of its mask.
    pub fn keep_outputs(&self, rows: &[usize]) -> LayerParams {
        self.keep(rows, |p| p.out_axis)
    }

    /// Keeps the inputs `cols` (dense input features, conv input channels) of every tensor
    /// that has them, and of its mask.
    pub fn keep_inputs(&self, cols: &[usize]) -> LayerParams {
        self.keep(cols, |p| p.in_axis)
    }

    /// The weight as `[outputs, fan-in]` (a conv filter flattened) and the bias; `None`
    /// for a layer without both.
    pub fn output_rows(&self) -> Option<(Tensor<2>, Tensor<1>)> {
        let weight = self.params.iter().find(|p| p.role == "weight")?;
        Some((weight.value.rows(weight.out_axis?), self.t1("bias")))
    }

    /// The weight as `[inputs, outputs x kernel]`: one row per input feature (dense) or input
    /// channel (conv); `None` for a layer without a weight that reads inputs.
    pub fn input_rows(&self) -> Option<Tensor<2>> {
        let weight = self.params.iter().find(|p| p.role == "weight")?;
        Some(weight.value.rows(weight.in_axis?))
    }

    /// Every tensor through `f`, which must keep its rank and shape (masks stay as they are).
    pub fn map(self, mut f: impl FnMut(&'static str, ParamTensor) -> ParamTensor) -> LayerParams {
        let params = self
            .params
            .into_iter()
            .map(|p| Param {
                value: f(p.role, p.value),
                ..p
            })
            .collect();
        LayerParams { params }
    }

    /// Replaces the tensor with role `role` by `value` (same shape), keeping its mask.
    pub fn set(&mut self, role: &str, value: ParamTensor) {
        if let Some(p) = self.params.iter_mut().find(|p| p.role == role) {
            p.value = value;
        }
    }
}

/// Visits every parameter tensor, in spec order (`<layer>.weight` before `<layer>.bias`).
pub trait ParamVisitor {
    /// Called once per parameter.
    fn visit<const D: usize>(&mut self, name: &str, tensor: &Tensor<D>);
}

/// Replaces every parameter tensor, in spec order.
pub trait ParamMapper {
    /// Returns the replacement for `tensor`, which must keep its shape.
    fn map<const D: usize>(&mut self, name: &str, tensor: Tensor<D>) -> Tensor<D>;
}

impl ParamTensor {
    /// Every entry of index `i` along the first axis times `scale[i]`.
    pub fn scale_rows(self, scale: Tensor<1>) -> ParamTensor {
        each_rank!(self, t => {
            let mut dims = t.dims().map(|_| 1usize);
            dims[0] = scale.dims()[0];
            t * scale.clone().reshape(dims)
        })
    }

    /// The vector inside.
    ///
    /// # Panics
    /// When it is not a vector (an internal invariant: callers know the role's rank).
    pub fn into_r1(self) -> Tensor<1> {
        match self {
            ParamTensor::R1(t) => t,
            other => panic!("expected a vector, found shape {:?}", other.dims()),
        }
    }

    /// With autodiff enabled, requiring gradients when `require_grad`.
    pub fn autodiff(self, require_grad: bool) -> ParamTensor {
        each_rank!(self, t => {
            let t = t.autodiff();
            if require_grad { t.require_grad() } else { t }
        })
    }

    /// Calls `visitor` with this tensor as `name`.
    pub fn visit(&self, name: &str, visitor: &mut impl ParamVisitor) {
        on_rank!(self, t => visitor.visit(name, t))
    }

    /// The tensor `mapper` returns for it as `name`.
    pub fn map_with(self, name: &str, mapper: &mut impl ParamMapper) -> ParamTensor {
        each_rank!(self, t => mapper.map(name, t))
    }
}
