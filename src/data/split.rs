//! One split of a dataset (grayscale or colour images and labels) and its batching into tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::idx::IdxImages;
use super::transform::Normalization;
use crate::error::{Error, Result};
use crate::model::spec::InputShape;

/// One split: grayscale (1 channel) or RGB (3 channels) images with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Channels per image: 1 (gray) or 3 (red, green, blue).
    pub channels: usize,
    /// Image rows.
    pub rows: usize,
    /// Image columns.
    pub cols: usize,
    /// `len * channels * rows * cols` pixel bytes: one image after the other, each channel-major
    /// (`[channels, rows, cols]`, every plane row-major).
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
        let n = self.channels * self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// A new split holding the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Split {
        Split {
            channels: self.channels,
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
            channels: 1,
            rows: images.rows,
            cols: images.cols,
            pixels: images.pixels,
            labels,
        })
    }
}

/// The gray value of an RGB pixel: the sRGB luma `(2126 r + 7152 g + 722 b) / 10000`, rounded
/// down, exactly as the `image` crate's `to_luma8` (so a gray pixel keeps its value).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    let l = 2126 * u32::from(r) + 7152 * u32::from(g) + 722 * u32::from(b);
    (l / 10_000) as u8
}

/// One batch as tensors: pixels as `norm` turns them into values (by default scaled to
/// `[0, 1]`), and labels. The images are centred in the
/// network's `input` (zero padding where it is larger, a centre crop where it is smaller). When
/// the image and the input have the same number of channels they are copied channel by channel;
/// otherwise every input channel gets the image's gray (a gray image's one channel, an RGB
/// image's [`luma`]), so a 28x28 gray dataset feeds a 3x32x32 network and an RGB dataset a
/// 1-channel one.
///
/// # Shapes
/// - returns `([batch, input.channels, input.height, input.width], [batch])`
pub fn batch(
    split: &Split,
    indices: &[usize],
    input: &InputShape,
    norm: &Normalization,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let b = indices.len();
    let (c, h, w) = (input.channels, input.height, input.width);
    let table = norm.table(c);
    let scale = |ch: usize, p: u8| table[ch][usize::from(p)];
    let pixels = if (c, h, w) == (split.channels, split.rows, split.cols) {
        let plane = h * w;
        indices
            .iter()
            .flat_map(|&i| split.image(i).iter().enumerate().map(|(at, &p)| scale(at / plane, p)))
            .collect()
    } else {
        let plane = split.rows * split.cols;
        // The value input channel `ch` takes from the image at plane offset `at`.
        let value = |image: &[u8], ch: usize, at: usize| match split.channels {
            n if n == c => image[ch * plane + at],
            3 => luma(image[at], image[plane + at], image[2 * plane + at]),
            _ => image[at],
        };
        // Where input row/column y lands in the image (None: padding).
        let source = |y: usize, size: usize, image: usize| (y + image / 2).checked_sub(size / 2).filter(|&s| s < image);
        let mut pixels = vec![0.0f32; b * c * h * w];
        for (n, &i) in indices.iter().enumerate() {
            let image = split.image(i);
            for y in 0..h {
                let Some(sy) = source(y, h, split.rows) else { continue };
                for x in 0..w {
                    let Some(sx) = source(x, w, split.cols) else { continue };
                    for ch in 0..c {
                        pixels[((n * c + ch) * h + y) * w + x] = scale(ch, value(image, ch, sy * split.cols + sx));
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

/// Checks that [`batch`] feeds `split`'s images to a network reading `input` unchanged in size:
/// the same rows and columns (no padding or cropping), and channels it converts without loss of
/// meaning: the same number, gray images (repeated into every input channel) or a gray network
/// (RGB images as their [`luma`]). The error is the dataset `data`'s and names both shapes.
pub fn check_fits(split: &Split, input: &InputShape, data: &str) -> Result<()> {
    let (c, h, w) = (input.channels, input.height, input.width);
    let channels = split.channels == c || split.channels == 1 || c == 1;
    if channels && (split.rows, split.cols) == (h, w) {
        return Ok(());
    }
    Err(Error::Format {
        path: data.into(),
        what: "images".into(),
        expected: format!(
            "the network's input shape {c}x{h}x{w} (channels x rows x columns; images are not \
             resized, and only gray images feed {c} channels)"
        ),
        found: format!("{}x{}x{}", split.channels, split.rows, split.cols),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_centre_images_in_larger_or_smaller_inputs() {
        let split = Split {
            channels: 1,
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
        let none = Normalization::default();
        let (x, y) = batch(&split, &[0], &shape(1, 4), &none, &d);
        assert_eq!(values(x), [0, 0, 0, 0, 0, 51, 102, 0, 0, 153, 204, 0, 0, 0, 0, 0]);
        assert_eq!(y.into_data().iter::<i64>().collect::<Vec<_>>(), [3]);
        assert_eq!(values(batch(&split, &[0], &shape(3, 1), &none, &d).0), [204, 204, 204]);
        assert_eq!(
            values(batch(&split, &[0], &shape(1, 2), &none, &d).0),
            [51, 102, 153, 204]
        );
    }

    #[test]
    fn colour_images_feed_colour_and_gray_inputs() {
        // One 1x2 RGB image: a pure red and a gray pixel.
        let split = Split {
            channels: 3,
            rows: 1,
            cols: 2,
            pixels: vec![255, 90, 0, 90, 0, 90],
            labels: vec![0],
        };
        let d = Device::flex();
        let values = |c, w| {
            let input = InputShape {
                channels: c,
                height: 1,
                width: w,
            };
            let x = batch(&split, &[0], &input, &Normalization::default(), &d).0;
            x.into_data()
                .iter::<f32>()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<_>>()
        };
        assert_eq!(values(3, 2), [255, 90, 0, 90, 0, 90]);
        assert_eq!(values(3, 4), [0, 255, 90, 0, 0, 0, 90, 0, 0, 0, 90, 0]);
        assert_eq!(values(1, 2), [54, 90]);
        assert_eq!(values(2, 2), [54, 90, 54, 90]);
        // The same gray as the `image` crate's conversion, for every gray and a few colours.
        for (r, g, b) in (0..=255)
            .map(|v| (v, v, v))
            .chain([(255, 0, 0), (1, 114, 255), (3, 139, 0)])
        {
            let rgb = image::RgbImage::from_raw(1, 1, vec![r, g, b]).unwrap();
            let gray = image::DynamicImage::ImageRgb8(rgb).to_luma8();
            assert_eq!(luma(r, g, b), gray.as_raw()[0], "{r} {g} {b}");
        }
    }

    #[test]
    fn images_fit_a_network_of_their_size_in_any_channels_batch_converts() {
        let split = |channels| Split {
            channels,
            rows: 28,
            cols: 28,
            pixels: vec![],
            labels: vec![],
        };
        let input = |channels, height, width| InputShape {
            channels,
            height,
            width,
        };
        for (images, net) in [(1, 1), (1, 3), (1, 4), (3, 3), (3, 1)] {
            check_fits(&split(images), &input(net, 28, 28), "d").unwrap();
        }
        for (images, net, found) in [
            (3, input(2, 28, 28), "3x28x28"),
            (1, input(1, 32, 32), "1x28x28"),
            (1, input(1, 28, 27), "1x28x28"),
        ] {
            let e = check_fits(&split(images), &net, "d").unwrap_err().to_string();
            let want = format!("{}x{}x{}", net.channels, net.height, net.width);
            assert!(
                e.starts_with("d: images: expected the network's input shape ") && e.contains(&want),
                "{e}"
            );
            assert!(e.ends_with(&format!("found {found}")), "{e}");
        }
    }
}
