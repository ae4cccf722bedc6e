//! The memory one batch needs, bounded before anything is allocated: a spec within every
//! per-example limit can still need more than any machine has once multiplied by a batch.

use crate::error::{Error, Result};
use crate::model::spec::{ActShape, ArchSpec, LayerSpec};

/// Most `f32` values one buffer of a batch may hold (16 GiB): a layer's output, or in training
/// a convolution's patch matrix (im2col), which is kept for every image of the batch.
pub const MAX_BATCH_VALUES: u128 = 1 << 32;

/// Checks that every buffer a pass of `batch` examples through `spec` allocates stays within
/// [`MAX_BATCH_VALUES`]; `training` adds the convolutions' patch matrices, kept for the
/// backward pass (an evaluation builds them one image at a time). The error names the layer,
/// the bytes needed and the limit.
pub fn check_batch(spec: &ArchSpec, batch: usize, training: bool) -> Result<()> {
    for info in spec.validate()? {
        let mut buffers = vec![("output", info.output.numel() as u128)];
        if let (true, LayerSpec::Conv2d(conv), ActShape::Map([channels, _, _]), ActShape::Map([_, h, w])) =
            (training, &spec.layers[info.index], info.input, info.output)
        {
            let rows = channels as u128 * (conv.kernel as u128).pow(2);
            buffers.push(("patch matrix (im2col)", rows * h as u128 * w as u128));
        }
        for (what, per_example) in buffers {
            let values = per_example * batch as u128;
            if values > MAX_BATCH_VALUES {
                let name = info.name.as_deref().map_or_else(String::new, |n| format!(" ('{n}')"));
                return Err(Error::invalid(
                    "batch",
                    format!(
                        "layer {}{name} ({}): its {what} for a batch of {batch} takes {} bytes, over the limit of {} \
                         bytes per buffer; expected a smaller batch size, input or layer",
                        info.index,
                        info.kind,
                        values * 4,
                        MAX_BATCH_VALUES * 4
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// [`check_batch`] for training with batches of `train_batch` examples, evaluated in batches
/// of `eval_batch`.
pub fn check_training(spec: &ArchSpec, train_batch: usize, eval_batch: usize) -> Result<()> {
    check_batch(spec, train_batch, true)?;
    check_batch(spec, eval_batch, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conv of 4 filters (kernel 5, padding `padding`) on 28x28, pooled, into 10 outputs.
    fn spec(padding: usize) -> ArchSpec {
        let json = serde_json::json!({
            "format_version": 1,
            "name": "wide",
            "input": {"channels": 1, "height": 28, "width": 28},
            "layers": [
                {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 5, "padding": padding},
                {"kind": "max-pool", "kernel": 2, "stride": 2},
                {"kind": "flatten"},
                {"kind": "dense", "name": "fc1", "outputs": 10}
            ]
        });
        ArchSpec::from_json(&json.to_string(), "wide.json").unwrap()
    }

    #[test]
    fn a_batch_over_the_limit_is_refused_naming_the_layer() {
        check_batch(&spec(0), 64, true).unwrap();
        // Output [4, 6024, 6024] per example (fits alone), 64 of them do not.
        let wide = spec(3000);
        let e = check_batch(&wide, 64, true).unwrap_err().to_string();
        assert!(
            e.contains("layer 0 ('conv1') (conv2d): its output for a batch of 64 takes 37159501824 bytes")
                && e.contains("over the limit of 17179869184 bytes"),
            "{e}"
        );
        // The patch matrix, [25, 6024 * 6024] per image, counts in training only.
        check_batch(&wide, 5, false).unwrap();
        let e = check_batch(&wide, 5, true).unwrap_err().to_string();
        assert!(e.contains("patch matrix (im2col) for a batch of 5"), "{e}");
    }
}
