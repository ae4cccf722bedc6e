//! The ONNX export, checked by someone else's runtime: tract loads every kind of network
//! maxprune builds and must give maxprune's logits (max abs difference under 1e-4, identical
//! predictions) on the embedded test images, and gives the network maxprune imports from each
//! PyTorch export in `fixtures/onnx` the same logits.

use maxprune::data::transform::Normalization;
use maxprune::model::layers::Maxout;
use maxprune::model::network::Network;
use maxprune::model::presets::Preset;
use maxprune::model::spec::{InputShape, LayerSpec, Pieces};
use maxprune::prune::select::Policy;
use maxprune::relevance::CriterionKind;
use tract_onnx::prelude::*;
use util::nets::*;

mod util;

/// Runs the ONNX model `model` in tract on `x`, of `shape`; its output, flattened.
fn tract_run(model: InferenceModel, shape: [usize; 4], x: &[f32]) -> Vec<f32> {
    let model = model
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = model
        .run(tvec![Tensor::from_shape(&shape, x).unwrap().into_tvalue()])
        .unwrap();
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

/// tract's logits for the ONNX model `onnx` on `IMAGES` inputs `x` of shape `input`.
fn tract_logits(onnx: &[u8], input: &InputShape, x: &[f32]) -> Vec<f32> {
    let model = tract_onnx::onnx().model_for_read(&mut &onnx[..]).unwrap();
    tract_run(model, [IMAGES, input.channels, input.height, input.width], x)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// `ours` and `theirs`, the logits of `images` inputs one after the other, differ by less than
/// 1e-4 and predict the same class for every input.
fn same_predictions(what: &str, ours: &[f32], theirs: &[f32], images: usize) {
    let diff = max_abs_diff(ours, theirs);
    assert!(diff < 1e-4, "{what}: max abs difference {diff}");
    let classes = ours.len() / images;
    for i in 0..images {
        let row = i * classes..(i + 1) * classes;
        assert_eq!(argmax(&ours[row.clone()]), argmax(&theirs[row]), "{what}: image {i}");
    }
}

/// Exports `net`, runs it in tract, and compares with maxprune's forward pass.
fn agrees(what: &str, net: &Network) {
    agrees_normalised(what, net, &Normalization::default());
}

/// Exports `net` reading pixels normalised by `norm`, runs it in tract on pixels in `[0, 1]`,
/// and compares with maxprune's forward pass on the normalised pixels.
fn agrees_normalised(what: &str, net: &Network, norm: &Normalization) {
    let onnx = maxprune::onnx::export(net, norm).unwrap();
    let input = net.spec().input;
    let x = inputs(&input);
    let plane = input.height * input.width;
    let normalised: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (m, s) = norm.channel(i / plane % input.channels);
            (v - m) / s
        })
        .collect();
    let (ours, theirs) = (maxprune_logits(net, &normalised), tract_logits(&onnx, &input, &x));
    same_predictions(what, &ours, &theirs, IMAGES);
}

/// The PyTorch exports in `fixtures/onnx`, each loaded by tract from its path (which resolves
/// the dynamo exports' `<name>.onnx.data` beside the file) and run on the fixed input of
/// `fixtures/onnx/README.md`, predict as the network maxprune imports from the same file.
#[test]
fn tract_agrees_with_the_import_of_every_pytorch_fixture() {
    for fixture in pytorch_fixtures() {
        let what = fixture.model.display().to_string();
        // The dynamo exports declare every value's shape with a symbolic batch, which tract
        // cannot unify with the fixed batch of the input; the shapes are hints, so they are
        // left out and inferred from the input.
        let onnx = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .with_ignore_output_shapes(true);
        let model = onnx.model_for_path(&fixture.model).unwrap();
        let theirs = tract_run(model, fixture.shape, &fixture.x);
        same_predictions(&what, &fixture.imported_logits(), &theirs, fixture.shape[0]);
    }
}

#[test]
fn tract_agrees_with_maxprune_on_every_kind_of_network() {
    let lenet = Network::init(&Preset::Lenet5Maxout.spec(), 1, &device()).unwrap();
    agrees("lenet5-maxout", &lenet);
    agrees(
        "plain lenet5",
        &Network::init(&Preset::Lenet5.spec(), 1, &device()).unwrap(),
    );
    let per_unit = pruned(&lenet, CriterionKind::WeightNorm, Policy::PerUnit { n: 1 });
    agrees("per-unit pruned (k=3)", &per_unit);
    let ragged = pruned(&lenet, CriterionKind::WeightNorm, Policy::Global { fraction: 0.4 });
    assert!(ragged.spec().layers.iter().any(|l| matches!(
        l,
        LayerSpec::Maxout(Maxout {
            pieces: Pieces::Ragged { .. }
        })
    )));
    agrees("ragged", &ragged);
    let units = pruned(&lenet, CriterionKind::Contribution, Policy::Units { fraction: 0.5 });
    assert!(units.num_params() < lenet.num_params() / 2 + lenet.num_params() / 4);
    agrees("unit-removed", &units);
    let conv = Network::init(&conv_maxout_spec(), 2, &device()).unwrap();
    agrees("conv maxout", &conv);
    agrees(
        "conv maxout, ragged",
        &pruned(&conv, CriterionKind::WeightNorm, Policy::Global { fraction: 0.3 }),
    );
    let input = InputShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let vgg = Preset::Vgg16Maxout.spec().scaled(1.0 / 16.0, input, 10).unwrap();
    agrees("scaled vgg16-maxout", &Network::init(&vgg, 3, &device()).unwrap());
    // Batch norm (its running statistics moved by two training passes), average pooling and
    // global average pooling; and the same network with its batch norms folded.
    let net = cifar_with_running_stats(input, 0.25, 2);
    agrees("cifar-maxout (batch norm, avg-pool, global-avg-pool)", &net);
    agrees("cifar-maxout, batch norm folded", &net.fold_batch_norm().unwrap());
}

#[test]
fn a_normalised_run_exports_its_mean_and_std_in_front_of_the_graph() {
    let input = InputShape {
        channels: 3,
        height: 28,
        width: 28,
    };
    let spec = Preset::Lenet5Maxout.spec().scaled(1.0, input, 10).unwrap();
    let net = Network::init(&spec, 1, &device()).unwrap();
    let (mean, std) = Normalization::IMAGENET;
    agrees_normalised(
        "imagenet-normalised",
        &net,
        &Normalization::new(Some(&mean), Some(&std)),
    );
}
