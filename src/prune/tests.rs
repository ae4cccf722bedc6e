//! The invariants of neuron pruning, and regression tests for the original code's defects.

use crate::model::layers::{Conv2d, Dense, Dropout, Flatten, Kind, MaxPool, Maxout, Relu};
use burn::tensor::Device;

use super::neuron::apply;
use super::plan::{LayerPlan, PLAN_FORMAT_VERSION, PrunePlan};
use super::select::{Policy, select};
use crate::data::split::Split;
use crate::data::split::batch;
use crate::data::transform::Normalization;
use crate::model::layout;
use crate::model::network::Network;
use crate::model::network::tests::conv_maxout_spec;
use crate::model::params::ParamTensor;
use crate::model::presets::Preset;
use crate::model::spec::{ArchSpec, Init, InputShape, LayerSpec, Pieces, SPEC_FORMAT_VERSION};
use crate::relevance::{ArgmaxFrequency, Contribution, Criterion, Pass, RandomScores, TiePolicy};
use crate::rng::SplitMix64;

fn images(n: usize, seed: u64) -> Split {
    let mut rng = SplitMix64::new(seed);
    Split {
        channels: 1,
        rows: 28,
        cols: 28,
        pixels: (0..n * 784).map(|_| (rng.next_u64() & 0xff) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

fn outputs(net: &Network, data: &Split) -> Vec<f32> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let (x, _) = batch(data, &idx, &net.spec().input, &Normalization::default(), net.device());
    net.forward(x).into_data().iter::<f32>().collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "output {i}: {x} vs {y} (tolerance {tol})");
    }
}

fn maxout_pieces(spec: &ArchSpec, m: usize) -> Pieces {
    match &spec.layers[m] {
        LayerSpec::Maxout(Maxout { pieces }) => pieces.clone(),
        _ => panic!("layer {m} is not maxout"),
    }
}

/// Spec parameter count equals the built network's, checked after every plan.
fn apply_checked(net: &Network, plan: &PrunePlan) -> Network {
    let pruned = apply(net, plan).unwrap();
    assert_eq!(pruned.num_params(), pruned.spec().num_params().unwrap());
    pruned
}

/// Edits one layer's parameters on the CPU.
fn edit(net: &Network, layer: usize, f: impl FnOnce(&mut Vec<f32>, &[usize], &mut Vec<f32>)) -> Network {
    let mut params = net.params().to_vec();
    let (w, b) = (
        params[layer].get("weight").unwrap().to_data(),
        params[layer].get("bias").unwrap().to_data(),
    );
    let dims = w.shape().to_vec();
    let mut wv: Vec<f32> = w.iter::<f32>().collect();
    let mut bv: Vec<f32> = b.iter::<f32>().collect();
    f(&mut wv, &dims, &mut bv);
    let d = net.device();
    let nb = bv.len();
    let (mut wv, mut bv) = (Some(wv), Some(bv));
    params[layer] = params[layer].clone().map(|role, _| match role {
        "weight" => ParamTensor::from_values(wv.take().unwrap(), &dims, d),
        _ => ParamTensor::from_values(bv.take().unwrap(), &[nb], d),
    });
    Network::from_params(net.spec(), params, d).unwrap()
}

fn plan_keeping(spec: &ArchSpec, keep: impl Fn(usize, usize, usize) -> bool) -> PrunePlan {
    PrunePlan {
        format_version: PLAN_FORMAT_VERSION,
        spec_fingerprint: spec.fingerprint(),
        layers: spec
            .maxout_layers()
            .into_iter()
            .map(|m| {
                let p = maxout_pieces(spec, m);
                LayerPlan {
                    layer: m,
                    keep: (0..p.units())
                        .map(|u| (0..p.count(u)).filter(|&j| keep(m, u, j)).collect())
                        .collect(),
                }
            })
            .collect(),
    }
}

#[test]
fn removing_pieces_that_never_win_leaves_outputs_unchanged() {
    let d = Device::flex();
    let data = images(6, 1);
    for spec in [Preset::Lenet5Maxout.spec(), linear_lenet5_maxout(), conv_maxout_spec()] {
        let net = Network::init(&spec, 2, &d).unwrap();
        let rel = ArgmaxFrequency { ties: TiePolicy::Split }
            .score(&net, &data, 4)
            .unwrap();
        let plan = PrunePlan {
            format_version: PLAN_FORMAT_VERSION,
            spec_fingerprint: rel.spec_fingerprint.clone(),
            layers: rel
                .layers
                .iter()
                .map(|l| LayerPlan {
                    layer: l.layer,
                    keep: l
                        .counts
                        .iter()
                        .map(|u| (0..u.len()).filter(|&j| u[j] > 0.0).collect())
                        .collect(),
                })
                .collect(),
        };
        let removed: usize = rel
            .layers
            .iter()
            .flat_map(|l| l.counts.iter().flatten())
            .filter(|&&c| c == 0.0)
            .count();
        assert!(removed > 0, "{}: the test needs pieces that never win", spec.name);
        let pruned = apply_checked(&net, &plan);
        assert!(pruned.num_params() < net.num_params());
        assert_close(&outputs(&net, &data), &outputs(&pruned, &data), 1e-6);
    }
}

