//! Max and average pooling with their own forward and backward passes for the flex backend (f32).
//!
//! Max pooling: the forward pass records, for every output, the offset of its window's maximum in the input
//! plane (the first among equal maxima, in row-major order); the backward pass adds each output
//! gradient at that offset. Planes (one channel of one image) are split over threads; each
//! plane's result does not depend on the split, so training stays bit-identical whatever the
//! thread count. On any other backend or dtype [`max_pool2d`] is burn's pooling.
//!
//! Average pooling ([`avg_pool2d`], padded zeros counted as PyTorch's `AvgPool2d` does): each
//! output is its window's sum over the input inside the padding, times `1 / kernel²`; the
//! backward pass adds each output gradient times `1 / kernel²` to its window. Planes are split
//! over threads as for max pooling, so it is bit-identical whatever the thread count too. On
//! any other backend or dtype it is burn's `avg_pool2d`.

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
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use rayon::prelude::*;

use super::host::{Kept, Placement, dims4, lifted, placement, tensor, values};

/// Max pooling of `x` over `kernel x kernel` windows every `stride` positions, no padding.
///
/// # Shapes
/// - x: `[batch, channels, height, width]`
/// - returns `[batch, channels, (height - kernel) / stride + 1, (width - kernel) / stride + 1]`
pub fn max_pool2d(x: Tensor<4>, kernel: usize, stride: usize) -> Tensor<4> {
    match placement(&[(x.device(), x.dtype())]) {
        Placement::Flex => {
            if let Ok(p) = x.clone().try_into_primitive::<Flex>() {
                let g = Geometry::new(&p, kernel, stride);
                return Tensor::from_primitive::<Flex>(forward(&g, &p, false).0);
            }
        }
        Placement::AutodiffFlex => {
            if let Ok(p) = lifted(&x).try_into_primitive::<Autodiff<Flex>>() {
                return Tensor::from_primitive::<Autodiff<Flex>>(tracked(p, kernel, stride));
            }
        }
        Placement::Other => {}
    }
    burn_max_pool2d(x, kernel, stride)
}

/// burn's max pooling with the arguments of [`max_pool2d`].
pub fn burn_max_pool2d(x: Tensor<4>, kernel: usize, stride: usize) -> Tensor<4> {
    burn::tensor::module::max_pool2d(x, MaxPoolOptions::new([kernel; 2]).with_stride([stride; 2]))
}

/// The sizes of one pooling.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn new(x: &FlexTensor, kernel: usize, stride: usize) -> Geometry {
        let [batch, channels, height, width] = dims4(x);
        assert!(
            kernel > 0 && stride > 0 && height >= kernel && width >= kernel,
            "max_pool2d: the validated spec keeps the window inside the input"
        );
        Geometry {
            batch,
            channels,
            height,
            width,
            kernel,
            stride,
            out_h: (height - kernel) / stride + 1,
            out_w: (width - kernel) / stride + 1,
        }
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }
}

/// One plane's maxima and their offsets in the plane.
fn pool_plane(g: &Geometry, x: &[f32], out: &mut [f32], arg: &mut [u32]) {
    if g.kernel == 2 && g.stride == 2 {
        return pool_plane_2x2(g, x, out, arg);
    }
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let (y0, x0) = (oy * g.stride, ox * g.stride);
            let mut best = y0 * g.width + x0;
            for y in y0..y0 + g.kernel {
                for xi in x0..x0 + g.kernel {
                    let at = y * g.width + xi;
                    if x[at] > x[best] {
                        best = at;
                    }
                }
            }
            let o = oy * g.out_w + ox;
            out[o] = x[best];
            arg[o] = best as u32;
        }
    }
}

