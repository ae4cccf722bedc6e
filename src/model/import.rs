//! Pretrained weights from a safetensors file (for example a PyTorch `state_dict` written by
//! `safetensors.torch.save_file(model.state_dict(), "weights.safetensors")`) into a network
//! built from an [`ArchSpec`].
//!
//! [`Names`] says which tensor feeds which layer: PyTorch's `state_dict` names of the spec's own
//! layers (`<layer>.weight`, `<layer>.bias`), or torchvision's VGG names (`features.<i>.*` feed
//! the spec's conv layers in the order of `i`, `classifier.<i>.*` its dense layers).
//!
//! Every parameter of the spec must come from the file with the spec's shape, and every tensor
//! of the file must feed a parameter (batch norm's running statistics included; its
//! `num_batches_tracked` is skipped): a missing or unused tensor, another shape, a dtype other
//! than F32, F16 or BF16 (the last two are widened to f32, exactly), and a NaN or infinite
//! value are all errors, listed together. Only the layers named in
//! [`allow_fresh`](ImportOptions::allow_fresh) start from a fresh initialisation instead (a new
//! classifier, say); the file's tensors for them are not read.
//!
//! With torchvision names one conversion is made: a dense weight whose inputs are k times the
//! spec's (a dense layer that now reads maxout units instead of the k-times-wider ReLU layer it
//! was trained on) gets each unit's k columns summed, which reproduces the original layer
//! exactly when a unit's pieces agree. `vgg16-maxout` keeps the ReLU that follows torchvision's
//! fc6 and fc7 before its maxout layers, so a copied fc6 or fc7 row is still a rectified feature
//! of the pretrained network.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::{Device, Tensor, TensorData};
use clap::ValueEnum;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::layers::Kind;
use crate::model::network::{Network, ParamMapper, f32_values, non_finite};
use crate::model::spec::{ArchSpec, LayerSpec};

/// How the file's tensor names map to the spec's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Names {
    /// PyTorch `state_dict` names of the spec's layers: `<layer>.weight`, `<layer>.bias`.
    StateDict,
    /// torchvision's VGG names: `features.<i>.*` feed the conv layers and `classifier.<i>.*` the
    /// dense layers, each in the order of `i`.
    Torchvision,
}

/// What to import and what may start fresh.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions<'a> {
    /// How the file's tensors are named.
    pub names: Names,
    /// Layers (by name) that start from a fresh initialisation instead of the file.
    pub allow_fresh: &'a [String],
    /// Seed of the fresh initialisation.
    pub seed: u64,
}

/// What happened to each parameter tensor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Copied as they are: (our name, the file's name).
    pub copied: Vec<(String, String)>,
    /// Copied after widening to f32: (our name, the file's name, the file's dtype).
    pub converted: Vec<(String, String, String)>,
    /// Dense weights whose inputs were summed in groups: (our name, the file's name, group size).
    pub summed: Vec<(String, String, usize)>,
    /// Started from a fresh initialisation, as `allow_fresh` asked.
    pub fresh: Vec<String>,
}