#[test]
fn a_pruned_network_equals_full_network_with_pieces_masked_to_neg_inf() {
    // For rectified pieces the mask reaches the max as relu(-inf) = 0, which never changes a
    // max over values >= 0 while the unit keeps a piece: the same equality holds.
    let d = Device::flex();
    let data = images(5, 3);
    for spec in [
        Preset::Lenet5Maxout.spec(),
        linear_lenet5_maxout(),
        conv_maxout_spec(),
        rectified_conv_maxout_spec(),
    ] {
        let net = Network::init(&spec, 4, &d).unwrap();
        let rel = RandomScores { seed: 9 }.score(&net, &data, 8).unwrap();
        let plan = select(&rel, &spec, Policy::Global { fraction: 0.4 }).unwrap();
        let pruned = apply_checked(&net, &plan);
        // Mask: every removed piece's bias to -inf, so its pre-activation is -inf before the max.
        let mut masked = net.clone();
        for lp in &plan.layers {
            let pieces = maxout_pieces(&spec, lp.layer);
            let producer = spec.producer_of(lp.layer).unwrap();
            masked = edit(&masked, producer, |_, _, b| {
                for u in 0..pieces.units() {
                    for j in (0..pieces.count(u)).filter(|j| !lp.keep[u].contains(j)) {
                        b[layout::piece_index(&pieces, u, j)] = f32::NEG_INFINITY;
                    }
                }
            });
        }
        assert_close(&outputs(&masked, &data), &outputs(&pruned, &data), 1e-5);
    }
}

/// `lenet5-maxout` as the presets were before the relu on the pieces
/// (`experiments/lenet5-maxout-linear.json`).
fn linear_lenet5_maxout() -> ArchSpec {
    let mut spec = Preset::Lenet5Maxout.spec();
    let m = spec.maxout_layers()[0];
    let relu = (spec.producer_of(m).unwrap()..m)
        .find(|&i| spec.layers[i] == LayerSpec::Relu(Relu {}))
        .unwrap();
    spec.layers.remove(relu);
    spec
}

/// [`conv_maxout_spec`] with a relu between conv1 and its maxout.
fn rectified_conv_maxout_spec() -> ArchSpec {
    let mut spec = conv_maxout_spec();
    spec.layers.insert(1, LayerSpec::Relu(Relu {}));
    assert!(spec.rectified_pieces(2));
    spec
}

#[test]
fn relevance_of_rectified_pieces_sees_an_all_negative_unit_as_a_tie() {
    // fc1's weights 0, biases hand-set: unit 0's pieces are all negative (rectified: all 0, a
    // tie in every contest), unit 1's piece 1 is the largest, every other unit ties at 0.
    let d = Device::flex();
    let data = images(3, 2);
    let ties = |spec: &ArchSpec, policy| {
        let net = edit(&Network::init(spec, 1, &d).unwrap(), 5, |w, _, b| {
            w.fill(0.0);
            b.fill(-1.0);
            b[..8].copy_from_slice(&[-1.0, -2.0, -3.0, -4.0, 1.0, 3.0, 2.0, -1.0]);
        });
        ArgmaxFrequency { ties: policy }.score(&net, &data, 2).unwrap().layers[0]
            .scores
            .clone()
    };
    let rectified = Preset::Lenet5Maxout.spec();
    let split = ties(&rectified, TiePolicy::Split);
    assert_eq!(split[0], [0.25; 4]);
    assert_eq!(split[1], [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(ties(&rectified, TiePolicy::Nobody)[0], [0.0; 4]);
    // The same weights without the relu: unit 0's largest piece (-1) wins every contest.
    assert_eq!(ties(&linear_lenet5_maxout(), TiePolicy::Split)[0], [1.0, 0.0, 0.0, 0.0]);
}

/// A conv maxout layer read through a flatten by a dense layer.
fn conv_maxout_flatten_spec() -> ArchSpec {
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "conv-maxout-flatten".into(),
        input: InputShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        layers: vec![
            LayerSpec::Conv2d(Conv2d {
                name: "conv1".into(),
                filters: 12,
                kernel: 5,
                stride: 2,
                padding: 0,
            }),
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units: 4, k: 3 },
            }),
            LayerSpec::MaxPool(MaxPool { kernel: 2, stride: 2 }),
            LayerSpec::Flatten(Flatten {}),
            LayerSpec::Dense(Dense {
                name: "fc".into(),
                outputs: 10,
            }),
        ],
        init: Init::Xavier,
    }
}

#[test]
fn removing_a_unit_equals_zeroing_what_the_consumer_reads_from_it() {
    let d = Device::flex();
    let data = images(4, 5);
    for (spec, m, consumer) in [
        (Preset::Lenet5Maxout.spec(), 8, 9),
        (conv_maxout_spec(), 1, 3),
        (conv_maxout_flatten_spec(), 1, 4),
    ] {
        let net = Network::init(&spec, 6, &d).unwrap();
        let units = maxout_pieces(&spec, m).units();
        let gone = [1, units - 1];
        let plan = plan_keeping(&spec, |layer, u, _| layer != m || !gone.contains(&u));
        let pruned = apply_checked(&net, &plan);
        let spatial = net.infos()[consumer].input.numel() / units;
        let zeroed = edit(&net, consumer, |w, dims, _| {
            let (rows, cols) = (dims[0], w.len() / dims[0]);
            for r in 0..rows {
                for c in 0..cols {
                    // conv: cols = in_channels * kh * kw; dense after flatten: in = units * spatial
                    let unit = if dims.len() == 4 {
                        c / (dims[2] * dims[3])
                    } else {
                        c / spatial
                    };
                    if gone.contains(&unit) {
                        w[r * cols + c] = 0.0;
                    }
                }
            }
        });
        assert_close(&outputs(&zeroed, &data), &outputs(&pruned, &data), 1e-5);
        assert_eq!(maxout_pieces(pruned.spec(), m).units(), units - 2, "{}", spec.name);
        // Nothing reads those units any more: `contribution` scores them 0, so the units
        // policy removes units scored 0 from this layer: exactly them, unless a unit that
        // never fires (rectified pieces all negative on this data) scores 0 as well.
        let rel = Contribution { ties: TiePolicy::Split }
            .score(&zeroed, &data, 4)
            .unwrap();
        let totals: Vec<f64> = rel
            .layers
            .iter()
            .find(|l| l.layer == m)
            .unwrap()
            .scores
            .iter()
            .map(|u| u.iter().sum())
            .collect();
        assert!(gone.iter().all(|&u| totals[u] == 0.0), "{}", spec.name);
        let silent: Vec<usize> = (0..units).filter(|&u| totals[u] == 0.0).collect();
        let plan = select(
            &rel,
            &spec,
            Policy::Units {
                fraction: 2.5 / units as f64,
            },
        )
        .unwrap();
        let keep = &plan.layers.iter().find(|l| l.layer == m).unwrap().keep;
        let removed: Vec<usize> = (0..units).filter(|&u| keep[u].is_empty()).collect();
        if silent == gone {
            assert_eq!(removed, gone, "{}", spec.name);
        } else {
            assert!(
                removed.len() == 2 && removed.iter().all(|u| silent.contains(u)),
                "{}",
                spec.name
            );
        }
    }
}

