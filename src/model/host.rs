//! Host-memory access to flex tensors, shared by the operations with their own kernels
//! ([`conv`](super::conv), [`pool`](super::pool)).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor, TensorData};

/// `t`'s f32 values in row-major order, borrowed when `t` is contiguous.
pub(crate) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

/// A flex tensor of `shape` holding `values` in row-major order.
pub(crate) fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The dimensions of a 4-d tensor.
pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
    let dims = t.layout().shape().to_vec();
    dims.try_into().expect("a 4-d tensor")
}

/// Where the inputs of an operation with its own kernels live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// All f32 on the flex device, outside autodiff.
    Flex,
    /// All f32 on flex, at least one on its autodiff device (tracked or not): the others are
    /// constants of the operation, lifted with [`lifted`].
    AutodiffFlex,
    /// Anywhere else: the operation falls back to burn's.
    Other,
}

/// Where `tensors` live (see [`Placement`]). Device equality ignores autodiff, so it is asked
/// separately.
pub(crate) fn placement(tensors: &[(Device, DType)]) -> Placement {
    let flex = tensors.iter().all(|(d, t)| *d == Device::flex() && *t == DType::F32);
    match (flex, tensors.iter().filter(|(d, _)| d.is_autodiff()).count()) {
        (true, 0) => Placement::Flex,
        (true, _) => Placement::AutodiffFlex,
        _ => Placement::Other,
    }
}

/// `t` on the autodiff view of its device (a constant there unless it already was tracked).
pub(crate) fn lifted<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
    if t.is_autodiff() {
        t.clone()
    } else {
        t.clone().autodiff()
    }
}

/// A buffer a forward pass keeps for its backward pass; `Debug` shows its length, not its values.
#[derive(Clone)]
pub(crate) struct Kept<T>(pub(crate) Arc<Vec<T>>);

impl<T> fmt::Debug for Kept<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} values]", self.0.len())
    }
}