/// [`pool_plane`] for LeNet's and VGG's 2x2 windows at stride 2, the same comparisons in the
/// same order, on row slices the compiler can check once.
fn pool_plane_2x2(g: &Geometry, x: &[f32], out: &mut [f32], arg: &mut [u32]) {
    let (w, ow) = (g.width, g.out_w);
    for (oy, (out, arg)) in out.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow)).enumerate() {
        let top = 2 * oy * w;
        let (r0, r1) = (&x[top..top + 2 * ow], &x[top + w..top + w + 2 * ow]);
        for (ox, (o, a)) in out.iter_mut().zip(arg.iter_mut()).enumerate() {
            let i = 2 * ox;
            let (mut best, mut at) = (r0[i], top + i);
            for (v, offset) in [
                (r0[i + 1], top + i + 1),
                (r1[i], top + w + i),
                (r1[i + 1], top + w + i + 1),
            ] {
                if v > best {
                    (best, at) = (v, offset);
                }
            }
            *o = best;
            *a = at as u32;
        }
    }
}

/// The forward pass: the output and, when `keep`, every output's arg-max offset in its plane.
fn forward(g: &Geometry, x: &FlexTensor, keep: bool) -> (FlexTensor, Option<Kept<u32>>) {
    assert!(
        g.plane() <= u32::MAX as usize,
        "max_pool2d: spec limits keep a plane's offsets in u32"
    );
    let xv = values(x);
    let mut out = vec![0.0f32; g.batch * g.channels * g.out_plane()];
    let mut arg = vec![0u32; out.len()];
    // Enough planes per task to amortise the task; results do not depend on the split.
    let group = (4096 / g.out_plane().max(1)).max(1) * g.out_plane();
    xv.par_chunks(group / g.out_plane() * g.plane())
        .zip(out.par_chunks_mut(group).zip(arg.par_chunks_mut(group)))
        .for_each(|(x, (out, arg))| {
            let planes = x.chunks_exact(g.plane()).zip(out.chunks_exact_mut(g.out_plane()));
            for ((x, out), arg) in planes.zip(arg.chunks_exact_mut(g.out_plane())) {
                pool_plane(g, x, out, arg);
            }
        });
    let shape = vec![g.batch, g.channels, g.out_h, g.out_w];
    (tensor(out, shape), keep.then(|| Kept(Arc::new(arg))))
}

/// What the backward pass needs: the sizes and every output's arg-max offset in its plane.
#[derive(Clone, Debug)]
struct Saved {
    geometry: Geometry,
    arg: Kept<u32>,
}

/// The autodiff operation: the one parent is the input.
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let Saved { geometry: g, arg } = ops.state;
        let gv = values(&grad);
        let mut dx = vec![0.0f32; g.batch * g.channels * g.plane()];
        dx.par_chunks_mut(g.plane())
            .zip(gv.par_chunks(g.out_plane()).zip(arg.0.par_chunks(g.out_plane())))
            .for_each(|(dx, (gr, arg))| {
                for (&a, &v) in arg.iter().zip(gr) {
                    dx[a as usize] += v;
                }
            });
        grads.register::<Flex>(node.id, tensor(dx, vec![g.batch, g.channels, g.height, g.width]));
    }
}

/// The pooling on the autodiff device, recording [`PoolBackward`] when the input is tracked.
fn tracked(x: FloatTensor<Autodiff<Flex>>, kernel: usize, stride: usize) -> FloatTensor<Autodiff<Flex>> {
    let g = Geometry::new(x.primitive(), kernel, stride);
    match PoolBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, arg) = forward(&g, x.primitive(), true);
            prep.finish(
                Saved {
                    geometry: g,
                    arg: arg.expect("kept when asked"),
                },
                out,
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&g, x.primitive(), false).0),
    }
}

/// Average pooling of `x` over `kernel x kernel` windows every `stride` positions, with
/// `padding` zeros on every side that count in every window's mean.
///
/// # Shapes
/// - x: `[batch, channels, height, width]`
/// - returns `[batch, channels, (height + 2 padding - kernel) / stride + 1, (width + 2 padding - kernel) / stride + 1]`
pub fn avg_pool2d(x: Tensor<4>, kernel: usize, stride: usize, padding: usize) -> Tensor<4> {
    match placement(&[(x.device(), x.dtype())]) {
        Placement::Flex => {
            if let Ok(p) = x.clone().try_into_primitive::<Flex>() {
                let g = AvgGeometry::new(&p, kernel, stride, padding);
                return Tensor::from_primitive::<Flex>(avg_forward(&g, &p));
            }
        }
        Placement::AutodiffFlex => {
            if let Ok(p) = lifted(&x).try_into_primitive::<Autodiff<Flex>>() {
                return Tensor::from_primitive::<Autodiff<Flex>>(avg_tracked(p, kernel, stride, padding));
            }
        }
        Placement::Other => {}
    }
    burn_avg_pool2d(x, kernel, stride, padding)
}