#[test]
fn contribution_of_a_unit_is_its_mean_output_magnitude_times_its_outgoing_weight_norm() {
    let d = Device::flex();
    let data = images(6, 8);
    let net = Network::init(&Preset::Lenet5Maxout.spec(), 3, &d).unwrap();
    let rel = Contribution { ties: TiePolicy::Split }.score(&net, &data, 4).unwrap();
    let idx: Vec<usize> = (0..data.len()).collect();
    let (_, traces) = net.forward_traced(batch(&data, &idx, &net.spec().input, &Normalization::default(), &d).0);
    let [n, units, k] = traces[0].pieces.dims();
    let pieces: Vec<f32> = traces[0].pieces.to_data().iter::<f32>().collect();
    let fc2 = net.spec().layers.iter().position(|l| l.name() == Some("fc2")).unwrap();
    let weight = net.params()[fc2].t2("weight");
    let fc2: Vec<f32> = weight.to_data().iter::<f32>().collect();
    for u in 0..units {
        let mean_abs = (0..n)
            .map(|c| {
                let row = &pieces[(c * units + u) * k..][..k];
                f64::from(row.iter().copied().fold(f32::NEG_INFINITY, f32::max).abs())
            })
            .sum::<f64>()
            / n as f64;
        let norm = (0..10)
            .map(|o| f64::from(fc2[o * units + u]).powi(2))
            .sum::<f64>()
            .sqrt();
        let total: f64 = rel.layers[0].scores[u].iter().sum();
        assert!(
            (total - mean_abs * norm).abs() < 1e-5 * (1.0 + total),
            "unit {u}: {total} vs {}",
            mean_abs * norm
        );
    }
}

