//! A 2-D convolution with its own forward and backward pass for the flex backend (f32).
//!
//! burn's flex convolution computes the forward pass well, but its backward pass is burn's
//! default: the weight gradient as another convolution over batch-swapped tensors and the input
//! gradient as a transposed convolution, each rebuilding what the forward pass already had. Here
//! the forward pass gathers each image's patches once (im2col) and multiplies them with the
//! weight matrix in one packed GEMM per image; the patches are kept for the backward pass, where
//! the weight gradient is one GEMM of the output gradient with them, the bias gradient a row sum,
//! and the input gradient the transposed weights times the output gradient, scattered back
//! (col2im), skipped when the input needs no gradient (the first layer).
//!
//! Work is split over images with rayon. Per-image results never depend on the split; the
//! weight and bias gradients are summed over fixed chunks of 8 images (`CHUNK`), in order, so a
//! model trained with the same seed is bit-identical whatever the thread count.
//!
//! On any other backend or dtype [`conv2d`] is burn's convolution.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::host::{Kept, Placement, dims4, lifted, placement, tensor as flex, values};

/// Images per task of the gradient sums; fixed so that their order, and so their rounding,
/// does not depend on the thread count.
const CHUNK: usize = 8;

/// The convolution of `x` with `weight` plus `bias`, square stride and zero padding on every side.
///
/// # Shapes
/// - x: `[batch, channels, height, width]`
/// - weight: `[filters, channels, kh, kw]`
/// - bias: `[filters]`
/// - returns `[batch, filters, (height + 2 padding - kh) / stride + 1, (width + 2 padding - kw) / stride + 1]`
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize, padding: usize) -> Tensor<4> {
    let place = placement(&[
        (x.device(), x.dtype()),
        (weight.device(), weight.dtype()),
        (bias.device(), bias.dtype()),
    ]);
    if place == Placement::Flex {
        let prims = (
            x.clone().try_into_primitive::<Flex>(),
            weight.clone().try_into_primitive::<Flex>(),
            bias.clone().try_into_primitive::<Flex>(),
        );
        if let (Ok(x), Ok(w), Ok(b)) = prims {
            let g = Geometry::new(&x, &w, stride, padding);
            return Tensor::from_primitive::<Flex>(forward(&g, &x, &w, &b, false).0);
        }
    }
    if place == Placement::AutodiffFlex {
        let prims = (
            lifted(&x).try_into_primitive::<Autodiff<Flex>>(),
            lifted(&weight).try_into_primitive::<Autodiff<Flex>>(),
            lifted(&bias).try_into_primitive::<Autodiff<Flex>>(),
        );
        if let (Ok(x), Ok(w), Ok(b)) = prims {
            return Tensor::from_primitive::<Autodiff<Flex>>(tracked(x, w, b, stride, padding));
        }
    }
    burn_conv2d(x, weight, bias, stride, padding)
}

/// burn's convolution with the arguments of [`conv2d`].
pub fn burn_conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize, padding: usize) -> Tensor<4> {
    let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
    burn::tensor::module::conv2d(x, weight, Some(bias), options)
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    filters: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn new(x: &FlexTensor, w: &FlexTensor, stride: usize, padding: usize) -> Geometry {
        let [batch, channels, height, width] = dims4(x);
        let [filters, wc, kh, kw] = dims4(w);
        assert_eq!(channels, wc, "conv2d: the input's channels match the weight's");
        assert!(
            stride > 0 && height + 2 * padding >= kh && width + 2 * padding >= kw,
            "conv2d: the validated spec keeps the kernel inside the padded input"
        );
        Geometry {
            batch,
            channels,
            height,
            width,
            filters,
            kh,
            kw,
            stride,
            padding,
            out_h: (height + 2 * padding - kh) / stride + 1,
            out_w: (width + 2 * padding - kw) / stride + 1,
        }
    }

    /// Rows of one image's patch matrix: `channels * kh * kw`.
    fn patch_rows(&self) -> usize {
        self.channels * self.kh * self.kw
    }

    /// Output positions of one image (the patch matrix's columns).
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn patches_len(&self) -> usize {
        self.patch_rows() * self.positions()
    }

    fn out_len(&self) -> usize {
        self.filters * self.positions()
    }

    /// For kernel offset `k` along an axis of `size` inputs and `outs` outputs: the first and
    /// one-past-last output whose input `o * stride + k - padding` lies inside `0..size`.
    fn valid(&self, k: usize, size: usize, outs: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = self.padding.saturating_sub(k).div_ceil(s);
        // o * s + k < size + padding  <=>  o < (size + padding - k) / s, rounded up
        let hi = (size + self.padding).saturating_sub(k).div_ceil(s).min(outs);
        (lo.min(hi), hi)
    }
}