/// Builds `spec`'s network and fills it from the safetensors `bytes` (see the module's
/// documentation for the rules); `source` names the file in errors. The error lists every
/// mismatch at once.
///
/// ```
/// use burn::tensor::Device;
/// use maxprune::model::import::{ImportOptions, Names, import};
/// use maxprune::model::network::Network;
/// use maxprune::model::presets::Preset;
///
/// let spec = Preset::SeedLenet.spec();
/// let original = Network::init(&spec, 7, &Device::flex()).unwrap();
/// let options = ImportOptions { names: Names::StateDict, allow_fresh: &[], seed: 1 };
/// let (net, report) =
///     import(&spec, &original.to_safetensors(), "w.safetensors", options, &Device::flex()).unwrap();
/// assert_eq!(net.to_safetensors(), original.to_safetensors());
/// assert!(report.fresh.is_empty());
/// ```
pub fn import(
    spec: &ArchSpec,
    bytes: &[u8],
    source: &str,
    options: ImportOptions,
    device: &Device,
) -> Result<(Network, ImportReport)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
        path: source.into(),
        what: "safetensors file".into(),
        expected: "a valid safetensors header and data".into(),
        found: e.to_string(),
    })?;
    let layers: Vec<&str> = spec.layers.iter().filter_map(|l| l.name()).collect();
    if let Some(unknown) = options.allow_fresh.iter().find(|n| !layers.contains(&n.as_str())) {
        return Err(Error::invalid(
            "fresh layers",
            format!(
                "'{unknown}': expected the name of a conv or dense layer of {} ({})",
                spec.name,
                layers.join(", ")
            ),
        ));
    }
    let prefixes: BTreeMap<String, String> = match options.names {
        Names::StateDict => layers.iter().map(|l| (l.to_string(), l.to_string())).collect(),
        Names::Torchvision => torchvision_prefixes(spec, &st, source)?,
    };
    let mut fill = Fill {
        st: &st,
        prefixes,
        options,
        device,
        unused: st.names().into_iter().map(String::from).collect(),
        problems: Vec::new(),
        report: ImportReport::default(),
    };
    let net = Network::init(spec, options.seed, device)?.map_params(&mut fill);
    for prefix in options.allow_fresh.iter().filter_map(|l| fill.prefixes.get(l)) {
        fill.unused.retain(|n| !n.starts_with(&format!("{prefix}.")));
    }
    // PyTorch's batch norm counts its training batches in `num_batches_tracked`, which only a
    // momentum of `None` reads; maxprune's batch norm has a fixed momentum.
    let norms: Vec<&str> = spec
        .layers
        .iter()
        .filter(|l| matches!(l, crate::model::spec::LayerSpec::BatchNorm(_)))
        .filter_map(|l| fill.prefixes.get(l.name()?).map(String::as_str))
        .collect();
    fill.unused.retain(|n| {
        !n.strip_suffix(".num_batches_tracked")
            .is_some_and(|p| norms.contains(&p))
    });
    let mut problems = fill.problems;
    problems.extend(
        fill.unused
            .iter()
            .map(|n| format!("{n}: not a parameter of {} (unused)", spec.name)),
    );
    if !problems.is_empty() {
        return Err(Error::Format {
            path: source.into(),
            what: format!("tensors for {}", spec.name),
            expected: format!(
                "every parameter by its {} name, with the spec's shape, dtype F32, F16 or BF16 and finite \
                 values (or its layer named as fresh)",
                match options.names {
                    Names::StateDict => "state_dict",
                    Names::Torchvision => "torchvision",
                }
            ),
            found: format!("{} mismatch(es):\n  {}", problems.len(), problems.join("\n  ")),
        });
    }
    Ok((net, fill.report))
}

/// Our layer name -> the file's tensor prefix, for torchvision's VGG names.
fn torchvision_prefixes(spec: &ArchSpec, st: &SafeTensors, source: &str) -> Result<BTreeMap<String, String>> {
    // Indices of `<prefix><i>.weight`, in numeric order.
    let indices = |prefix: &str| -> Vec<String> {
        let mut found: Vec<usize> = st
            .names()
            .iter()
            .filter_map(|n| n.strip_prefix(prefix)?.strip_suffix(".weight")?.parse().ok())
            .collect();
        found.sort_unstable();
        found.into_iter().map(|i| format!("{prefix}{i}")).collect()
    };
    let (features, classifier) = (indices("features."), indices("classifier."));
    let count = || {
        format!(
            "{} features and {} classifier weights",
            features.len(),
            classifier.len()
        )
    };
    let mut names = BTreeMap::new();
    let (mut convs, mut denses) = (features.iter(), classifier.iter());
    for layer in &spec.layers {
        let (ours, theirs) = match layer {
            // vgg16_bn's features interleave each conv with its batch norm, as the spec does.
            LayerSpec::Conv2d(c) => (&c.name, convs.next()),
            LayerSpec::BatchNorm(b) => (&b.name, convs.next()),
            LayerSpec::Dense(d) => (&d.name, denses.next()),
            _ => continue,
        };
        let theirs = theirs.ok_or_else(|| Error::Format {
            path: source.into(),
            what: format!("tensors for layer {ours}"),
            expected: format!(
                "torchvision names for every conv, batch norm and dense layer of {} (features.<i>.weight, \
                 classifier.<i>.weight)",
                spec.name
            ),
            found: count(),
        })?;
        names.insert(ours.clone(), theirs.clone());
    }
    if convs.next().is_some() || denses.next().is_some() {
        return Err(Error::Format {
            path: source.into(),
            what: "layer count".into(),
            expected: format!("as many conv, batch norm and dense layers as {}", spec.name),
            found: count(),
        });
    }
    Ok(names)
}

