//! One split of a dataset (grayscale images and labels) and its batching into tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::idx::IdxImages;
use crate::error::{Error, Result};
use crate::model::spec::InputShape;

/// One split: grayscale images with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Image rows.
    pub rows: usize,
    /// Image columns.
    pub cols: usize,
    /// `len * rows * cols` pixel bytes, row-major, one image after the other.
    pub pixels: Vec<u8>,
    /// One class per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of example `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// A new split holding the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Split {
        Split {
            rows: self.rows,
            cols: self.cols,
            pixels: indices.iter().flat_map(|&i| self.image(i)).copied().collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// A split from decoded IDX images and their labels; `name` names the source in errors.
    pub(crate) fn from_idx(images: IdxImages, labels: Vec<u8>, name: &str) -> Result<Split> {
        if images.count() != labels.len() {
            return Err(Error::Format {
                path: name.to_string(),
                what: "example count".into(),
                expected: format!("as many labels as images ({})", images.count()),
                found: format!("{} labels", labels.len()),
            });
        }
        Ok(Split {
            rows: images.rows,
            cols: images.cols,
            pixels: images.pixels,
            labels,
        })
    }
}

/// One batch as tensors: pixels scaled to `[0, 1]`, and labels. The grayscale images are
/// centred in the network's `input` (zero padding where it is larger, a centre crop where it is
/// smaller) and repeated over its channels, so a 28x28 dataset feeds a 3x32x32 network.
///
/// # Shapes
/// - returns `([batch, input.channels, input.height, input.width], [batch])`
pub fn batch(split: &Split, indices: &[usize], input: &InputShape, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let b = indices.len();
    let (c, h, w) = (input.channels, input.height, input.width);
    let scale = |p: &u8| f32::from(*p) / 255.0;
    let pixels = if (c, h, w) == (1, split.rows, split.cols) {
        indices.iter().flat_map(|&i| split.image(i).iter().map(scale)).collect()
    } else {
        // Where input row/column y lands in the image (None: padding).
        let source = |y: usize, size: usize, image: usize| (y + image / 2).checked_sub(size / 2).filter(|&s| s < image);
        let mut pixels = vec![0.0f32; b * c * h * w];
        for (n, &i) in indices.iter().enumerate() {
            let image = split.image(i);
            for y in 0..h {
                let Some(sy) = source(y, h, split.rows) else { continue };
                for x in 0..w {
                    let Some(sx) = source(x, w, split.cols) else { continue };
                    let v = scale(&image[sy * split.cols + sx]);
                    for ch in 0..c {
                        pixels[((n * c + ch) * h + y) * w + x] = v;
                    }
                }
            }
        }
        pixels
    };
    let labels: Vec<i64> = indices.iter().map(|&i| i64::from(split.labels[i])).collect();
    (
        Tensor::from_data(TensorData::new(pixels, [b, c, h, w]), device),
        Tensor::from_data(TensorData::new(labels, [b]), device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_centre_images_in_larger_or_smaller_inputs() {
        let split = Split {
            rows: 2,
            cols: 2,
            pixels: vec![51, 102, 153, 204],
            labels: vec![3],
        };
        let d = Device::flex();
        let shape = |channels, size| InputShape {
            channels,
            height: size,
            width: size,
        };
        let values = |x: Tensor<4>| {
            x.into_data()
                .iter::<f32>()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<_>>()
        };
        let (x, y) = batch(&split, &[0], &shape(1, 4), &d);
        assert_eq!(values(x), [0, 0, 0, 0, 0, 51, 102, 0, 0, 153, 204, 0, 0, 0, 0, 0]);
        assert_eq!(y.into_data().iter::<i64>().collect::<Vec<_>>(), [3]);
        assert_eq!(values(batch(&split, &[0], &shape(3, 1), &d).0), [204, 204, 204]);
        assert_eq!(values(batch(&split, &[0], &shape(1, 2), &d).0), [51, 102, 153, 204]);
    }
}