#[test]
fn the_units_policy_needs_scores_that_rank_units_and_a_fraction_below_one() {
    let d = Device::flex();
    let spec = Preset::Lenet5Maxout.spec();
    let net = Network::init(&spec, 3, &d).unwrap();
    let data = images(2, 1);
    let argmax = ArgmaxFrequency { ties: TiePolicy::Split }
        .score(&net, &data, 2)
        .unwrap();
    let e = select(&argmax, &spec, Policy::Units { fraction: 0.5 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("contribution"), "{e}");
    let rel = Contribution { ties: TiePolicy::Split }.score(&net, &data, 2).unwrap();
    let e = select(&rel, &spec, Policy::Units { fraction: 1.0 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("fraction"), "{e}");
    let plan = select(&rel, &spec, Policy::Units { fraction: 0.999 }).unwrap();
    assert_eq!(
        plan.layers[0].keep.iter().filter(|k| !k.is_empty()).count(),
        1,
        "one unit always stays"
    );
}

#[test]
fn regression_survivors_go_to_their_own_rows_not_v_plus_neuron() {
    // The original code wrote survivor `neuron` of unit `v` to row `v + neuron` instead of
    // `v * k_new + neuron`. Rows are tagged with their index, so misplacement shows.
    let d = Device::flex();
    let spec = Preset::Lenet5Maxout.spec();
    let tagged = edit(&Network::init(&spec, 1, &d).unwrap(), 5, |w, dims, b| {
        for (r, row) in w.chunks_mut(dims[1]).enumerate() {
            row.fill(r as f32);
            b[r] = r as f32;
        }
    });
    let plan = plan_keeping(&spec, |_, _, j| j != 0);
    let pruned = apply_checked(&tagged, &plan);
    let (bias, weight) = (pruned.params()[5].t1("bias"), pruned.params()[5].t2("weight"));
    let b: Vec<f32> = bias.to_data().iter::<f32>().collect();
    let expected: Vec<f32> = (0..125).flat_map(|u| (1..4).map(move |j| (u * 4 + j) as f32)).collect();
    assert_eq!(b, expected);
    let w: Vec<f32> = weight.to_data().iter::<f32>().step_by(800).collect();
    assert_eq!(w, expected);
}

#[test]
fn regression_relevance_after_a_prune_has_the_new_piece_counts() {
    let d = Device::flex();
    let data = images(3, 2);
    let spec = conv_maxout_spec();
    let net = Network::init(&spec, 3, &d).unwrap();
    let plan = plan_keeping(&spec, |_, u, j| j + 1 < 4 || u % 2 == 0);
    let pruned = apply_checked(&net, &plan);
    let rel = ArgmaxFrequency { ties: TiePolicy::Split }
        .score(&pruned, &data, 3)
        .unwrap();
    for l in &rel.layers {
        assert_eq!(
            l.counts.iter().map(Vec::len).collect::<Vec<_>>(),
            maxout_pieces(pruned.spec(), l.layer).counts()
        );
        // every contest credits exactly one unit of win
        for unit in &l.counts {
            assert!((unit.iter().sum::<f64>() - l.contests as f64).abs() < 1e-6);
        }
    }
}

#[test]
fn regression_relevance_is_counted_without_dropout() {
    // Dropout 0.99 before the maxout layer: were it applied while counting, most pieces would
    // be 0 and tie. Counted in evaluation mode, the counts equal those of the same weights with
    // the dropout layer removed, and the traced forward's arg-max of that network, exactly.
    // (The linear network: its pieces do not tie, so one arg-max per contest is the whole count.)
    let d = Device::flex();
    let mut spec = linear_lenet5_maxout();
    let dropout = spec
        .layers
        .iter()
        .position(|l| matches!(l, LayerSpec::Dropout(Dropout { .. })))
        .unwrap();
    spec.layers[dropout] = LayerSpec::Dropout(Dropout { p: 0.99 });
    let net = Network::init(&spec, 8, &d).unwrap();
    spec.layers.remove(dropout);
    // The same tensors, without the stored spec that names the network with dropout.
    let bytes = net.to_safetensors();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap().tensors();
    let weights = safetensors::serialize(tensors, None).unwrap();
    let without = Network::from_safetensors(&spec, &weights, "no dropout", &d).unwrap();
    let data = images(4, 4);
    let crit = ArgmaxFrequency { ties: TiePolicy::Split };
    let rel = crit.score(&net, &data, 4).unwrap();
    let (_, traces) = without.forward_traced(batch(&data, &[0, 1, 2, 3], &spec.input, &Normalization::default(), &d).0);
    let mut manual = vec![vec![0.0; 4]; 125];
    for (i, w) in traces[0].winners().into_data().iter::<i64>().enumerate() {
        manual[i % 125][w as usize] += 1.0;
    }
    assert_eq!(rel.layers[0].counts, manual, "counted with dropout on");
    assert_eq!(
        rel.layers[0].counts,
        crit.score(&without, &data, 4).unwrap().layers[0].counts
    );
    assert_eq!(
        rel,
        crit.score(&net, &data, 2).unwrap(),
        "the batch size changed the counts"
    );
}

#[test]
fn regression_ties_are_not_credited_to_piece_zero() {
    let d = Device::flex();
    let spec = Preset::Lenet5Maxout.spec();
    let flat = edit(&Network::init(&spec, 1, &d).unwrap(), 5, |w, _, b| {
        w.fill(0.0);
        b.fill(0.0);
    });
    let data = images(2, 1);
    let split = ArgmaxFrequency { ties: TiePolicy::Split }
        .score(&flat, &data, 2)
        .unwrap();
    assert!(
        split.layers[0]
            .scores
            .iter()
            .all(|u| u.iter().all(|&s| (s - 0.25).abs() < 1e-12))
    );
    let nobody = ArgmaxFrequency {
        ties: TiePolicy::Nobody,
    }
    .score(&flat, &data, 2)
    .unwrap();
    assert!(nobody.layers[0].scores.iter().flatten().all(|&s| s == 0.0));
}

#[test]
fn regression_any_k_prunes_down_to_one() {
    let d = Device::flex();
    let mut spec = Preset::Lenet5Maxout.spec();
    spec.layers[5] = LayerSpec::Dense(Dense {
        name: "fc1".into(),
        outputs: 70,
    });
    let m = spec.maxout_layers()[0];
    spec.layers[m] = LayerSpec::Maxout(Maxout {
        pieces: Pieces::Uniform { units: 10, k: 7 },
    });
    let mut net = Network::init(&spec, 1, &d).unwrap();
    let data = images(8, 6);
    for k in (1..7).rev() {
        let rel = ArgmaxFrequency { ties: TiePolicy::Split }
            .score(&net, &data, 8)
            .unwrap();
        net = apply_checked(&net, &select(&rel, net.spec(), Policy::PerUnit { n: 1 }).unwrap());
        assert_eq!(maxout_pieces(net.spec(), m), Pieces::Uniform { units: 10, k });
    }
}

#[test]
fn plans_for_another_spec_or_out_of_range_are_rejected() {
    let d = Device::flex();
    let spec = Preset::Lenet5Maxout.spec();
    let net = Network::init(&spec, 1, &d).unwrap();
    let mut plan = plan_keeping(&spec, |_, _, j| j > 0);
    plan.layers[0].keep[3] = vec![1, 4];
    let e = apply(&net, &plan).unwrap_err().to_string();
    assert!(e.contains("unit 3") && e.contains("piece 4 out of range 0..4"), "{e}");
    let other = plan_keeping(&Preset::SeedLenet.spec(), |_, _, _| true);
    assert!(apply(&net, &other).unwrap_err().to_string().contains("another spec"));
    let rel = RandomScores { seed: 1 }.score(&net, &images(1, 1), 1).unwrap();
    assert!(
        select(&rel, &Preset::SeedLenet.spec(), Policy::PerUnit { n: 1 })
            .unwrap_err()
            .to_string()
            .contains("another spec")
    );
}

#[test]
fn regression_a_layer_listed_twice_or_short_scores_are_refused() {
    // Seen: a plan naming the maxout layer twice panicked in `prune apply`; a relevance row
    // with fewer scores than its unit has pieces silently changed the plan.
    let d = Device::flex();
    let spec = Preset::Lenet5Maxout.spec();
    let net = Network::init(&spec, 1, &d).unwrap();
    let mut plan = plan_keeping(&spec, |_, _, j| j > 0);
    plan.layers.push(plan.layers[0].clone());
    let e = apply(&net, &plan).unwrap_err().to_string();
    assert!(e.contains("listed twice"), "{e}");
    let rel = RandomScores { seed: 1 }.score(&net, &images(1, 1), 1).unwrap();
    let mut short = rel.clone();
    short.layers[0].scores[2].pop();
    let e = select(&short, &spec, Policy::PerUnit { n: 1 }).unwrap_err().to_string();
    assert!(
        e.contains("125 units with 4 pieces each") && e.contains("[4, 4, 3, 4"),
        "{e}"
    );
    let mut twice = rel.clone();
    twice.layers.push(rel.layers[0].clone());
    let e = select(&twice, &spec, Policy::PerUnit { n: 1 }).unwrap_err().to_string();
    assert!(e.contains("layers [8, 8]: expected each once, in spec order"), "{e}");
}

#[test]
fn threshold_and_global_policies_make_ragged_units() {
    let d = Device::flex();
    let spec = Preset::Lenet5Maxout.spec();
    let net = Network::init(&spec, 1, &d).unwrap();
    let data = images(16, 2);
    let rel = ArgmaxFrequency { ties: TiePolicy::Split }
        .score(&net, &data, 16)
        .unwrap();
    for policy in [Policy::Threshold { tau: 0.2 }, Policy::Global { fraction: 0.5 }] {
        let pruned = apply_checked(&net, &select(&rel, &spec, policy).unwrap());
        let p = maxout_pieces(pruned.spec(), spec.maxout_layers()[0]);
        assert_eq!(p.units(), 125);
        assert!(
            !p.is_uniform() && p.counts().iter().all(|&c| c >= 1),
            "{policy:?}: {p:?}"
        );
    }
}

/// Runs a schedule on the flex device, observed by nobody.
fn schedule_on(
    run: &crate::train::RunDir,
    out: &std::path::Path,
    pruner: &dyn super::pruner::Pruner,
    data: &crate::data::dataset::Dataset,
    resume: bool,
) -> crate::error::Result<super::schedule::ScheduleReport> {
    let device = Device::flex();
    super::schedule::run_schedule(run, out, pruner, data, resume, &device, &mut crate::progress::Silent)
}

#[test]
fn conv_maxout_network_prunes_end_to_end_and_resumes() {
    use crate::data::dataset::{Dataset, DatasetName};
    use crate::prune::pruner::Retrain;
    use crate::prune::schedule::ScheduleConfig;
    use crate::train::RunDir;
    use crate::train::{Distillation, Splits, TrainConfig, train};

    let full = Dataset::embedded().unwrap();
    let first = |s: &Split, n: usize| s.subset(&(0..n).collect::<Vec<_>>());
    let data = Dataset {
        name: DatasetName::Embedded,
        classes: 10,
        train: first(&full.train, 600),
        test: first(&full.test, 200),
        validation: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        dataset: crate::data::dataset::DatasetName::Embedded,
        epochs: 1,
        val: 100,
        ..TrainConfig::default()
    };
    let net = Network::init(&conv_maxout_spec(), 1, &Device::flex()).unwrap();
    let run = RunDir::create(&tmp.path().join("base"), &net, &config).unwrap();
    train(
        &run,
        &Splits::new(&data, &config).unwrap(),
        &burn::tensor::Device::flex(),
        &mut crate::progress::Silent,
    )
    .unwrap();
    let schedule = ScheduleConfig::paper(
        None,
        Some(1),
        Retrain {
            retrain_epochs: 1,
            tolerance: 100.0,
            val: 100,
            dataset: crate::data::dataset::DatasetName::Embedded,
            ..Retrain::default()
        },
    );
    let out = tmp.path().join("pruned");
    let report = schedule_on(&run, &out, &schedule, &data, false).unwrap();
    assert_eq!(report.rows.len(), 2);
    assert_eq!(report.rows[1].pieces, vec!["3".to_string(), "1..3".to_string()]);
    assert!(report.rows[1].params < report.rows[0].params);
    let step = RunDir::open(&out.join("step-01")).unwrap();
    assert_eq!(step.checkpoint(&burn::tensor::Device::flex()).unwrap().epoch, 1);
    for f in ["plan.json", "relevance.json", "step.json", "before.json"] {
        assert!(out.join("step-01").join(f).exists(), "{f}");
    }
    for f in [
        "report.md",
        "report.json",
        "accuracy-vs-params.svg",
        "relevance-step-01-0.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // Without --resume an existing schedule is refused; with it, finished steps are reused.
    assert!(schedule_on(&run, &out, &schedule, &data, false).is_err());
    let again = schedule_on(&run, &out, &schedule, &data, true).unwrap();
    assert_eq!(
        again.rows[1..],
        report.rows[1..],
        "finished steps are read back, not recomputed"
    );
    // Retraining with distillation names the starting network as the teacher, by absolute path.
    let mut distilled = schedule.clone();
    distilled.retrain.distill = Some(Distillation {
        alpha: 0.5,
        temperature: 4.0,
    });
    let out = tmp.path().join("distilled");
    let report = schedule_on(&run, &out, &distilled, &data, false).unwrap();
    assert_eq!(report.rows.len(), 2);
    let teacher = RunDir::open(&out.join("step-01"))
        .unwrap()
        .config()
        .unwrap()
        .teacher
        .unwrap();
    assert_eq!(std::path::Path::new(&teacher.run), run.path().canonicalize().unwrap());
    assert_eq!((teacher.alpha, teacher.temperature), (0.5, 4.0));
    // A retraining learning rate replaces the starting run's; a bad one is refused up front.
    let mut slower = schedule.clone();
    slower.retrain.retrain_lr = Some(0.002);
    let out = tmp.path().join("slower");
    schedule_on(&run, &out, &slower, &data, false).unwrap();
    let step = RunDir::open(&out.join("step-01")).unwrap().config().unwrap();
    assert_eq!((step.base_lr, config.base_lr), (0.002, 0.01));
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("learning rate 0.002")
    );
    slower.retrain.retrain_lr = Some(-1.0);
    let e = schedule_on(&run, &tmp.path().join("bad-lr"), &slower, &data, false);
    assert!(
        e.unwrap_err()
            .to_string()
            .contains("retraining learning rate: expected a positive number, found -1")
    );
}

/// A plan removing units `gone` of the plain unit layer `layer` of `spec`.
fn plain_plan(spec: &ArchSpec, layer: usize, gone: &[usize]) -> PrunePlan {
    let units = spec.unit_pieces(layer).unwrap().units();
    PrunePlan {
        format_version: PLAN_FORMAT_VERSION,
        spec_fingerprint: spec.fingerprint(),
        layers: vec![LayerPlan {
            layer,
            keep: (0..units)
                .map(|u| if gone.contains(&u) { vec![] } else { vec![0] })
                .collect(),
        }],
    }
}

#[test]
fn removing_plain_units_equals_zeroing_their_channels() {
    // lenet5: conv1 feeds conv2 through a pool, conv2 feeds fc1 through a pool and a flatten,
    // fc1 feeds fc2 through a relu. Zeroing a unit's filter (or row) and bias zeroes its channel,
    // which is what removing it does.
    let d = Device::flex();
    let data = images(4, 5);
    let spec = Preset::Lenet5.spec();
    assert_eq!(spec.unit_layers(), vec![0, 2, 5]);
    assert_eq!(spec.default_unit_layers(), vec![0, 2, 5]);
    let net = Network::init(&spec, 6, &d).unwrap();
    for (layer, gone) in [(0, vec![0, 7, 19]), (2, vec![3, 49]), (5, vec![0, 250, 499])] {
        let pruned = apply_checked(&net, &plain_plan(&spec, layer, &gone));
        let zeroed = edit(&net, layer, |w, dims, b| {
            let per_unit = w.len() / dims[0];
            for &u in &gone {
                w[u * per_unit..(u + 1) * per_unit].fill(0.0);
                b[u] = 0.0;
            }
        });
        assert_close(&outputs(&zeroed, &data), &outputs(&pruned, &data), 1e-6);
        let units = spec.unit_pieces(layer).unwrap().units();
        assert_eq!(pruned.spec().unit_pieces(layer).unwrap().units(), units - gone.len());
        // The consumer lost exactly the inputs that read the removed units.
        let consumer = spec.consumer_of(layer).unwrap();
        let before = net.infos()[consumer].params;
        let after = pruned.infos()[consumer].params;
        let per_input = match &spec.layers[consumer] {
            LayerSpec::Conv2d(Conv2d { filters, kernel, .. }) => filters * kernel * kernel,
            LayerSpec::Dense(Dense { outputs, .. }) => outputs * net.infos()[consumer].input.numel() / units,
            _ => unreachable!("consumers are conv or dense layers"),
        };
        assert_eq!(before - after, gone.len() * per_input, "layer {layer}");
    }
}

#[test]
fn plain_unit_layers_are_scored_and_plans_for_them_are_checked() {
    let d = Device::flex();
    let data = images(3, 2);
    let spec = Preset::Lenet5.spec();
    let net = Network::init(&spec, 1, &d).unwrap();
    // L1 of each filter, bias excluded.
    let rel = crate::relevance::criterion(crate::relevance::CriterionKind::L1Norm, TiePolicy::Split, 1)
        .score_layers(
            &net,
            Pass {
                layers: &[0, 2],
                data: &data,
                batch: 2,
                norm: &Normalization::default(),
            },
            &mut crate::progress::Silent,
        )
        .unwrap();
    let weight = net.params()[2].t4("weight");
    let w: Vec<f32> = weight.to_data().iter::<f32>().collect();
    let per = w.len() / 50;
    let l1: f64 = w[7 * per..8 * per].iter().map(|v| f64::from(v.abs())).sum();
    assert!((rel.layers[1].scores[7][0] - l1).abs() < 1e-4 * l1);
    assert_eq!(
        (rel.layers[0].producer.as_str(), rel.layers[1].producer.as_str()),
        ("conv1", "conv2")
    );
    // Traced scores of a plain layer: one piece per unit, one contest per position.
    let c = Contribution { ties: TiePolicy::Split }
        .score_layers(
            &net,
            Pass {
                layers: &[2],
                data: &data,
                batch: 2,
                norm: &Normalization::default(),
            },
            &mut crate::progress::Silent,
        )
        .unwrap();
    assert_eq!(c.layers[0].contests, 3 * 8 * 8);
    assert!(c.layers[0].scores.iter().all(|u| u.len() == 1 && u[0] > 0.0));
    let plan = select(&c, &spec, Policy::Units { fraction: 0.5 }).unwrap();
    assert_eq!(apply_checked(&net, &plan).spec().unit_pieces(2).unwrap().units(), 25);
    // A plain-layer plan for another spec, or naming a layer without units, is refused.
    let other = Preset::Lenet5.spec().scaled(0.5, spec.input, 10).unwrap();
    let e = apply(&net, &plain_plan(&other, 0, &[1])).unwrap_err().to_string();
    assert!(e.contains("another spec"), "{e}");
    let mut pool = plain_plan(&spec, 0, &[1]);
    pool.layers[0].layer = 1;
    let e = apply(&net, &pool).unwrap_err().to_string();
    assert!(
        e.contains("layer 1: expected a maxout layer or a conv or dense layer"),
        "{e}"
    );
    // The classifier has no consumer, so it has no units to remove.
    let e = ArgmaxFrequency { ties: TiePolicy::Split }
        .score_layers(
            &net,
            Pass {
                layers: &[7],
                data: &data,
                batch: 2,
                norm: &Normalization::default(),
            },
            &mut crate::progress::Silent,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer 7 of lenet5 is not a unit layer"), "{e}");
    // Scores for a layer subset are checked like any: not for another spec.
    assert!(select(&c, &other, Policy::Units { fraction: 0.5 }).is_err());
}

/// conv 6@3x3 (padding 1), relu, then `pool`, then a dense classifier: the conv's channels are
/// units of one piece read by the classifier through the pooling.
fn pooled_spec(pool: Vec<LayerSpec>) -> ArchSpec {
    let mut layers = vec![LayerSpec::conv2d("c1", 6, 3, 1, 1), LayerSpec::relu()];
    layers.extend(pool);
    layers.push(LayerSpec::dense("fc", 10));
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "pooled".into(),
        input: InputShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        layers,
        init: Init::He,
    }
}

#[test]
fn removing_units_through_average_and_global_average_pooling_equals_zeroing_them() {
    let d = Device::flex();
    let data = images(4, 11);
    for pool in [
        vec![LayerSpec::global_avg_pool()],
        vec![LayerSpec::avg_pool(3, 2, 1), LayerSpec::flatten()],
    ] {
        let spec = pooled_spec(pool);
        assert_eq!(spec.unit_layers(), vec![0], "{}", spec.name);
        let net = Network::init(&spec, 5, &d).unwrap();
        let removed = [1usize, 4];
        let plan = PrunePlan {
            format_version: PLAN_FORMAT_VERSION,
            spec_fingerprint: spec.fingerprint(),
            layers: vec![LayerPlan {
                layer: 0,
                keep: (0..6)
                    .map(|u| if removed.contains(&u) { vec![] } else { vec![0] })
                    .collect(),
            }],
        };
        let pruned = apply_checked(&net, &plan);
        // A zeroed filter with a zero bias outputs relu(0) = 0 everywhere: its pooled means are 0.
        let zeroed = edit(&net, 0, |w, dims, b| {
            let per = dims[1..].iter().product::<usize>();
            for &u in &removed {
                w[u * per..(u + 1) * per].iter_mut().for_each(|x| *x = 0.0);
                b[u] = 0.0;
            }
        });
        assert_close(&outputs(&pruned, &data), &outputs(&zeroed, &data), 1e-6);
    }
}

#[test]
fn average_pooling_equals_hand_computed_window_and_global_means() {
    use burn::tensor::{Tensor, TensorData};
    let d = Device::flex();
    let mut rng = SplitMix64::new(3);
    let v: Vec<f32> = (0..2 * 3 * 5 * 5).map(|_| rng.next_f32() - 0.5).collect();
    let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [2, 3, 5, 5]), &d);
    // Global: each channel's mean, as a vector.
    let spec = ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "gap".into(),
        input: InputShape {
            channels: 3,
            height: 5,
            width: 5,
        },
        layers: vec![LayerSpec::global_avg_pool()],
        init: Init::Xavier,
    };
    let net = Network::init(&spec, 1, &d).unwrap();
    let got: Vec<f32> = net.forward(x.clone()).into_data().iter::<f32>().collect();
    let want: Vec<f32> = v.chunks(25).map(|c| c.iter().sum::<f32>() / 25.0).collect();
    assert_close(&got, &want, 1e-6);
    // Windowed, with padding counted (PyTorch's default): burn's adaptive pooling is not it, so
    // compare with the windows summed by hand.
    let mut spec = spec;
    spec.layers = vec![LayerSpec::avg_pool(3, 2, 1), LayerSpec::flatten()];
    let got: Vec<f32> = Network::init(&spec, 1, &d)
        .unwrap()
        .forward(x)
        .into_data()
        .iter::<f32>()
        .collect();
    let mut want = Vec::new();
    for plane in v.chunks(25) {
        for oy in 0..3 {
            for ox in 0..3 {
                let mut sum = 0.0;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (y, x) = ((2 * oy + ky) as i64 - 1, (2 * ox + kx) as i64 - 1);
                        if (0..5).contains(&y) && (0..5).contains(&x) {
                            sum += plane[(y * 5 + x) as usize];
                        }
                    }
                }
                want.push(sum / 9.0);
            }
        }
    }
    assert_close(&got, &want, 1e-6);
}

