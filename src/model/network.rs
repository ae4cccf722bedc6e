//! A network built from an [`ArchSpec`]: parameters, forward passes (plain, training with
//! dropout, and traced with every maxout layer's pieces), and safetensors I/O.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};

pub use super::layers::Kernels;
use super::layers::{Act, Forward, Kind, Role};
pub use super::params::{LayerParams, Masks, ParamMapper, ParamTensor, ParamVisitor};
use super::spec::{ArchSpec, LayerInfo, LayerSpec, SPEC_METADATA_KEY};
use crate::error::{Error, Result};
use crate::fsio;
use crate::rng::SplitMix64;

/// What a unit layer (see [`ArchSpec::unit_layers`]) saw in a traced forward pass.
#[derive(Debug, Clone)]
pub struct MaxoutTrace {
    /// Index of the unit layer in the spec (a maxout layer, or a plain conv or dense layer).
    pub layer: usize,
    /// The pieces' pre-activations, `[contests, units, k_max]`: one contest per example for a
    /// dense producer, one per example and spatial position (row-major) for a conv producer.
    /// Slots beyond a ragged unit's piece count hold `-inf`. A plain layer's units have one
    /// piece each: the layer's output after the relu that follows it, if any.
    pub pieces: Tensor<3>,
}

impl MaxoutTrace {
    /// The winning piece of every unit in every contest, `[contests, units]`; among equal
    /// maxima the backend's arg-max picks one (relevance applies its own tie policy to
    /// [`pieces`](Self::pieces)).
    pub fn winners(&self) -> Tensor<2, Int> {
        let [n, units, _] = self.pieces.dims();
        self.pieces.clone().argmax(2).reshape([n, units])
    }
}

