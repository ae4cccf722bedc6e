//! Weights that are finite can still overflow f32 arithmetic (3e38 + 3e38 is infinite). The
//! passes that read data check their first batch, so such weights are refused naming the layer
//! whose output overflows, rather than turned into infinite scores and NaN losses.

use burn::tensor::Tensor;

use super::network::{Network, non_finite};
use crate::error::{Error, Result};

/// Checks that `logits`, `net`'s class scores of the batch `x`, are finite; where they are
/// not, names the first layer whose output is not.
///
/// # Shapes
/// - `x`: `[batch, channels, height, width]`
/// - `logits`: `[batch, classes]`
pub fn check_forward(net: &Network, x: Tensor<4>, logits: Tensor<2>) -> Result<()> {
    let bad = |t: Tensor<2>| non_finite(&t.into_data().iter::<f32>().collect::<Vec<_>>());
    let Some(found) = bad(logits) else {
        return Ok(());
    };
    let layers = net.spec().layers.len();
    // Only on failure: each depth is run from the input again.
    let (at, found) = (1..=layers)
        .find_map(|depth| bad(net.features(x.clone(), depth)).map(|f| (depth - 1, f)))
        .unwrap_or((layers - 1, found));
    Err(Error::invalid(
        "network",
        format!(
            "layer {at} ({}): expected a finite output on the first batch, found {found} (weights \
             that are finite but too large for f32 arithmetic)",
            net.spec().layers[at]
        ),
    ))
}