/// One image's patch matrix, `[patch_rows, positions]`, row `(c * kh + ky) * kw + kx`; taps
/// outside the image are 0.
fn im2col(g: &Geometry, image: &[f32], cols: &mut [f32]) {
    let (n, ow) = (g.positions(), g.out_w);
    for c in 0..g.channels {
        let plane = &image[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ky in 0..g.kh {
            let (y0, y1) = g.valid(ky, g.height, g.out_h);
            for kx in 0..g.kw {
                let (x0, x1) = g.valid(kx, g.width, g.out_w);
                let row = &mut cols[((c * g.kh + ky) * g.kw + kx) * n..][..n];
                if y0 > 0 || y1 < g.out_h || x0 > 0 || x1 < ow {
                    row.fill(0.0);
                }
                for oy in y0..y1 {
                    let iy = oy * g.stride + ky - g.padding;
                    let src = &plane[iy * g.width..(iy + 1) * g.width];
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if g.stride == 1 {
                        let ix0 = x0 + kx - g.padding;
                        dst[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                    } else {
                        for ox in x0..x1 {
                            dst[ox] = src[ox * g.stride + kx - g.padding];
                        }
                    }
                }
            }
        }
    }
}

/// Adds one image's patch-matrix gradient back onto the taps it came from (the transpose of
/// [`im2col`]); `image` must start at 0.
fn col2im(g: &Geometry, cols: &[f32], image: &mut [f32]) {
    let (n, ow) = (g.positions(), g.out_w);
    for c in 0..g.channels {
        let plane = &mut image[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ky in 0..g.kh {
            let (y0, y1) = g.valid(ky, g.height, g.out_h);
            for kx in 0..g.kw {
                let (x0, x1) = g.valid(kx, g.width, g.out_w);
                let row = &cols[((c * g.kh + ky) * g.kw + kx) * n..][..n];
                for oy in y0..y1 {
                    let iy = oy * g.stride + ky - g.padding;
                    let dst = &mut plane[iy * g.width..(iy + 1) * g.width];
                    let src = &row[oy * ow..(oy + 1) * ow];
                    for ox in x0..x1 {
                        dst[ox * g.stride + kx - g.padding] += src[ox];
                    }
                }
            }
        }
    }
}

/// A `[rows, cols]` operand of [`gemm`]: its values, shape and strides.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    /// Step between rows.
    rs: usize,
    /// Step between columns.
    cs: usize,
}

impl<'a> Mat<'a> {
    /// `data` as a row-major `[rows, cols]` matrix.
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    fn transposed(self) -> Mat<'a> {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Whether every element the strides reach lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || self.data.len() > (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
    }
}

/// `dst = (accumulate ? dst : 0) + lhs * rhs`, `dst` row-major `[lhs.rows, rhs.cols]`; with
/// `parallel` the GEMM itself is split over threads.
fn gemm(dst: &mut [f32], accumulate: bool, lhs: Mat, rhs: Mat, parallel: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k && dst.len() >= m * n && lhs.fits() && rhs.fits(),
        "gemm: operands hold their shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertion above keeps every element the strides reach inside its slice, and
    // `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The forward pass: the output `[batch, filters, out_h, out_w]` and, when `keep`, every image's
/// patch matrix, `[batch, patch_rows, positions]`.
fn forward(
    g: &Geometry,
    x: &FlexTensor,
    w: &FlexTensor,
    b: &FlexTensor,
    keep: bool,
) -> (FlexTensor, Option<Kept<f32>>) {
    let (xv, wv, bv) = (values(x), values(w), values(b));
    let (n, kk) = (g.positions(), g.patch_rows());
    let mut out = vec![0.0f32; g.batch * g.out_len()];
    let mut cols = vec![0.0f32; if keep { g.batch * g.patches_len() } else { 0 }];
    let one_image = |image: &[f32], out: &mut [f32], cols: &mut [f32], parallel: bool| {
        im2col(g, image, cols);
        // Every output starts at its filter's bias; the GEMM adds the products.
        for (row, &bias) in out.chunks_exact_mut(n).zip(bv.iter()) {
            row.fill(bias);
        }
        gemm(out, true, Mat::new(&wv, g.filters, kk), Mat::new(cols, kk, n), parallel);
    };
    if g.batch == 1 {
        let mut scratch = Vec::new();
        let cols = if keep {
            &mut cols[..]
        } else {
            scratch_of(&mut scratch, g.patches_len())
        };
        one_image(&xv, &mut out, cols, true);
    } else if keep {
        (
            xv.par_chunks_exact(g.image_len()),
            out.par_chunks_exact_mut(g.out_len()),
            cols.par_chunks_exact_mut(g.patches_len()),
        )
            .into_par_iter()
            .for_each(|(image, out, cols)| one_image(image, out, cols, false));
    } else {
        xv.par_chunks_exact(g.image_len())
            .zip(out.par_chunks_exact_mut(g.out_len()))
            .for_each_init(Vec::new, |scratch, (image, out)| {
                one_image(image, out, scratch_of(scratch, g.patches_len()), false)
            });
    }
    let shape = vec![g.batch, g.filters, g.out_h, g.out_w];
    (flex(out, shape), keep.then(|| Kept(Arc::new(cols))))
}

fn scratch_of(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.resize(len, 0.0);
    &mut v[..]
}

/// What the backward pass needs from the forward pass.
#[derive(Clone, Debug)]
struct Saved {
    geometry: Geometry,
    /// Every image's patch matrix, `[batch, patch_rows, positions]`.
    patches: Kept<f32>,
    weight: FlexTensor,
}

/// The autodiff operation: parents are the input, the weight and the bias.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Saved {
            geometry: g,
            patches,
            weight,
        } = ops.state;
        let gv = values(&grad);
        if node_w.is_some() || node_b.is_some() {
            let (dw, db) = weight_and_bias_grads(&g, &gv, &patches.0);
            if let Some(node) = node_w {
                grads.register::<Flex>(node.id, flex(dw, vec![g.filters, g.channels, g.kh, g.kw]));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, flex(db, vec![g.filters]));
            }
        }
        if let Some(node) = node_x {
            let dx = input_grad(&g, &gv, &values(&weight));
            grads.register::<Flex>(node.id, flex(dx, vec![g.batch, g.channels, g.height, g.width]));
        }
    }
}