/// `net` with every batch norm's tensors drawn at random (running variances positive), so
/// folding and slicing them is tested on more than identities.
pub(crate) fn with_random_batch_norms(net: &Network, seed: u64) -> Network {
    let mut rng = SplitMix64::new(seed);
    let d = net.device().clone();
    let params = net
        .spec()
        .layers
        .iter()
        .zip(net.params())
        .map(|(l, p)| match l {
            LayerSpec::BatchNorm(_) => p.clone().map(|role, t| {
                let n = t.dims()[0];
                let v = (0..n)
                    .map(|_| match role {
                        "running_var" => 0.2 + rng.next_f32(),
                        _ => 2.0 * rng.next_f32() - 1.0,
                    })
                    .collect();
                ParamTensor::from_values(v, &[n], &d)
            }),
            _ => p.clone(),
        })
        .collect();
    Network::from_params(net.spec(), params, &d).unwrap()
}

/// conv 6 (bn, relu, 3 maxout units of k=2) then conv 4 (bn, relu), global average pooling, a
/// batch norm of the 4 features and a dense classifier: batch norms before a maxout, after a
/// plain unit layer, and after global average pooling.
pub(crate) fn batch_norm_spec() -> ArchSpec {
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "bn".into(),
        input: InputShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        layers: vec![
            LayerSpec::conv2d("c1", 6, 3, 2, 1),
            LayerSpec::batch_norm("bn1"),
            LayerSpec::relu(),
            LayerSpec::maxout(Pieces::Uniform { units: 3, k: 2 }),
            LayerSpec::conv2d("c2", 4, 3, 2, 1),
            LayerSpec::batch_norm("bn2"),
            LayerSpec::relu(),
            LayerSpec::global_avg_pool(),
            LayerSpec::batch_norm("bn3"),
            LayerSpec::dense("fc", 10),
        ],
        init: Init::He,
    }
}

