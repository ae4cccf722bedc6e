//! Networks and inputs shared by the ONNX tests (export checked by tract, import round trips).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor as BurnTensor, TensorData};
use maxprune::data::dataset::Dataset;
use maxprune::data::split::Split;
use maxprune::model::layers::{Maxout, Relu};
use maxprune::model::network::Network;
use maxprune::model::onnx_import::{OnnxOptions, import_onnx};
use maxprune::model::presets::Preset;
use maxprune::model::spec::{ArchSpec, InputShape, LayerSpec, Pieces};
use maxprune::prune::neuron::apply;
use maxprune::prune::select::{Policy, select};
use maxprune::relevance::{CriterionKind, TiePolicy, criterion};

/// Images per comparison.
pub const IMAGES: usize = 100;

/// The CPU device.
pub fn device() -> Device {
    Device::flex()
}

/// The first `IMAGES` embedded test images.
pub fn test_images() -> Split {
    let mut test = Dataset::embedded().unwrap().test;
    test.pixels.truncate(IMAGES * test.rows * test.cols);
    test.labels.truncate(IMAGES);
    test
}

/// `IMAGES` inputs in `[0, 1]` for `input`: the embedded test images where they fit, else a
/// fixed pattern.
pub fn inputs(input: &InputShape) -> Vec<f32> {
    let images = test_images();
    if (input.channels, input.height, input.width) == (1, images.rows, images.cols) {
        return images.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    }
    let n = IMAGES * input.channels * input.height * input.width;
    (0..n).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect()
}

/// maxprune's logits for `IMAGES` inputs `x`, flattened.
pub fn maxprune_logits(net: &Network, x: &[f32]) -> Vec<f32> {
    let input = net.spec().input;
    let shape = [IMAGES, input.channels, input.height, input.width];
    let t = BurnTensor::<4>::from_data(TensorData::new(x.to_vec(), shape), net.device());
    net.forward(t).into_data().iter::<f32>().collect()
}

/// `net` pruned by `kind` scores on the test images under `policy`.
pub fn pruned(net: &Network, kind: CriterionKind, policy: Policy) -> Network {
    let rel = criterion(kind, TiePolicy::Split, 1)
        .score(net, &test_images(), 50)
        .unwrap();
    apply(net, &select(&rel, net.spec(), policy).unwrap()).unwrap()
}

/// `lenet5-maxout` with conv1 as a maxout layer over rectified channel groups too.
pub fn conv_maxout_spec() -> ArchSpec {
    let mut spec = Preset::Lenet5Maxout.spec();
    spec.name = "conv-maxout".into();
    spec.layers.splice(
        1..1,
        [
            LayerSpec::Relu(Relu {}),
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units: 5, k: 4 },
            }),
        ],
    );
    spec
}

/// `cifar-maxout` at `width` for `input`, its first max pool an avg-pool (3, stride 2, padding
/// 1), its batch norms' running statistics moved by `passes` training passes on `inputs(input)`
/// scaled by 1, 2, ...: batch norm, average pooling and global average pooling in one network.
pub fn cifar_with_running_stats(input: InputShape, width: f64, passes: usize) -> Network {
    let mut cifar = Preset::CifarMaxout.spec().scaled(width, input, 10).unwrap();
    let pool = cifar
        .layers
        .iter()
        .position(|l| matches!(l, LayerSpec::MaxPool(_)))
        .unwrap();
    cifar.layers[pool] = LayerSpec::avg_pool(3, 2, 1);
    let mut net = Network::init(&cifar, 4, &device()).unwrap();
    let x = inputs(&input);
    let shape = [IMAGES, input.channels, input.height, input.width];
    for pass in 0..passes {
        let scaled = x.iter().map(|v| v * (pass + 1) as f32).collect();
        let batch = BurnTensor::<4>::from_data(TensorData::new(scaled, shape), &device());
        let (_, stats) = net.forward_train(batch, &mut maxprune::rng::SplitMix64::new(pass as u64));
        net = net.with_running_stats(stats);
    }
    net
}

/// A PyTorch export in `fixtures/onnx` (written by `bench/onnx_fixtures.py`) with its golden
/// `<name>.json`.
pub struct PytorchFixture {
    /// The `.onnx` file (dynamo exports keep their weights in `<file>.data` beside it).
    pub model: PathBuf,
    /// The fixed input's `[batch, C, H, W]`.
    pub shape: [usize; 4],
    /// The fixed input `x[i] = ((i * 7919) % 256) / 255`, flattened.
    pub x: Vec<f32>,
    /// PyTorch's logits for `x`, flattened.
    pub logits: Vec<f32>,
}

/// Every PyTorch export in `fixtures/onnx` (7 of them), with its fixed input and logits.
pub fn pytorch_fixtures() -> Vec<PytorchFixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx");
    let mut goldens: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    goldens.sort();
    let fixtures: Vec<PytorchFixture> = goldens
        .iter()
        .map(|golden| {
            let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
            let shape: [usize; 4] = serde_json::from_value(expected["input"].clone()).unwrap();
            let n: usize = shape.iter().product();
            PytorchFixture {
                model: golden.with_extension("onnx"),
                shape,
                x: (0..n).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect(),
                logits: serde_json::from_value(expected["logits"].clone()).unwrap(),
            }
        })
        .collect();
    assert_eq!(fixtures.len(), 7, "fixtures found in {}", dir.display());
    fixtures
}

impl PytorchFixture {
    /// The logits of the network `import_onnx` reads from the file, for `x`, flattened.
    pub fn imported_logits(&self) -> Vec<f32> {
        let bytes = std::fs::read(&self.model).unwrap();
        let back = import_onnx(&bytes, &self.model, &OnnxOptions::default(), &device())
            .unwrap_or_else(|e| panic!("{}: {e}", self.model.display()));
        let t = BurnTensor::<4>::from_data(TensorData::new(self.x.clone(), self.shape), &device());
        back.network.forward(t).into_data().iter::<f32>().collect()
    }
}

/// The largest absolute difference between `a` and `b`, which have the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "as many values on both sides");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}