/// `dW[f, K] = sum over images of dout_b[f, N] * patches_b[N, K]^T` and `db[f]` the sums of
/// `dout`'s rows, each summed over chunks of [`CHUNK`] images in a fixed order.
fn weight_and_bias_grads(g: &Geometry, dout: &[f32], patches: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (n, kk) = (g.positions(), g.patch_rows());
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dout
        .par_chunks(CHUNK * g.out_len())
        .zip(patches.par_chunks(CHUNK * g.patches_len()))
        .map(|(dout, patches)| {
            let mut dw = vec![0.0f32; g.filters * kk];
            let mut db = vec![0.0f32; g.filters];
            for (i, (d, p)) in dout
                .chunks_exact(g.out_len())
                .zip(patches.chunks_exact(g.patches_len()))
                .enumerate()
            {
                gemm(
                    &mut dw,
                    i > 0,
                    Mat::new(d, g.filters, n),
                    Mat::new(p, kk, n).transposed(),
                    false,
                );
                for (sum, row) in db.iter_mut().zip(d.chunks_exact(n)) {
                    *sum += row.iter().sum::<f32>();
                }
            }
            (dw, db)
        })
        .collect();
    let mut parts = partials.into_iter();
    let (mut dw, mut db) = parts.next().expect("a batch holds at least one image");
    for (pw, pb) in parts {
        dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

/// `dx_b = col2im(W[f, K]^T * dout_b[f, N])` for every image.
fn input_grad(g: &Geometry, dout: &[f32], w: &[f32]) -> Vec<f32> {
    let (n, kk) = (g.positions(), g.patch_rows());
    let mut dx = vec![0.0f32; g.batch * g.image_len()];
    dx.par_chunks_exact_mut(g.image_len())
        .zip(dout.par_chunks_exact(g.out_len()))
        .for_each_init(Vec::new, |scratch, (dx, d)| {
            let dcols = scratch_of(scratch, g.patches_len());
            gemm(
                dcols,
                false,
                Mat::new(w, g.filters, kk).transposed(),
                Mat::new(d, g.filters, n),
                false,
            );
            col2im(g, dcols, dx);
        });
    dx
}

/// The convolution on the autodiff device, recording [`ConvBackward`] when any input is tracked.
fn tracked(
    x: FloatTensor<Autodiff<Flex>>,
    w: FloatTensor<Autodiff<Flex>>,
    b: FloatTensor<Autodiff<Flex>>,
    stride: usize,
    padding: usize,
) -> FloatTensor<Autodiff<Flex>> {
    let g = Geometry::new(x.primitive(), w.primitive(), stride, padding);
    let prep = ConvBackward
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => {
            let (out, patches) = forward(&g, x.primitive(), w.primitive(), b.primitive(), true);
            let saved = Saved {
                geometry: g,
                patches: patches.expect("kept when asked"),
                weight: w.primitive().clone(),
            };
            prep.finish(saved, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&g, x.primitive(), w.primitive(), b.primitive(), false).0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use burn::tensor::{Device, TensorData};
    use proptest::prelude::*;

    fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
        let mut rng = SplitMix64::new(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// Relative closeness: `|a - b| <= 1e-5 * max(1, max |b|)`, elementwise.
    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y} (scale {scale})");
        }
    }

    /// The output and the input, weight and bias gradients of `sum(conv(x) * r)`, by `conv`.
    fn run(
        conv: impl Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
        shapes: ([usize; 4], [usize; 4]),
        x_grad: bool,
    ) -> [Vec<f32>; 4] {
        let d = Device::flex().autodiff();
        let (xs, ws) = shapes;
        // An input without gradient lives off the graph, as a training batch does.
        let x = if x_grad {
            random(xs, 1, &d).require_grad()
        } else {
            random(xs, 1, &Device::flex())
        };
        let w = random(ws, 2, &d).require_grad();
        let b = random([ws[0]], 3, &d).require_grad();
        let out = conv(x.clone(), w.clone(), b.clone());
        let r = random(out.dims(), 4, &d);
        let grads = (out.clone() * r).sum().backward();
        let grad = |t: &Tensor<4>| t.grad(&grads).map(values).unwrap_or_default();
        [
            values(out),
            if x_grad { grad(&x) } else { Vec::new() },
            grad(&w),
            b.grad(&grads).map(values).expect("bias gradient"),
        ]
    }

    fn burn_conv(stride: usize, padding: usize) -> impl Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4> {
        move |x, w, b| burn_conv2d(x, w, b, stride, padding)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Forward and all three gradients equal burn's convolution and its autodiff gradients.
        #[test]
        fn equals_burns_convolution_and_its_gradients(
            batch in 1usize..4, channels in 1usize..4, filters in 1usize..5,
            size in 1usize..9, kernel in 1usize..6, stride in 1usize..4, padding in 0usize..3,
            x_grad: bool,
        ) {
            prop_assume!(size + 2 * padding >= kernel);
            let shapes = ([batch, channels, size, size + 1], [filters, channels, kernel, kernel]);
            let ours = run(|x, w, b| conv2d(x, w, b, stride, padding), shapes, x_grad);
            let reference = run(burn_conv(stride, padding), shapes, x_grad);
            for (what, (a, b)) in ["output", "input gradient", "weight gradient", "bias gradient"].iter().zip(ours.iter().zip(&reference)) {
                assert_close(what, a, b);
            }
            prop_assert_eq!(ours[1].is_empty(), !x_grad);
        }
    }

    #[test]
    fn lenet_shapes_and_a_kernel_the_size_of_its_input() {
        for (shapes, stride, padding) in [
            (([3, 1, 28, 28], [20, 1, 5, 5]), 1, 0),
            (([3, 20, 12, 12], [50, 20, 5, 5]), 1, 0),
            (([2, 3, 7, 7], [4, 3, 7, 7]), 1, 0),
            (([2, 3, 6, 6], [4, 3, 1, 1]), 2, 1),
        ] {
            let ours = run(|x, w, b| conv2d(x, w, b, stride, padding), shapes, true);
            let reference = run(burn_conv(stride, padding), shapes, true);
            for (a, b) in ours.iter().zip(&reference) {
                assert_close("lenet", a, b);
            }
        }
    }

    #[test]
    fn inference_equals_the_tracked_forward_and_burns() {
        let d = Device::flex();
        let (x, w, b) = (
            random([5, 2, 10, 10], 7, &d),
            random([3, 2, 3, 3], 8, &d),
            random([3], 9, &d),
        );
        let plain = values(conv2d(x.clone(), w.clone(), b.clone(), 2, 1));
        let tracked = values(conv2d(
            x.clone().autodiff(),
            w.clone().autodiff().require_grad(),
            b.clone().autodiff(),
            2,
            1,
        ));
        assert_eq!(plain, tracked);
        assert_close("inference", &plain, &values(burn_conv(2, 1)(x, w, b)));
    }

    #[test]
    fn gradients_are_bit_identical_whatever_the_thread_count() {
        // 19 images: chunks of 8 with a ragged last one; 1 image: the GEMM itself is threaded.
        for shapes in [([19, 3, 9, 9], [6, 3, 3, 3]), ([1, 16, 40, 40], [64, 16, 3, 3])] {
            let with = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool");
                pool.install(|| run(|x, w, b| conv2d(x, w, b, 1, 1), shapes, true))
            };
            let bits = |v: &[Vec<f32>; 4]| {
                v.iter()
                    .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            };
            let one = bits(&with(1));
            assert_eq!(one, bits(&with(2)));
            assert_eq!(one, bits(&with(3)));
        }
    }
}