#[test]
fn removing_units_through_batch_norm_equals_zeroing_what_the_consumer_reads_from_them() {
    let d = Device::flex();
    let data = images(4, 12);
    let spec = batch_norm_spec();
    assert_eq!(spec.unit_layers(), vec![3, 4]);
    let net = with_random_batch_norms(&Network::init(&spec, 2, &d).unwrap(), 3);
    // Maxout unit 1 of 3 (c1's channels 2 and 3, and bn1's) goes: c2 reads channel 1 no more.
    let plan = plan_keeping(&spec, |_, u, _| u != 1);
    let pruned = apply_checked(&net, &plan);
    assert_eq!(pruned.params()[1].t1("running_mean").dims(), [4]);
    let zeroed = edit(&net, 4, |w, dims, _| {
        let per_channel = dims[2] * dims[3];
        for (i, v) in w.iter_mut().enumerate() {
            if (i / per_channel) % dims[1] == 1 {
                *v = 0.0;
            }
        }
    });
    assert_close(&outputs(&zeroed, &data), &outputs(&pruned, &data), 1e-6);
    // Plain units 0 and 2 of c2 go (and their entries in bn2 and, after the pooling, bn3): the
    // classifier reads those features no more.
    let pruned = apply_checked(&net, &plain_plan(&spec, 4, &[0, 2]));
    assert_eq!(pruned.params()[8].t1("running_var").dims(), [2]);
    let zeroed = edit(&net, 9, |w, dims, _| {
        for (i, v) in w.iter_mut().enumerate() {
            if [0, 2].contains(&(i % dims[1])) {
                *v = 0.0;
            }
        }
    });
    assert_close(&outputs(&zeroed, &data), &outputs(&pruned, &data), 1e-6);
}