/// New values of a network's buffers (batch norm's running statistics) from one training
/// pass: `(layer, role, value)`, detached from the graph.
#[derive(Debug, Clone, Default)]
pub struct RunningStats(Vec<(usize, &'static str, ParamTensor)>);

/// A maxout network built from its spec.
#[derive(Debug, Clone)]
pub struct Network {
    spec: ArchSpec,
    infos: Vec<LayerInfo>,
    params: Vec<LayerParams>,
    device: Device,
    kernels: Kernels,
}

impl Network {
    /// A freshly initialised network: weights uniform by the spec's [`Init`](super::spec::Init)
    /// (`xavier`, Caffe's filler: `±sqrt(3 / fan_in)`; `he`: `±sqrt(6 / fan_in)`), zero biases,
    /// each layer's drawn from its own stream of `seed`.
    pub fn init(spec: &ArchSpec, seed: u64, device: &Device) -> Result<Network> {
        let infos = spec.validate()?;
        let params = infos
            .iter()
            .zip(&spec.layers)
            .map(|(info, layer)| {
                let mut rng = SplitMix64::derive(seed, "init", info.index as u64);
                LayerParams::init(layer.params(info.input), spec.init, &mut rng, device)
            })
            .collect();
        Network::from_parts(spec.clone(), infos, params, device)
    }

    /// Assembles a network from parameters that match `spec` (checked).
    pub fn from_params(spec: &ArchSpec, params: Vec<LayerParams>, device: &Device) -> Result<Network> {
        let infos = spec.validate()?;
        Network::from_parts(spec.clone(), infos, params, device)
    }

    fn from_parts(spec: ArchSpec, infos: Vec<LayerInfo>, params: Vec<LayerParams>, device: &Device) -> Result<Network> {
        if params.len() != spec.layers.len() {
            return Err(Error::invalid(
                "network",
                format!("{} parameter sets for {} layers", params.len(), spec.layers.len()),
            ));
        }
        for ((layer, p), info) in spec.layers.iter().zip(&params).zip(&infos) {
            let want: Vec<(&str, Vec<usize>)> = layer
                .params(info.input)
                .into_iter()
                .map(|d| (d.role, d.shape))
                .collect();
            let got = p.shapes();
            if want != got {
                let show = |v: &[(&str, Vec<usize>)]| match v {
                    [] => "none".to_string(),
                    v => v
                        .iter()
                        .map(|(r, s)| format!("{r} {s:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                return Err(Error::invalid(
                    "network",
                    format!(
                        "layer {} ({layer}): expected parameters {}, found {}",
                        info.index,
                        show(&want),
                        show(&got)
                    ),
                ));
            }
        }
        Ok(Network {
            spec,
            infos,
            params,
            device: device.clone(),
            kernels: crate::kernels(),
        })
    }

    /// The architecture.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// Per-layer shapes, parameters and FLOPs.
    pub fn infos(&self) -> &[LayerInfo] {
        &self.infos
    }

    /// The parameters of every layer (`LayerParams::None` for layers without).
    pub fn params(&self) -> &[LayerParams] {
        &self.params
    }

    /// The device its tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of parameters (buffers such as running statistics excluded, as PyTorch's
    /// `parameters()` counts), counted on the tensors themselves.
    pub fn num_params(&self) -> usize {
        struct Count(usize);
        impl ParamVisitor for Count {
            fn visit<const D: usize>(&mut self, _: &str, t: &Tensor<D>) {
                self.0 += t.dims().iter().product::<usize>();
            }
        }
        let mut c = Count(0);
        self.visit_trainable(&mut c);
        c.0
    }

    /// Calls `visitor` on every tensor, parameters and buffers (everything saved).
    pub fn visit_params(&self, visitor: &mut impl ParamVisitor) {
        self.visit(visitor, false);
    }

    /// Calls `visitor` on every trained parameter (buffers excluded).
    pub fn visit_trainable(&self, visitor: &mut impl ParamVisitor) {
        self.visit(visitor, true);
    }

    fn visit(&self, visitor: &mut impl ParamVisitor, trainable_only: bool) {
        for (layer, p) in self.spec.layers.iter().zip(&self.params) {
            let name = layer.name().unwrap_or_default();
            for param in p.params.iter().filter(|p| p.trainable || !trainable_only) {
                param.value.visit(&format!("{name}.{}", param.role), visitor);
            }
        }
    }

    /// Replaces every parameter with `mapper`'s result.
    pub fn map_params(mut self, mapper: &mut impl ParamMapper) -> Network {
        let params = std::mem::take(&mut self.params);
        self.params = self
            .spec
            .layers
            .iter()
            .zip(params)
            .map(|(layer, p)| {
                let name = layer.name().unwrap_or_default();
                p.map(|role, t| t.map_with(&format!("{name}.{role}"), mapper))
            })
            .collect();
        self
    }

    /// The weight-pruning masks its parameters hold, flattened, by parameter name (see
    /// [`with_masks`](Self::with_masks)).
    pub fn masks(&self) -> Masks {
        let mut masks = Masks::new();
        for (layer, p) in self.spec.layers.iter().zip(&self.params) {
            let name = layer.name().unwrap_or_default();
            for param in &p.params {
                if let Some(m) = &param.mask {
                    masks.insert(format!("{name}.{}", param.role), m.flat());
                }
            }
        }
        masks
    }

    /// The network with `masks` (flattened, by parameter name) held by the parameters they
    /// name, replacing every mask it held: training keeps masked weights at zero, and pruning
    /// slices a mask with its parameter. A mask naming no parameter, or with another number of
    /// values than its parameter, is an error.
    pub fn with_masks(mut self, masks: &Masks) -> Result<Network> {
        let mut used = 0;
        for (layer, p) in self.spec.layers.iter().zip(&mut self.params) {
            let name = layer.name().unwrap_or_default();
            for param in &mut p.params {
                let full = format!("{name}.{}", param.role);
                param.mask = match masks.get(&full) {
                    Some(m) => {
                        let (found, expected) = (m.dims()[0], param.value.dims().iter().product::<usize>());
                        if found != expected {
                            return Err(Error::invalid(
                                "weight mask",
                                format!("'{full}': expected {expected} values, one per element, found {found}"),
                            ));
                        }
                        used += 1;
                        Some(param.value.shaped(m.clone()))
                    }
                    None => None,
                };
            }
        }
        if used != masks.len() {
            let unknown: Vec<&str> = masks
                .keys()
                .filter(|k| !self.masks().contains_key(*k))
                .map(String::as_str)
                .collect();
            return Err(Error::invalid(
                "weight mask",
                format!(
                    "expected masks of the network's parameters, found {}",
                    unknown.join(", ")
                ),
            ));
        }
        Ok(self)
    }

    /// The parameters of producer `p` (a conv or dense layer) as evaluation sees them: with
    /// a batch norm directly after it folded in (see [`BatchNorm::fold_into`](super::layers::BatchNorm::fold_into)).
    pub fn folded_params(&self, p: usize) -> LayerParams {
        match self.spec.layers.get(p + 1) {
            Some(LayerSpec::BatchNorm(bn)) => bn.fold_into(&self.params[p + 1], &self.params[p]),
            _ => self.params[p].clone(),
        }
    }

    /// The same network in evaluation with every batch norm folded into the conv or dense layer
    /// directly before it (weights and bias rescaled, the batch norm layer removed): it predicts
    /// as this one within rounding. A batch norm after anything else (a relu, a pooling layer)
    /// cannot be folded and is an error naming it.
    pub fn fold_batch_norm(&self) -> Result<Network> {
        let mut spec = self.spec.clone();
        let mut params = self.params.clone();
        for i in (0..spec.layers.len()).rev() {
            let LayerSpec::BatchNorm(bn) = &spec.layers[i] else {
                continue;
            };
            let before = i.checked_sub(1).map(|p| &spec.layers[p]);
            if before.is_none_or(|l| l.role() != Role::Producer) {
                return Err(Error::invalid(
                    "fold batch norm",
                    format!(
                        "layer {i} ({}) follows {}, not a conv2d or dense layer, so it cannot be folded \
                         (export without --fold-bn writes it as BatchNormalization)",
                        spec.layers[i],
                        before.map_or("the input".to_string(), ToString::to_string)
                    ),
                ));
            }
            params[i - 1] = bn.fold_into(&params[i], &params[i - 1]);
            spec.layers.remove(i);
            params.remove(i);
        }
        Network::from_params(&spec, params, &self.device).map(|n| n.with_kernels(self.kernels))
    }

    /// The convolution and pooling kernels this network runs (the process default,
    /// [`crate::kernels`], unless [`with_kernels`](Self::with_kernels) chose).
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The same network running `kernels`; its outputs agree within rounding.
    pub fn with_kernels(mut self, kernels: Kernels) -> Network {
        self.kernels = kernels;
        self
    }

    /// Moves every parameter to `device` (for example the autodiff view of the same device).
    pub fn to_device(self, device: &Device) -> Network {
        struct Move<'a>(&'a Device);
        impl ParamMapper for Move<'_> {
            fn map<const D: usize>(&mut self, _: &str, t: Tensor<D>) -> Tensor<D> {
                t.to_device(self.0)
            }
        }
        let mut n = self.map_params(&mut Move(device));
        n.device = device.clone();
        n
    }

    /// The network with autodiff enabled and every parameter (not the buffers) requiring
    /// gradients, ready for training steps.
    pub fn into_trainable(mut self) -> Network {
        let device = self.device.clone().autodiff();
        for p in self.params.iter_mut().flat_map(|l| l.params.iter_mut()) {
            p.value = p.value.clone().autodiff(p.trainable);
        }
        self.device = device;
        self
    }

    /// The network without autodiff (parameters detached from any graph).
    pub fn into_inference(self) -> Network {
        struct Inner;
        impl ParamMapper for Inner {
            fn map<const D: usize>(&mut self, _: &str, t: Tensor<D>) -> Tensor<D> {
                t.inner()
            }
        }
        let device = self.device.clone().without_autodiff();
        let mut n = self.map_params(&mut Inner);
        n.device = device;
        n
    }

    /// Class scores in evaluation mode (no dropout).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]`
    /// - returns `[batch, classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.run(x, None, &[], self.spec.layers.len()).0
    }

    /// The activations after the first `layers` layers in evaluation mode, flattened per
    /// example: embeddings for verification ([`ArchSpec::embedding_depth`] says how many layers).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]`
    /// - returns `[batch, features]`
    pub fn features(&self, x: Tensor<4>, layers: usize) -> Tensor<2> {
        self.run(x, None, &[], layers).0
    }

    /// Class scores in training mode: dropout masks are drawn from `rng`, batch norm uses the
    /// batch's statistics; with the running statistics this batch moves them to (apply them
    /// with [`with_running_stats`](Self::with_running_stats) after the step).
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    pub fn forward_train(&self, x: Tensor<4>, rng: &mut SplitMix64) -> (Tensor<2>, RunningStats) {
        let mut stats = RunningStats::default();
        let (logits, _) = self.run_with(x, Some(rng), &[], self.spec.layers.len(), Some(&mut stats));
        (logits, stats)
    }

    /// The network with the buffers a training pass computed (see
    /// [`forward_train`](Self::forward_train)).
    pub fn with_running_stats(mut self, stats: RunningStats) -> Network {
        for (layer, role, value) in stats.0 {
            self.params[layer].set(role, value);
        }
        self
    }

    /// Class scores in evaluation mode, with every maxout layer's pieces. Costs nothing extra
    /// when not called: [`forward`](Self::forward) keeps no trace.
    ///
    /// # Shapes
    /// As [`forward`](Self::forward); see [`MaxoutTrace`] for the traces.
    pub fn forward_traced(&self, x: Tensor<4>) -> (Tensor<2>, Vec<MaxoutTrace>) {
        self.forward_traced_at(x, &self.spec.maxout_layers())
    }

    /// [`forward_traced`](Self::forward_traced) with the traces of the unit layers `layers`
    /// (spec indices, increasing; see [`ArchSpec::unit_layers`]), one per layer in that order.
    pub fn forward_traced_at(&self, x: Tensor<4>, layers: &[usize]) -> (Tensor<2>, Vec<MaxoutTrace>) {
        self.run(x, None, layers, self.spec.layers.len())
    }

    fn run(
        &self,
        x: Tensor<4>,
        rng: Option<&mut SplitMix64>,
        traced: &[usize],
        layers: usize,
    ) -> (Tensor<2>, Vec<MaxoutTrace>) {
        self.run_with(x, rng, traced, layers, None)
    }

    fn run_with(
        &self,
        x: Tensor<4>,
        rng: Option<&mut SplitMix64>,
        traced: &[usize],
        layers: usize,
        mut stats: Option<&mut RunningStats>,
    ) -> (Tensor<2>, Vec<MaxoutTrace>) {
        let mut act = Act::Map(x);
        let mut traces = Vec::new();
        // Plain unit layers are read where their output is final: (read at, layer).
        let plain: Vec<(usize, usize)> = traced
            .iter()
            .filter(|&&l| self.spec.pieces(l).is_none())
            .map(|&l| (self.spec.unit_output(l), l))
            .collect();
        let mut ctx = Forward {
            kernels: self.kernels,
            rng,
            trace: false,
            traced: None,
            updates: Vec::new(),
        };
        for (i, layer) in self.spec.layers.iter().enumerate().take(layers) {
            ctx.trace = traced.contains(&i);
            act = layer.forward(&self.params[i], act, &mut ctx);
            for (role, value) in ctx.updates.drain(..) {
                if let Some(s) = stats.as_deref_mut() {
                    s.0.push((i, role, value));
                }
            }
            if let Some(pieces) = ctx.traced.take() {
                traces.push(MaxoutTrace { layer: i, pieces });
            }
            if let Some(&(_, l)) = plain.iter().find(|(at, _)| *at == i) {
                traces.push(MaxoutTrace {
                    layer: l,
                    pieces: act.as_units(),
                });
            }
        }
        (act.into_flat(), traces)
    }

    /// Writes the parameters as a safetensors file (atomically), with the spec in its metadata.
    ///
    /// Tensor names are `<layer>.weight` and `<layer>.bias`, f32, PyTorch's layouts (dense
    /// `[out, in]`, conv `[out, in, kh, kw]`), so `safetensors.torch.load_file` reads them.
    pub fn save(&self, path: &Path) -> Result<()> {
        fsio::write_atomic(path, &self.to_safetensors())
    }

    /// The parameters as safetensors bytes (see [`save`](Self::save)).
    pub fn to_safetensors(&self) -> Vec<u8> {
        struct Collect(Vec<(String, Vec<usize>, Vec<u8>)>);
        impl ParamVisitor for Collect {
            fn visit<const D: usize>(&mut self, name: &str, t: &Tensor<D>) {
                let data = t.to_data().convert::<f32>();
                let bytes = data.as_bytes().to_vec();
                self.0.push((name.to_string(), t.dims().to_vec(), bytes));
            }
        }
        let mut c = Collect(Vec::new());
        self.visit_params(&mut c);
        let views: Vec<(String, TensorView<'_>)> =
            c.0.iter()
                .map(|(n, shape, bytes)| {
                    let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                        .expect("shape matches the bytes it came from");
                    (n.clone(), view)
                })
                .collect();
        let meta = HashMap::from([(
            SPEC_METADATA_KEY.to_string(),
            serde_json::to_string(&self.spec).expect("spec serializes"),
        )]);
        safetensors::serialize(views, Some(meta)).expect("serializing in-memory f32 tensors cannot fail")
    }

    /// Loads parameters for `spec` from a safetensors file; every tensor must be present with
    /// the shape the spec implies and finite values, and no other tensor may be present.
    pub fn load(spec: &ArchSpec, path: &Path, device: &Device) -> Result<Network> {
        let bytes = crate::fsio::read_tensor_file(path)?;
        Network::from_safetensors(spec, &bytes, &path.display().to_string(), device)
    }

    /// Like [`load`](Self::load), from bytes; `source` names them in errors.
    pub fn from_safetensors(spec: &ArchSpec, bytes: &[u8], source: &str, device: &Device) -> Result<Network> {
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
            path: source.into(),
            what: "safetensors file".into(),
            expected: "a valid safetensors header and data".into(),
            found: e.to_string(),
        })?;
        // Names and shapes are compared with the spec's before its network is built, so a small
        // file never makes the reader allocate a large network first.
        let table = st.tensors();
        if let Some(found) = spec.table_mismatch(table.iter().map(|(n, t)| (n.as_str(), t.shape().to_vec())))? {
            return Err(Error::Format {
                path: source.into(),
                what: "tensors".into(),
                expected: "the tensors its spec names, with their shapes".into(),
                found,
            });
        }
        // Start from shapes alone (a zero-seed init gives the right shapes); replace every tensor.
        let template = Network::init(spec, 0, device)?;
        struct Load<'a> {
            st: &'a safetensors::SafeTensors<'a>,
            source: &'a str,
            device: &'a Device,
            error: Option<Error>,
            used: usize,
        }
        impl ParamMapper for Load<'_> {
            fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
                if self.error.is_some() {
                    return t;
                }
                let fail = |what: &str, expected: String, found: String| Error::Format {
                    path: self.source.to_string(),
                    what: format!("tensor '{name}' {what}"),
                    expected,
                    found,
                };
                let view = match self.st.tensor(name) {
                    Ok(v) => v,
                    Err(_) => {
                        self.error = Some(fail(
                            "",
                            "present (the file was written for another spec?)".into(),
                            "missing".into(),
                        ));
                        return t;
                    }
                };
                self.used += 1;
                if view.dtype() != Dtype::F32 {
                    self.error = Some(fail("dtype", "F32".into(), format!("{:?}", view.dtype())));
                    return t;
                }
                if view.shape() != t.dims() {
                    self.error = Some(fail("shape", format!("{:?}", t.dims()), format!("{:?}", view.shape())));
                    return t;
                }
                let values = f32_values(view.data());
                if let Some(bad) = non_finite(&values) {
                    self.error = Some(fail("values", "finite numbers".into(), bad));
                    return t;
                }
                Tensor::from_data(TensorData::new(values, t.dims()), self.device)
            }
        }
        let mut loader = Load {
            st: &st,
            source,
            device,
            error: None,
            used: 0,
        };
        let net = template.map_params(&mut loader);
        if let Some(e) = loader.error {
            return Err(e);
        }
        if loader.used != st.len() {
            return Err(Error::Format {
                path: source.into(),
                what: "tensor count".into(),
                expected: format!("{} tensors named by the spec", loader.used),
                found: format!("{} tensors", st.len()),
            });
        }
        // maxprune's own files name the spec they were written with; where the tensors fit (a
        // shape error above names the tensor), that spec must still be this one.
        let stored = safetensors::SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, meta)| meta.metadata().as_ref()?.get(SPEC_METADATA_KEY).cloned());
        if let Some(stored) = stored
            && ArchSpec::from_metadata(&stored, source)? != *spec
        {
            return Err(Error::Format {
                path: source.into(),
                what: "architecture".into(),
                expected: "the spec it is loaded with (spec.json of its run directory)".into(),
                found: "a file written for a different spec".into(),
            });
        }
        Ok(net)
    }
}

