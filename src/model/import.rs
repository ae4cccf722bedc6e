//! Pretrained weights with torchvision's VGG names (`features.<i>.weight`, `classifier.<i>.weight`
//! and their biases), written as safetensors, for example by
//! `safetensors.torch.save_file(torchvision.models.vgg16(weights="DEFAULT").state_dict(), "vgg16.safetensors")`.
//!
//! The file's conv tensors, in the order of their index, feed the spec's conv layers in order;
//! its classifier tensors feed the dense layers. A tensor of the spec's shape is copied. A dense
//! weight whose inputs are k times the spec's (a dense layer that now reads maxout units instead
//! of the k-times-wider ReLU layer it was trained on) gets each unit's k columns summed, which
//! reproduces the original layer exactly when a unit's pieces agree. `vgg16-maxout` keeps the
//! ReLU that follows torchvision's fc6 and fc7 before its maxout layers, so a copied fc6 or fc7
//! row is still a rectified feature of the pretrained network. Anything else (a classifier for
//! another number of classes, say) keeps the fresh initialisation and is reported.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::network::{Network, ParamMapper, f32_values};
use crate::model::spec::{ArchSpec, LayerSpec};

/// What happened to each parameter tensor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Copied as they are: (our name, torchvision name).
    pub copied: Vec<(String, String)>,
    /// Dense weights whose inputs were summed in groups: (our name, torchvision name, group size).
    pub summed: Vec<(String, String, usize)>,
    /// Kept at their fresh initialisation, with the reason.
    pub fresh: Vec<(String, String)>,
}

/// Builds `spec`'s network (fresh parameters from `seed`) and fills it from torchvision-named
/// safetensors `bytes`; `source` names the file in errors.
pub fn torchvision(
    spec: &ArchSpec,
    bytes: &[u8],
    source: &str,
    seed: u64,
    device: &Device,
) -> Result<(Network, ImportReport)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
        path: source.into(),
        what: "safetensors file".into(),
        expected: "a valid safetensors header and data".into(),
        found: e.to_string(),
    })?;
    // Indices of `<prefix>.<i>.weight`, in numeric order.
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
    let mut names = BTreeMap::new();
    let (mut convs, mut denses) = (features.iter(), classifier.iter());
    for layer in &spec.layers {
        let (ours, theirs) = match layer {
            LayerSpec::Conv2d(c) => (&c.name, convs.next()),
            LayerSpec::Dense(d) => (&d.name, denses.next()),
            _ => continue,
        };
        let theirs = theirs.ok_or_else(|| Error::Format {
            path: source.into(),
            what: format!("tensors for layer {ours}"),
            expected: format!(
                "torchvision names for every conv and dense layer of {} (features.<i>.weight, classifier.<i>.weight)",
                spec.name
            ),
            found: format!(
                "{} features and {} classifier weights",
                features.len(),
                classifier.len()
            ),
        })?;
        names.insert(ours.clone(), theirs.clone());
    }
    if convs.next().is_some() || denses.next().is_some() {
        return Err(Error::Format {
            path: source.into(),
            what: "layer count".into(),
            expected: format!("as many conv and dense layers as {}", spec.name),
            found: format!(
                "{} features and {} classifier weights",
                features.len(),
                classifier.len()
            ),
        });
    }

    struct Fill<'a> {
        st: &'a SafeTensors<'a>,
        names: BTreeMap<String, String>,
        device: &'a Device,
        report: ImportReport,
    }
    impl ParamMapper for Fill<'_> {
        fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
            let (layer, kind) = name.rsplit_once('.').expect("parameter names are <layer>.<kind>");
            let theirs = format!("{}.{kind}", self.names[layer]);
            let mut keep = |why: String| {
                self.report.fresh.push((name.to_string(), why));
            };
            let Ok(view) = self.st.tensor(&theirs) else {
                keep(format!("{theirs} missing"));
                return t;
            };
            if view.dtype() != Dtype::F32 {
                keep(format!("{theirs} is {:?}, not F32", view.dtype()));
                return t;
            }
            let values = f32_values(view.data());
            let (want, have) = (t.dims(), view.shape().to_vec());
            if have == want {
                self.report.copied.push((name.to_string(), theirs));
                return Tensor::from_data(TensorData::new(values, want), self.device);
            }
            if let ([out, inputs], [o, i]) = (&want[..], &have[..])
                && out == o
                && i % inputs == 0
            {
                let group = i / inputs;
                let summed: Vec<f32> = values.chunks_exact(group).map(|g| g.iter().sum()).collect();
                self.report.summed.push((name.to_string(), theirs, group));
                return Tensor::from_data(TensorData::new(summed, want), self.device);
            }
            keep(format!("{theirs} has shape {have:?}, the spec needs {want:?}"));
            t
        }
    }
    let mut fill = Fill {
        st: &st,
        names,
        device,
        report: ImportReport::default(),
    };
    let net = Network::init(spec, seed, device)?.map_params(&mut fill);
    Ok((net, fill.report))
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

    #[test]
    fn same_architecture_imports_exactly() {
        let (bytes, original) = torchvision_file();
        let (net, report) = torchvision(&spec(false, 3), &bytes, "vgg.safetensors", 1, &Device::flex()).unwrap();
        assert_eq!(report.copied.len(), 6);
        assert!(report.summed.is_empty() && report.fresh.is_empty());
        assert_eq!(net.to_safetensors(), original.to_safetensors());
    }

    #[test]
    fn maxout_consumers_sum_their_columns_and_other_classifiers_stay_fresh() {
        let (bytes, original) = torchvision_file();
        let (net, report) = torchvision(&spec(true, 5), &bytes, "vgg.safetensors", 1, &Device::flex()).unwrap();
        assert_eq!(report.copied.len(), 4, "{report:?}"); // conv1_1, fc6
        assert!(report.summed.is_empty(), "fc7 has other outputs: fresh, not summed");
        assert_eq!(report.fresh.len(), 2);
        // Three classes as in the file: fc7 reads 4 units instead of 8 ReLUs, columns summed in pairs.
        let (net3, report3) = torchvision(&spec(true, 3), &bytes, "vgg.safetensors", 1, &Device::flex()).unwrap();
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
        let e = torchvision(&deeper, &bytes, "vgg.safetensors", 1, &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("vgg.safetensors"), "{e}");
        let e = torchvision(&spec(false, 3), b"garbage", "vgg.safetensors", 1, &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("safetensors"), "{e}");
    }
}