#[test]
fn folding_batch_norm_predicts_as_the_network_within_1e_4() {
    let d = Device::flex();
    let data = images(6, 4);
    let mut spec = batch_norm_spec();
    // bn3 follows a pooling layer, which cannot take it in: folding refuses, naming it.
    let net = with_random_batch_norms(&Network::init(&spec, 5, &d).unwrap(), 8);
    let e = net.fold_batch_norm().unwrap_err().to_string();
    assert!(e.contains("layer 8 (batch-norm 'bn3') follows global-avg-pool"), "{e}");
    spec.layers.remove(8);
    let net = with_random_batch_norms(&Network::init(&spec, 5, &d).unwrap(), 8);
    let folded = net.fold_batch_norm().unwrap();
    assert!(
        folded
            .spec()
            .layers
            .iter()
            .all(|l| !matches!(l, LayerSpec::BatchNorm(_)))
    );
    assert_eq!(folded.num_params(), net.num_params() - 2 * (6 + 4));
    assert_close(&outputs(&folded, &data), &outputs(&net, &data), 1e-4);
    // Weight norms are of what a piece computes: a batch norm after its producer scales them.
    let norms = |n: &Network| {
        let rel = crate::relevance::criterion(crate::relevance::CriterionKind::WeightNorm, TiePolicy::Split, 1)
            .score_layers(
                n,
                Pass {
                    layers: &n.spec().maxout_layers(),
                    data: &data,
                    batch: 2,
                    norm: &Normalization::default(),
                },
                &mut crate::progress::Silent,
            )
            .unwrap();
        rel.layers[0].scores.concat()
    };
    let (with_bn, plain) = (norms(&net), norms(&folded));
    assert_close(
        &with_bn.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &plain.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        1e-5,
    );
    assert_ne!(with_bn, norms(&Network::init(&spec, 5, &d).unwrap()));
}

