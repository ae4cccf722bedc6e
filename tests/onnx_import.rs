//! ONNX import: maxprune's own export read back gives the same spec and logits; graphs it
//! cannot represent are refused naming the node.

use std::path::Path;

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

/// Every tensor of `net`'s layers that have any, by role, as the bits of its values.
fn tensor_bits(net: &Network) -> Vec<Vec<(&'static str, Vec<u32>)>> {
    let bits = |t: &maxprune::model::params::ParamTensor| {
        let data = t.to_data();
        data.as_slice::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    net.params()
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.shapes()
                .into_iter()
                .map(|(role, _)| (role, bits(p.get(role).unwrap())))
                .collect()
        })
        .collect()
}

/// Exports `net`, imports the file and checks that the spec (but dropout), every weight and
/// buffer bit for bit, and the logits on `IMAGES` inputs (max abs difference under 1e-5) come
/// back.
fn round_trips(what: &str, net: &Network) {
    let onnx = maxprune::onnx::export(net, &Normalization::default()).unwrap();
    let options = OnnxOptions::default();
    let back = import_onnx(&onnx, Path::new("model.onnx"), &options, &device()).unwrap();
    assert_eq!(inference_layers(&back.network), inference_layers(net), "{what}");
    assert!(tensor_bits(&back.network) == tensor_bits(net), "{what}: weights differ");
    assert_eq!(back.network.spec().input, net.spec().input, "{what}");
    assert_eq!((back.mean, back.std), (None, None), "{what}");
    let x = inputs(&net.spec().input);
    let diff = max_abs_diff(&maxprune_logits(net, &x), &maxprune_logits(&back.network, &x));
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
    let fewer_units = pruned(&conv, CriterionKind::WeightNorm, Policy::Units { fraction: 0.3 });
    assert!(fewer_units.num_params() < conv.num_params());
    round_trips("conv maxout, whole units removed", &fewer_units);
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
    for fixture in pytorch_fixtures() {
        let diff = max_abs_diff(&fixture.imported_logits(), &fixture.logits);
        assert!(diff < 1e-4, "{}: max abs difference {diff}", fixture.model.display());
    }
}