/// burn's average pooling with the arguments of [`avg_pool2d`].
pub fn burn_avg_pool2d(x: Tensor<4>, kernel: usize, stride: usize, padding: usize) -> Tensor<4> {
    let options = AvgPoolOptions::new([kernel; 2])
        .with_stride([stride; 2])
        .with_padding([padding; 2])
        .with_count_include_pad(true);
    burn::tensor::module::avg_pool2d(x, options)
}

/// The sizes of one average pooling.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AvgGeometry {
    pool: Geometry,
    padding: usize,
}

impl AvgGeometry {
    fn new(x: &FlexTensor, kernel: usize, stride: usize, padding: usize) -> AvgGeometry {
        let [batch, channels, height, width] = dims4(x);
        assert!(
            kernel > 0 && stride > 0 && height + 2 * padding >= kernel && width + 2 * padding >= kernel,
            "avg_pool2d: the validated spec keeps the window inside the padded input"
        );
        AvgGeometry {
            pool: Geometry {
                batch,
                channels,
                height,
                width,
                kernel,
                stride,
                out_h: (height + 2 * padding - kernel) / stride + 1,
                out_w: (width + 2 * padding - kernel) / stride + 1,
            },
            padding,
        }
    }

    /// The input rows (or columns, with `size` the width) of output `o`'s window inside the
    /// input: the padding contributes zeros.
    fn span(&self, o: usize, size: usize) -> std::ops::Range<usize> {
        let start = (o * self.pool.stride).saturating_sub(self.padding);
        let end = (o * self.pool.stride + self.pool.kernel)
            .saturating_sub(self.padding)
            .min(size);
        start..end
    }

    /// Calls `f(output offset, input rows, input columns)` for every output of a plane.
    fn windows(&self, mut f: impl FnMut(usize, std::ops::Range<usize>, std::ops::Range<usize>)) {
        let g = &self.pool;
        for oy in 0..g.out_h {
            let rows = self.span(oy, g.height);
            for ox in 0..g.out_w {
                f(oy * g.out_w + ox, rows.clone(), self.span(ox, g.width));
            }
        }
    }

    fn inv_area(&self) -> f32 {
        1.0 / (self.pool.kernel * self.pool.kernel) as f32
    }
}

/// The forward pass: every window's sum times `1 / kernel²`, planes split over threads.
fn avg_forward(g: &AvgGeometry, x: &FlexTensor) -> FlexTensor {
    let p = &g.pool;
    let xv = values(x);
    let mut out = vec![0.0f32; p.batch * p.channels * p.out_plane()];
    let inv = g.inv_area();
    xv.par_chunks(p.plane())
        .zip(out.par_chunks_mut(p.out_plane().max(1)))
        .for_each(|(x, out)| {
            g.windows(|o, rows, cols| {
                let sum: f32 = rows
                    .map(|y| x[y * p.width + cols.start..y * p.width + cols.end].iter().sum::<f32>())
                    .sum();
                out[o] = sum * inv;
            });
        });
    tensor(out, vec![p.batch, p.channels, p.out_h, p.out_w])
}

/// The autodiff operation of average pooling: the one parent is the input.
#[derive(Debug)]
struct AvgPoolBackward;

impl Backward<Flex, 1> for AvgPoolBackward {
    type State = AvgGeometry;