/// Fills each parameter from the file, recording what it did and every mismatch.
struct Fill<'a> {
    st: &'a SafeTensors<'a>,
    /// Our layer name -> the file's tensor prefix.
    prefixes: BTreeMap<String, String>,
    options: ImportOptions<'a>,
    device: &'a Device,
    /// The file's tensors not read yet.
    unused: BTreeSet<String>,
    problems: Vec<String>,
    report: ImportReport,
}

impl ParamMapper for Fill<'_> {
    fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
        let (layer, role) = name.rsplit_once('.').expect("parameter names are <layer>.<role>");
        if self.options.allow_fresh.iter().any(|l| l == layer) {
            self.report.fresh.push(name.to_string());
            return t;
        }
        let Some(prefix) = self.prefixes.get(layer) else {
            self.problems
                .push(format!("{name}: torchvision names feed conv and dense layers only"));
            return t;
        };
        let theirs = format!("{prefix}.{role}");
        let Ok(view) = self.st.tensor(&theirs) else {
            self.problems.push(format!("{theirs}: missing{}", feeds(&theirs, name)));
            return t;
        };
        self.unused.remove(&theirs);
        let Some(values) = float_values(&view) else {
            self.problems
                .push(format!("{theirs}: dtype {:?}, expected F32, F16 or BF16", view.dtype()));
            return t;
        };
        if let Some(bad) = non_finite(&values) {
            self.problems.push(format!("{theirs}: {bad}"));
            return t;
        }
        let (want, have) = (t.dims(), view.shape().to_vec());
        if have == want {
            match view.dtype() {
                Dtype::F32 => self.report.copied.push((name.to_string(), theirs)),
                other => self
                    .report
                    .converted
                    .push((name.to_string(), theirs, format!("{other:?}"))),
            }
            return Tensor::from_data(TensorData::new(values, want), self.device);
        }
        if let (Names::Torchvision, [out, inputs], [o, i]) = (self.options.names, &want[..], &have[..])
            && out == o
            && i % inputs == 0
        {
            let group = i / inputs;
            let summed: Vec<f32> = values.chunks_exact(group).map(|g| g.iter().sum()).collect();
            self.report.summed.push((name.to_string(), theirs, group));
            return Tensor::from_data(TensorData::new(summed, want), self.device);
        }
        self.problems.push(format!(
            "{theirs}: shape {have:?}, expected {want:?}{}",
            feeds(&theirs, name)
        ));
        t
    }
}

/// ` (for <ours>)` when the file names the tensor otherwise, for an error about `theirs`.
fn feeds(theirs: &str, ours: &str) -> String {
    if theirs == ours {
        String::new()
    } else {
        format!(" (for {ours})")
    }
}