#[test]
fn the_global_policy_ranks_pieces_across_layers() {
    // conv-maxout's two maxout layers: 5 units of k=4 (20 pieces) and counts [4, 1, 3, 1] (9
    // pieces). Whichever layer scores lower loses the whole budget, floor(fraction x 29) pieces,
    // as long as it has that many to spare; the other loses none.
    let d = Device::flex();
    let spec = conv_maxout_spec();
    let net = Network::init(&spec, 4, &d).unwrap();
    let scored = RandomScores { seed: 9 }.score(&net, &images(1, 3), 1).unwrap();
    assert_eq!(scored.layers.len(), 2);
    for (low, fraction, budget) in [(1, 0.15, 4), (0, 0.5, 14)] {
        let mut rel = scored.clone();
        for (i, l) in rel.layers.iter_mut().enumerate() {
            for (u, s) in l.scores.iter_mut().enumerate() {
                for (j, v) in s.iter_mut().enumerate() {
                    *v = (u * 4 + j) as f64 / 100.0 + if i == low { 0.0 } else { 1.0 };
                }
            }
        }
        let plan = select(&rel, &spec, Policy::Global { fraction }).unwrap();
        let removed: Vec<usize> = plan
            .layers
            .iter()
            .zip(&rel.layers)
            .map(|(p, l)| {
                let before: usize = l.scores.iter().map(Vec::len).sum();
                before - p.keep.iter().map(Vec::len).sum::<usize>()
            })
            .collect();
        let mut expected = [0, 0];
        expected[low] = budget;
        assert_eq!(removed, expected, "fraction {fraction}");
        assert!(plan.layers.iter().all(|p| p.keep.iter().all(|k| !k.is_empty())));
    }
}