/// `None` when every value is finite; else how many are not, and the first (for an error).
pub fn non_finite(values: &[f32]) -> Option<String> {
    let first = values.iter().position(|v| !v.is_finite())?;
    let count = values.iter().filter(|v| !v.is_finite()).count();
    Some(format!(
        "{count} NaN or infinite value(s), the first {} at element {first}",
        values[first]
    ))
}

/// The little-endian f32 values in `bytes` (safetensors' and the sparse format's encoding); a
/// trailing partial value is ignored.
pub(crate) fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::layers::{Dense, Dropout, Flatten, Maxout};
    use crate::model::presets::Preset;
    use crate::model::spec::{Init, LayerSpec, Pieces};

    fn input(batch: usize, seed: u64, device: &Device) -> Tensor<4> {
        let mut rng = SplitMix64::new(seed);
        let v: Vec<f32> = (0..batch * 784).map(|_| rng.next_f32()).collect();
        Tensor::from_data(TensorData::new(v, [batch, 1, 28, 28]), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// A LeNet with maxout on conv1 (20 channels in 5 units of k=4) and a ragged dense maxout.
    pub(crate) fn conv_maxout_spec() -> ArchSpec {
        let mut spec = Preset::Lenet5Maxout.spec();
        spec.name = "conv-maxout".into();
        spec.layers.insert(
            1,
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units: 5, k: 4 },
            }),
        );
        let fc1 = spec.layers.iter().position(|l| l.name() == Some("fc1")).unwrap();
        spec.layers[fc1] = LayerSpec::Dense(Dense {
            name: "fc1".into(),
            outputs: 9,
        });
        let m = spec.maxout_layers()[1];
        spec.layers[m] = LayerSpec::Maxout(Maxout {
            pieces: Pieces::from_counts(vec![4, 1, 3, 1]),
        });
        spec
    }

    #[test]
    fn spec_counts_equal_built_counts() {
        let d = Device::flex();
        for spec in [
            Preset::Lenet5.spec(),
            Preset::Lenet5Maxout.spec(),
            Preset::SeedLenet.spec(),
            conv_maxout_spec(),
        ] {
            let net = Network::init(&spec, 3, &d).unwrap();
            assert_eq!(net.num_params(), spec.num_params().unwrap(), "{}", spec.name);
        }
    }

    #[test]
    fn traced_forward_equals_plain_forward() {
        let d = Device::flex();
        for spec in [Preset::Lenet5Maxout.spec(), conv_maxout_spec()] {
            let net = Network::init(&spec, 5, &d).unwrap();
            let x = input(3, 1, &d);
            let (traced, traces) = net.forward_traced(x.clone());
            assert_eq!(values(net.forward(x)), values(traced));
            assert_eq!(traces.len(), spec.maxout_layers().len());
            for t in &traces {
                let LayerSpec::Maxout(Maxout { pieces }) = &spec.layers[t.layer] else {
                    panic!("trace of a non-maxout layer")
                };
                let [contests, units, k] = t.pieces.dims();
                assert_eq!((units, k), (pieces.units(), pieces.k_max()));
                let winners = t.winners().into_data();
                assert_eq!(winners.num_elements(), contests * units);
            }
        }
    }

    #[test]
    fn maxout_takes_the_max_of_each_group_and_ragged_padding_never_wins() {
        // Hand-set dense producer: identity on 9 inputs, pieces [4, 1, 3, 1].
        let d = Device::flex();
        let spec = ArchSpec {
            format_version: crate::model::spec::SPEC_FORMAT_VERSION,
            name: "tiny".into(),
            input: crate::model::spec::InputShape {
                channels: 1,
                height: 3,
                width: 3,
            },
            layers: vec![
                LayerSpec::Flatten(Flatten {}),
                LayerSpec::Dense(Dense {
                    name: "fc".into(),
                    outputs: 9,
                }),
                LayerSpec::Maxout(Maxout {
                    pieces: Pieces::from_counts(vec![4, 1, 3, 1]),
                }),
            ],
            init: Init::Xavier,
        };
        let eye: Vec<f32> = (0..81).map(|i| if i % 10 == 0 { 1.0 } else { 0.0 }).collect();
        let mut params = Network::init(&spec, 0, &d).unwrap().params().to_vec();
        let (mut w, mut b) = (Some(eye), Some(vec![0.0f32; 9]));
        params[1] = params[1].clone().map(|role, _| match role {
            "weight" => ParamTensor::from_values(w.take().unwrap(), &[9, 9], &d),
            _ => ParamTensor::from_values(b.take().unwrap(), &[9], &d),
        });
        let net = Network::from_params(&spec, params, &d).unwrap();
        let x = Tensor::from_data(
            TensorData::new(vec![-3.0f32, 7.0, 2.0, 1.0, -5.0, -1.0, -2.0, -4.0, -8.0], [1, 1, 3, 3]),
            &d,
        );
        assert_eq!(values(net.forward(x.clone())), vec![7.0, -5.0, -1.0, -8.0]);
        let (_, traces) = net.forward_traced(x);
        let w: Vec<i64> = traces[0].winners().into_data().iter::<i64>().collect();
        assert_eq!(w, vec![1, 0, 0, 0]);
    }

    #[test]
    fn safetensors_round_trip_gives_identical_outputs() {
        let d = Device::flex();
        let spec = conv_maxout_spec();
        let net = Network::init(&spec, 9, &d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        net.save(&path).unwrap();
        let back = Network::load(&spec, &path, &d).unwrap();
        let x = input(2, 4, &d);
        assert_eq!(values(net.forward(x.clone())), values(back.forward(x)));
    }

    #[test]
    fn loading_for_another_spec_is_a_clear_error() {
        let d = Device::flex();
        let net = Network::init(&Preset::Lenet5.spec(), 1, &d).unwrap();
        let bytes = net.to_safetensors();
        let e = Network::from_safetensors(&Preset::Lenet5Maxout.spec(), &bytes, "m.safetensors", &d)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.safetensors") && e.contains("fc2.weight") && e.contains("shape"),
            "{e}"
        );
        let e = Network::from_safetensors(&Preset::Lenet5.spec(), &bytes[..100], "cut.safetensors", &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.safetensors"), "{e}");
        // Every tensor fits, but the file was written for another network (one with dropout).
        let bytes = Network::init(&Preset::Lenet5Maxout.spec(), 1, &d)
            .unwrap()
            .to_safetensors();
        let mut other = Preset::Lenet5Maxout.spec();
        other
            .layers
            .retain(|l| !matches!(l, LayerSpec::Dropout(Dropout { .. })));
        let e = Network::from_safetensors(&other, &bytes, "m.safetensors", &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.safetensors: architecture"), "{e}");
    }

    #[test]
    fn init_is_deterministic_per_seed() {
        let d = Device::flex();
        let spec = Preset::Lenet5Maxout.spec();
        let a = Network::init(&spec, 1, &d).unwrap().to_safetensors();
        assert_eq!(a, Network::init(&spec, 1, &d).unwrap().to_safetensors());
        assert_ne!(a, Network::init(&spec, 2, &d).unwrap().to_safetensors());
    }
}