    fn backward(self, ops: Ops<AvgGeometry, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let g = ops.state;
        let p = &g.pool;
        let gv = values(&grad);
        let inv = g.inv_area();
        let mut dx = vec![0.0f32; p.batch * p.channels * p.plane()];
        dx.par_chunks_mut(p.plane())
            .zip(gv.par_chunks(p.out_plane().max(1)))
            .for_each(|(dx, gr)| {
                g.windows(|o, rows, cols| {
                    let v = gr[o] * inv;
                    for y in rows {
                        dx[y * p.width + cols.start..y * p.width + cols.end]
                            .iter_mut()
                            .for_each(|d| *d += v);
                    }
                });
            });
        grads.register::<Flex>(node.id, tensor(dx, vec![p.batch, p.channels, p.height, p.width]));
    }
}

/// Average pooling on the autodiff device, recording [`AvgPoolBackward`] when the input is
/// tracked.
fn avg_tracked(
    x: FloatTensor<Autodiff<Flex>>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> FloatTensor<Autodiff<Flex>> {
    let g = AvgGeometry::new(x.primitive(), kernel, stride, padding);
    match AvgPoolBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(g, avg_forward(&g, x.primitive())),
        OpsKind::UnTracked(prep) => prep.finish(avg_forward(&g, x.primitive())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use burn::tensor::{Device, TensorData};
    use proptest::prelude::*;

    fn run(pool: impl Fn(Tensor<4>) -> Tensor<4>, shape: [usize; 4], seed: u64) -> (Vec<f32>, Vec<f32>) {
        let d = Device::flex().autodiff();
        let mut rng = SplitMix64::new(seed);
        let n = shape.iter().product();
        let x = Tensor::<4>::from_data(
            TensorData::new((0..n).map(|_| rng.next_f32()).collect::<Vec<f32>>(), shape),
            &d,
        )
        .require_grad();
        let out = pool(x.clone());
        let m: usize = out.dims().iter().product();
        let r = Tensor::<4>::from_data(
            TensorData::new((0..m).map(|_| rng.next_f32()).collect::<Vec<f32>>(), out.dims()),
            &d,
        );
        let grads = (out.clone() * r).sum().backward();
        let values = |t: Tensor<4>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        (values(out), values(x.grad(&grads).expect("input gradient")))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        /// Output and input gradient equal burn's pooling and its autodiff gradient exactly.
        #[test]
        fn equals_burns_pooling_and_its_gradient(
            batch in 1usize..4, channels in 1usize..4, size in 1usize..10, kernel in 1usize..4, stride in 1usize..4, seed: u64,
        ) {
            prop_assume!(size >= kernel);
            let shape = [batch, channels, size, size + 1];
            let ours = run(|x| max_pool2d(x, kernel, stride), shape, seed);
            let reference = run(|x| burn_max_pool2d(x, kernel, stride), shape, seed);
            prop_assert_eq!(ours, reference);
        }

        /// Output and input gradient equal burn's average pooling and its gradient within
        /// rounding (1e-6: the window sums are added in another order).
        #[test]
        fn average_pooling_equals_burns_and_its_gradient(
            batch in 1usize..4, channels in 1usize..4, size in 1usize..10, kernel in 1usize..5, stride in 1usize..4, padding in 0usize..3, seed: u64,
        ) {
            prop_assume!(size + 2 * padding >= kernel && 2 * padding <= kernel);
            let shape = [batch, channels, size, size + 1];
            let (ours, reference) = (
                run(|x| avg_pool2d(x, kernel, stride, padding), shape, seed),
                run(|x| burn_avg_pool2d(x, kernel, stride, padding), shape, seed),
            );
            for (a, b) in [(&ours.0, &reference.0), (&ours.1, &reference.1)] {
                prop_assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(b) {
                    prop_assert!((a - b).abs() <= 1e-6, "{} vs burn's {}", a, b);
                }
            }
        }
    }

    #[test]
    fn inference_equals_the_tracked_forward() {
        let d = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..2 * 3 * 24 * 24)
                    .map(|i| ((i * 37) % 101) as f32)
                    .collect::<Vec<_>>(),
                [2, 3, 24, 24],
            ),
            &d,
        );
        let plain = max_pool2d(x.clone(), 2, 2).into_data();
        let tracked = max_pool2d(x.autodiff().require_grad(), 2, 2).into_data();
        assert_eq!(plain, tracked);
    }
}
