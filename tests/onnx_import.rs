//! ONNX import: maxprune's own export read back gives the same spec and logits; graphs it
//! cannot represent are refused naming the node.

use std::path::Path;

use burn::tensor::{Tensor as BurnTensor, TensorData};
use maxprune::data::transform::Normalization;
use maxprune::model::network::Network;
use maxprune::model::onnx_import::{OnnxOptions, import_onnx};
use maxprune::model::presets::Preset;
use maxprune::model::spec::{InputShape, LayerSpec};
use maxprune::prune::select::Policy;
use maxprune::relevance::CriterionKind;
use util::nets::*;

mod util;

/// `net`'s layers without dropout (ONNX inference graphs drop it).
fn inference_layers(net: &Network) -> Vec<LayerSpec> {
    let layers = net.spec().layers.iter();
    layers
        .filter(|l| !matches!(l, LayerSpec::Dropout(_)))
        .cloned()
        .collect()
}

/// Exports `net`, imports the file and checks that the spec (but dropout) and the logits on
/// `IMAGES` inputs (max abs difference under 1e-5) come back.
fn round_trips(what: &str, net: &Network) {
    let onnx = maxprune::onnx::export(net, &Normalization::default()).unwrap();
    let options = OnnxOptions::default();
    let back = import_onnx(&onnx, Path::new("model.onnx"), &options, &device()).unwrap();
    assert_eq!(inference_layers(&back.network), inference_layers(net), "{what}");
    assert_eq!(back.network.spec().input, net.spec().input, "{what}");
    assert_eq!((back.mean, back.std), (None, None), "{what}");
    let x = inputs(&net.spec().input);
    let (ours, theirs) = (maxprune_logits(net, &x), maxprune_logits(&back.network, &x));
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "{what}: max abs difference {diff}");
}

#[test]
fn import_of_an_export_gives_back_the_network() {
    let lenet = Network::init(&Preset::Lenet5Maxout.spec(), 1, &device()).unwrap();
    round_trips("lenet5-maxout", &lenet);
    let conv = Network::init(&conv_maxout_spec(), 2, &device()).unwrap();
    round_trips("conv maxout", &conv);
    let ragged = pruned(&conv, CriterionKind::WeightNorm, Policy::Global { fraction: 0.3 });
    assert!(ragged.spec().maxouts().iter().any(|(_, p)| !p.is_uniform()));
    round_trips("conv maxout, ragged", &ragged);
    let input = InputShape {
        channels: 3,
        height: 16,
        width: 16,
    };
    let net = cifar_with_running_stats(input, 0.125, 1);
    round_trips("cifar-maxout (batch norm, avg-pool, global-avg-pool)", &net);
}

#[test]
fn import_reads_the_input_normalisation_and_folds_batch_norm_on_request() {
    let input = InputShape {
        channels: 3,
        height: 16,
        width: 16,
    };
    let net = Network::init(
        &Preset::CifarMaxout.spec().scaled(0.125, input, 10).unwrap(),
        1,
        &device(),
    )
    .unwrap();
    let (mean, std) = Normalization::IMAGENET;
    let onnx = maxprune::onnx::export(&net, &Normalization::new(Some(&mean), Some(&std))).unwrap();
    let options = OnnxOptions {
        input: None,
        fold_bn: true,
    };
    let back = import_onnx(&onnx, Path::new("m.onnx"), &options, &device()).unwrap();
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    assert_eq!(back.mean.as_deref().map(as_f32), Some(as_f32(&mean)));
    assert_eq!(back.std.as_deref().map(as_f32), Some(as_f32(&std)));
    let folded = net.fold_batch_norm().unwrap();
    assert_eq!(inference_layers(&back.network), inference_layers(&folded));
}

/// The PyTorch exports in `fixtures/onnx` (written by `bench/onnx_fixtures.py`) give PyTorch's
/// logits for its fixed input, within 1e-4.
#[test]
fn pytorch_exports_give_pytorchs_logits() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let golden = entry.unwrap().path();
        if golden.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
        let shape: Vec<usize> = serde_json::from_value(expected["input"].clone()).unwrap();
        let logits: Vec<f32> = serde_json::from_value(expected["logits"].clone()).unwrap();
        let model = golden.with_extension("onnx");
        let bytes = std::fs::read(&model).unwrap();
        let back = import_onnx(&bytes, &model, &OnnxOptions::default(), &device())
            .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        let t = BurnTensor::<4>::from_data(TensorData::new(x, [shape[0], shape[1], shape[2], shape[3]]), &device());
        let ours: Vec<f32> = back.network.forward(t).into_data().iter::<f32>().collect();
        assert_eq!(ours.len(), logits.len(), "{}", model.display());
        let diff = ours
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "{}: max abs difference {diff}", model.display());
        checked += 1;
    }
    assert_eq!(checked, 7, "fixtures found");
}