/// The values of a float view as f32 (F16 and BF16 widen exactly); `None` for other dtypes.
fn float_values(view: &TensorView) -> Option<Vec<f32>> {
    let halves = |widen: fn([u8; 2]) -> f32| Some(view.data().chunks_exact(2).map(|c| widen([c[0], c[1]])).collect());
    match view.dtype() {
        Dtype::F32 => Some(f32_values(view.data())),
        Dtype::F16 => halves(|b| half::f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => halves(|b| half::bf16::from_le_bytes(b).to_f32()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{Conv2d, Dense, Flatten, Maxout, Relu};
    use crate::model::spec::{Init, InputShape, Pieces, SPEC_FORMAT_VERSION};

    fn spec(maxout: bool, classes: usize) -> ArchSpec {
        let dense = |name: &str, outputs| {
            LayerSpec::Dense(Dense {
                name: name.into(),
                outputs,
            })
        };
        let mut layers = vec![
            LayerSpec::Conv2d(Conv2d {
                name: "conv1_1".into(),
                filters: 2,
                kernel: 3,
                stride: 1,
                padding: 1,
            }),
            LayerSpec::Relu(Relu {}),
            LayerSpec::Flatten(Flatten {}),
            dense("fc6", 8),
        ];
        layers.push(if maxout {
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units: 4, k: 2 },
            })
        } else {
            LayerSpec::Relu(Relu {})
        });
        layers.push(dense("fc7", classes));
        ArchSpec {
            format_version: SPEC_FORMAT_VERSION,
            name: "tiny-vgg".into(),
            input: InputShape {
                channels: 1,
                height: 2,
                width: 2,
            },
            layers,
            init: Init::Xavier,
        }
    }

    /// torchvision-style names for `spec(false, 3)`: features.0, classifier.0, classifier.3.
    fn torchvision_file() -> (Vec<u8>, Network) {
        let d = Device::flex();
        let net = Network::init(&spec(false, 3), 5, &d).unwrap();
        let ours = net.to_safetensors();
        let st = SafeTensors::deserialize(&ours).unwrap();
        let rename = [
            ("conv1_1", "features.0"),
            ("fc6", "classifier.0"),
            ("fc7", "classifier.3"),
        ];
        let tensors: Vec<(String, safetensors::tensor::TensorView)> = rename
            .iter()
            .flat_map(|(a, b)| {
                ["weight", "bias"].map(|k| (format!("{b}.{k}"), st.tensor(&format!("{a}.{k}")).unwrap()))
            })
            .collect();
        (safetensors::serialize(tensors, None).unwrap(), net)
    }

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
        t.clone().into_data().iter::<f32>().collect()
    }

    fn options(names: Names, allow_fresh: &[String]) -> ImportOptions<'_> {
        ImportOptions {
            names,
            allow_fresh,
            seed: 1,
        }
    }

    fn torchvision(spec: &ArchSpec, bytes: &[u8], allow_fresh: &[String]) -> Result<(Network, ImportReport)> {
        import(
            spec,
            bytes,
            "vgg.safetensors",
            options(Names::Torchvision, allow_fresh),
            &Device::flex(),
        )
    }

    #[test]
    fn torchvision_vgg16_bn_names_import_exactly_with_num_batches_tracked_skipped() {
        // torchvision's vgg16_bn numbers `features` as the spec orders its layers (conv, bn,
        // relu, ..., pool) and `classifier` from 0 after the flatten.
        let d = Device::flex();
        let input = InputShape {
            channels: 3,
            height: 32,
            width: 32,
        };
        let spec = crate::model::presets::Preset::Vgg16Bn
            .spec()
            .scaled(1.0 / 32.0, input, 10)
            .unwrap();
        let net = Network::init(&spec, 2, &d).unwrap();
        let ours = net.to_safetensors();
        let st = SafeTensors::deserialize(&ours).unwrap();
        let flatten = spec
            .layers
            .iter()
            .position(|l| matches!(l, LayerSpec::Flatten(_)))
            .unwrap();
        let tracked = 7i64.to_le_bytes();
        let mut tensors = Vec::new();
        for (i, layer) in spec.layers.iter().enumerate() {
            let Some(name) = layer.name() else { continue };
            let theirs = if i < flatten {
                format!("features.{i}")
            } else {
                format!("classifier.{}", i - flatten - 1)
            };
            for (full, view) in st
                .tensors()
                .into_iter()
                .filter(|(n, _)| n.starts_with(&format!("{name}.")))
            {
                let role = &full[name.len() + 1..];
                tensors.push((format!("{theirs}.{role}"), view));
            }
            if matches!(layer, LayerSpec::BatchNorm(_)) {
                let view = TensorView::new(Dtype::I64, vec![], &tracked).unwrap();
                tensors.push((format!("{theirs}.num_batches_tracked"), view));
            }
        }
        let bytes = safetensors::serialize(tensors, None).unwrap();
        let (back, report) = torchvision(&spec, &bytes, &[]).unwrap();
        assert!(report.fresh.is_empty() && report.summed.is_empty());
        assert_eq!(back.to_safetensors(), ours);
    }

    #[test]
    fn same_architecture_imports_exactly() {
        let (bytes, original) = torchvision_file();
        let (net, report) = torchvision(&spec(false, 3), &bytes, &[]).unwrap();
        assert_eq!(report.copied.len(), 6);
        assert!(report.summed.is_empty() && report.fresh.is_empty());
        assert_eq!(net.to_safetensors(), original.to_safetensors());
    }

    #[test]
    fn maxout_consumers_sum_their_columns_and_other_classifiers_must_be_named_fresh() {
        let (bytes, original) = torchvision_file();
        let e = torchvision(&spec(true, 5), &bytes, &[]).unwrap_err().to_string();
        assert!(
            e.contains("classifier.3.weight: shape [3, 8], expected [5, 4]")
                && e.contains("classifier.3.bias: shape [3], expected [5]")
                && e.contains("2 mismatch(es)"),
            "{e}"
        );
        let (net, report) = torchvision(&spec(true, 5), &bytes, &["fc7".into()]).unwrap();
        assert_eq!(report.copied.len(), 4, "{report:?}"); // conv1_1, fc6
        assert!(report.summed.is_empty(), "fc7 has other outputs: fresh, not summed");
        assert_eq!(report.fresh, ["fc7.weight", "fc7.bias"]);
        // Three classes as in the file: fc7 reads 4 units instead of 8 ReLUs, columns summed in pairs.
        let (net3, report3) = torchvision(&spec(true, 3), &bytes, &[]).unwrap();
        assert_eq!(report3.summed, [("fc7.weight".into(), "classifier.3.weight".into(), 2)]);
        let (w, s) = (&original.params()[5].t2("weight"), &net3.params()[5].t2("weight"));
        let (w, s) = (values(w), values(s));
        for row in 0..3 {
            for u in 0..4 {
                let expected = w[row * 8 + 2 * u] + w[row * 8 + 2 * u + 1];
                assert_eq!(s[row * 4 + u], expected);
            }
        }
        assert_eq!(net.num_params(), spec(true, 5).num_params().unwrap());
    }

    #[test]
    fn files_for_other_architectures_are_refused() {
        let (bytes, _) = torchvision_file();
        let mut deeper = spec(false, 3);
        deeper.layers.insert(
            5,
            LayerSpec::Dense(Dense {
                name: "fc6b".into(),
                outputs: 8,
            }),
        );
        deeper.layers.insert(6, LayerSpec::Relu(Relu {}));
        let e = torchvision(&deeper, &bytes, &[]).unwrap_err();
        assert!(e.to_string().contains("vgg.safetensors"), "{e}");
        let e = torchvision(&spec(false, 3), b"garbage", &[]).unwrap_err();
        assert!(e.to_string().contains("safetensors"), "{e}");
        let e = torchvision(&spec(false, 3), &bytes, &["fc9".into()]).unwrap_err();
        assert!(
            e.to_string().contains("'fc9'") && e.to_string().contains("conv1_1, fc6, fc7"),
            "{e}"
        );
    }

    /// `tensors` as safetensors bytes: (name, dtype, shape, little-endian bytes).
    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// Imports state_dict-named `bytes` into a one-layer spec: dense `fc` with 2 outputs over a
    /// 1x1x2 input.
    fn state_dict(bytes: &[u8]) -> Result<(Network, ImportReport)> {
        let spec = ArchSpec {
            format_version: SPEC_FORMAT_VERSION,
            name: "one".into(),
            input: InputShape {
                channels: 1,
                height: 1,
                width: 2,
            },
            layers: vec![LayerSpec::flatten(), LayerSpec::dense("fc", 2)],
            init: Init::Xavier,
        };
        import(
            &spec,
            bytes,
            "w.safetensors",
            options(Names::StateDict, &[]),
            &Device::flex(),
        )
    }

    #[test]
    fn half_precision_widens_exactly_and_every_mismatch_is_listed() {
        let halves = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect() };
        let brains = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect() };
        let bytes = file(&[
            ("fc.weight", Dtype::F16, vec![2, 2], halves(&[0.5, -1.25, 2.0, 0.0])),
            ("fc.bias", Dtype::BF16, vec![2], brains(&[1.0, -0.5])),
        ]);
        let (net, report) = state_dict(&bytes).unwrap();
        assert_eq!(report.converted.len(), 2, "{report:?}");
        let fc = &net.params()[1];
        assert_eq!(
            (values(&fc.t2("weight")), values(&fc.t1("bias"))),
            (vec![0.5, -1.25, 2.0, 0.0], vec![1.0, -0.5])
        );

        let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let bytes = file(&[
            ("fc.weight", Dtype::F64, vec![2, 2], vec![0; 32]),
            ("fc.bias", Dtype::F32, vec![2], f32s(&[f32::NAN, 0.0])),
            ("fc2.weight", Dtype::F32, vec![1], f32s(&[0.0])),
        ]);
        let e = state_dict(&bytes).unwrap_err().to_string();
        for needle in [
            "w.safetensors",
            "3 mismatch(es)",
            "fc.weight: dtype F64",
            "fc.bias: 1 NaN or infinite value(s)",
            "fc2.weight: not a parameter of one (unused)",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let e = state_dict(&file(&[("fc.bias", Dtype::F32, vec![3], f32s(&[0.0; 3]))]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fc.weight: missing") && e.contains("fc.bias: shape [3], expected [2]"),
            "{e}"
        );
    }
}
