//! `ArchSpec`: a network's architecture as serde data, with validation, shape inference and
//! parameter/FLOP accounting. Knows nothing about tensors or devices.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use super::layers::LayerSpec;
use super::layers::{Inferred, Kind, Role};
use crate::error::{Error, Result};

/// Version of the `spec.json` format written by this build.
pub const SPEC_FORMAT_VERSION: u32 = 1;

/// Most layers a spec may have.
pub const MAX_LAYERS: usize = 10_000;
/// The safetensors metadata key under which maxprune stores a network's spec (JSON).
pub const SPEC_METADATA_KEY: &str = "maxprune_spec";
/// The longest layer name a spec may use.
pub const MAX_NAME: usize = 64;

/// A layer name that is safe as part of a file name and a tensor name: 1 to [`MAX_NAME`]
/// ASCII letters, digits, `_`, `-` and `.`, not starting with `.` (so never `..`).
pub(crate) fn is_safe_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
/// Largest input side, kernel, stride and padding, in pixels.
pub const MAX_SIDE: usize = 1 << 16;
/// Most elements of one parameter tensor or of one layer's activation per example (2^30: 4 GiB
/// of f32), checked before anything is allocated.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 30;
/// Most parameters of a whole network (2^31: 8 GiB of f32).
pub const MAX_PARAMS: usize = 1 << 31;

/// Shape of the network's input: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputShape {
    /// Number of channels (1 for grayscale).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

/// How many pieces each maxout unit owns.
///
/// Unit `u` owns the contiguous pieces `offset(u) .. offset(u) + count(u)` of the producing
/// layer (rows of a dense layer, channels of a conv layer); see [`crate::model::layout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, try_from = "PiecesFields")]
pub enum Pieces {
    /// Every unit owns `k` pieces.
    Uniform {
        /// Number of units.
        units: usize,
        /// Pieces per unit.
        k: usize,
    },
    /// Unit `u` owns `per_unit[u]` pieces (units of different sizes, after pruning).
    Ragged {
        /// Pieces of each unit.
        per_unit: Vec<usize>,
    },
}

/// The fields a `pieces` object may have, read before deciding which form it is: `units` and
/// `k` together, or `per_unit` alone (an untagged enum would take the first form that fits
/// and drop the rest).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PiecesFields {
    units: Option<usize>,
    k: Option<usize>,
    per_unit: Option<Vec<usize>>,
}

impl TryFrom<PiecesFields> for Pieces {
    type Error = String;

    fn try_from(f: PiecesFields) -> std::result::Result<Pieces, String> {
        match f {
            PiecesFields {
                units: Some(units),
                k: Some(k),
                per_unit: None,
            } => Ok(Pieces::Uniform { units, k }),
            PiecesFields {
                units: None,
                k: None,
                per_unit: Some(per_unit),
            } => Ok(Pieces::Ragged { per_unit }),
            PiecesFields { units, k, per_unit } => {
                let found: Vec<&str> = [
                    ("units", units.is_some()),
                    ("k", k.is_some()),
                    ("per_unit", per_unit.is_some()),
                ]
                .into_iter()
                .filter_map(|(n, set)| set.then_some(n))
                .collect();
                Err(format!(
                    "pieces: expected either `units` and `k` or `per_unit` alone, found {}",
                    if found.is_empty() {
                        "none of them".to_string()
                    } else {
                        found.join(", ")
                    }
                ))
            }
        }
    }
}

impl Pieces {
    /// Builds the most compact form for the given per-unit counts.
    pub fn from_counts(counts: Vec<usize>) -> Pieces {
        match counts.first() {
            Some(&k) if counts.iter().all(|&c| c == k) => Pieces::Uniform { units: counts.len(), k },
            _ => Pieces::Ragged { per_unit: counts },
        }
    }

    /// Number of units.
    pub fn units(&self) -> usize {
        match self {
            Pieces::Uniform { units, .. } => *units,
            Pieces::Ragged { per_unit } => per_unit.len(),
        }
    }

    /// Pieces of unit `u`.
    pub fn count(&self, u: usize) -> usize {
        match self {
            Pieces::Uniform { k, .. } => *k,
            Pieces::Ragged { per_unit } => per_unit[u],
        }
    }

    /// Pieces of every unit, in unit order.
    pub fn counts(&self) -> Vec<usize> {
        (0..self.units()).map(|u| self.count(u)).collect()
    }

    /// Total number of pieces (the producer's width).
    pub fn total(&self) -> usize {
        match self {
            Pieces::Uniform { units, k } => units.saturating_mul(*k),
            Pieces::Ragged { per_unit } => per_unit.iter().fold(0, |a: usize, &c| a.saturating_add(c)),
        }
    }

    /// The largest piece count of any unit.
    pub fn k_max(&self) -> usize {
        match self {
            Pieces::Uniform { k, .. } => *k,
            Pieces::Ragged { per_unit } => per_unit.iter().copied().max().unwrap_or(0),
        }
    }

    /// Whether every unit has the same number of pieces.
    pub fn is_uniform(&self) -> bool {
        matches!(self, Pieces::Uniform { .. })
    }
}

impl fmt::Display for Pieces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pieces::Uniform { k, .. } => write!(f, "{k}"),
            Pieces::Ragged { per_unit } => {
                let lo = per_unit.iter().min().unwrap_or(&0);
                write!(f, "{lo}..{}", self.k_max())
            }
        }
    }
}

/// An activation's shape (per example).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActShape {
    /// Feature maps `[channels, height, width]`.
    Map([usize; 3]),
    /// A vector of features.
    Flat(usize),
}

impl ActShape {
    /// Number of values per example.
    pub fn numel(&self) -> usize {
        match self {
            ActShape::Map([c, h, w]) => c * h * w,
            ActShape::Flat(n) => *n,
        }
    }

    /// Channels of a map, or the width of a vector.
    pub fn channels(&self) -> usize {
        match self {
            ActShape::Map([c, _, _]) => *c,
            ActShape::Flat(n) => *n,
        }
    }
}

impl fmt::Display for ActShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActShape::Map([c, h, w]) => write!(f, "{c}x{h}x{w}"),
            ActShape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// What validation and shape inference learn about one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerInfo {
    /// Index in [`ArchSpec::layers`].
    pub index: usize,
    /// Kind name.
    pub kind: &'static str,
    /// Name, for layers with parameters.
    pub name: Option<String>,
    /// Shape of the layer's input.
    pub input: ActShape,
    /// Shape of the layer's output.
    pub output: ActShape,
    /// Maxout units (maxout layers only).
    pub units: Option<usize>,
    /// Pieces per unit (maxout layers only; `lo..hi` when ragged).
    pub k: Option<String>,
    /// Whether the max is taken over rectified pieces (maxout layers only; see
    /// [`ArchSpec::rectified_pieces`]).
    pub rectified: Option<bool>,
    /// Number of parameters.
    pub params: usize,
    /// Floating-point operations for one example: 2 x multiply-accumulates of conv and dense
    /// layers; pooling, activations and maxout comparisons are not counted.
    pub flops: usize,
}

/// A network's architecture: the single source of truth for building, pruning and loading it.
///
/// ```
/// use maxprune::model::presets::Preset;
/// use maxprune::model::spec::ArchSpec;
///
/// let spec = Preset::Lenet5Maxout.spec();
/// let again = ArchSpec::from_json(&spec.to_json(), "spec.json").unwrap();
/// assert_eq!(again.fingerprint(), spec.fingerprint());
/// // One maxout layer: 125 units of 4 pieces, fed by fc1's 500 outputs.
/// let [(layer, pieces)] = spec.maxouts()[..] else { panic!() };
/// assert_eq!((pieces.units(), pieces.k_max(), pieces.total()), (125, 4, 500));
/// assert_eq!(spec.pieces(layer), Some(pieces));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    /// Format version of this document ([`SPEC_FORMAT_VERSION`]).
    pub format_version: u32,
    /// A human-readable name (the preset's, for presets).
    pub name: String,
    /// The input shape.
    pub input: InputShape,
    /// The layers, input to output. The last layer's output is the class scores.
    pub layers: Vec<LayerSpec>,
    /// How fresh weights are drawn (absent in a file: `xavier`).
    #[serde(default, skip_serializing_if = "Init::is_xavier")]
    pub init: Init,
}

/// Weight initialisation of conv and dense layers (biases start at 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Caffe's `xavier` filler: uniform in ±sqrt(3 / fan_in) (the paper's LeNet-5).
    #[default]
    Xavier,
    /// He et al. (2015): uniform in ±sqrt(6 / fan_in), which keeps the signal's scale through
    /// deep ReLU stacks such as VGG16 (with `xavier` it fades and training stalls).
    He,
}

impl Init {
    fn is_xavier(&self) -> bool {
        *self == Init::Xavier
    }

    /// The bound `a` of the uniform distribution [-a, a] for `fan_in` inputs.
    pub fn bound(self, fan_in: usize) -> f32 {
        let gain = match self {
            Init::Xavier => 3.0,
            Init::He => 6.0,
        };
        (gain / fan_in as f32).sqrt()
    }
}

fn invalid(index: usize, layer: &LayerSpec, message: impl fmt::Display) -> Error {
    Error::invalid("spec", format!("layer {index} ({layer}): {message}"))
}

impl ArchSpec {
    /// A stable fingerprint of the spec: SHA-256 of its JSON, first 16 hex digits. Plans and
    /// relevance files carry it, so that they are refused on another network.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(serde_json::to_vec(self).expect("spec serializes"));
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the spec and infers every layer's shapes, parameters and FLOPs.
    ///
    /// Errors name the layer and say what was expected: k >= 1, the producer's width equal
    /// to the maxout pieces, positive spatial sizes, dense layers after `flatten`, unique names.
    pub fn validate(&self) -> Result<Vec<LayerInfo>> {
        if self.format_version != SPEC_FORMAT_VERSION {
            return Err(Error::invalid(
                "spec",
                format!(
                    "format_version: expected {SPEC_FORMAT_VERSION}, found {}",
                    self.format_version
                ),
            ));
        }
        let InputShape {
            channels,
            height,
            width,
        } = self.input;
        if channels == 0 || height == 0 || width == 0 {
            return Err(Error::invalid(
                "spec",
                format!("input: expected positive sizes, found {channels}x{height}x{width}"),
            ));
        }
        if channels.max(height).max(width) > MAX_SIDE || channels * height * width > MAX_TENSOR_ELEMENTS {
            return Err(Error::invalid(
                "spec",
                format!(
                    "input: {channels}x{height}x{width} exceeds the limits of {MAX_SIDE} per side and \
                     {MAX_TENSOR_ELEMENTS} values"
                ),
            ));
        }
        if self.layers.is_empty() {
            return Err(Error::invalid("spec", "layers: expected at least one layer"));
        }
        if self.layers.len() > MAX_LAYERS {
            return Err(Error::invalid(
                "spec",
                format!("layers: {} exceeds the limit of {MAX_LAYERS}", self.layers.len()),
            ));
        }
        let mut total_params = 0usize;
        let mut shape = ActShape::Map([channels, height, width]);
        let mut names = std::collections::HashSet::new();
        let mut infos = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(name) = layer.name() {
                if !is_safe_name(name) {
                    return Err(invalid(
                        i,
                        layer,
                        format!(
                            "name: expected 1 to {MAX_NAME} of A-Z a-z 0-9 _ - . not starting with '.' (names \
                             become file and tensor names), found {name:?}"
                        ),
                    ));
                }
                if !names.insert(name.to_string()) {
                    return Err(invalid(
                        i,
                        layer,
                        format!("name: expected a unique name, found {name:?} twice"),
                    ));
                }
            }
            let input = shape;
            if layer.role() == Role::Maxout {
                self.check_producer(i)?;
            }
            let Inferred { output, params, flops } = layer.infer(input).map_err(|m| invalid(i, layer, m))?;
            let (units, k, rectified) = match layer.pieces() {
                Some(pieces) => (
                    Some(pieces.units()),
                    Some(pieces.to_string()),
                    Some(self.rectified_pieces(i)),
                ),
                None => (None, None, None),
            };
            total_params = total_params.saturating_add(params);
            if total_params > MAX_PARAMS {
                return Err(invalid(
                    i,
                    layer,
                    format!("the network reaches {total_params} parameters here, over the limit of {MAX_PARAMS}"),
                ));
            }
            infos.push(LayerInfo {
                index: i,
                kind: layer.kind(),
                name: layer.name().map(str::to_string),
                input,
                output,
                units,
                k,
                rectified,
                params,
                flops,
            });
            shape = output;
        }
        if !matches!(shape, ActShape::Flat(_)) {
            return Err(Error::invalid(
                "spec",
                format!("the last layer must output a vector of class scores, found maps {shape}"),
            ));
        }
        Ok(infos)
    }

    /// A maxout layer's pieces must be one producer's outputs.
    fn check_producer(&self, i: usize) -> Result<()> {
        if self.producer_of(i).is_some() {
            return Ok(());
        }
        let found = self.layers[..i]
            .iter()
            .rev()
            .find(|l| !is_piecewise(l))
            .map_or("the input", |l| l.kind());
        Err(invalid(
            i,
            &self.layers[i],
            format!(
                "expected a conv2d or dense layer before it (only relu, dropout and batch-norm may stand \
                 between, since they act on each piece alone), found {found}: its pieces would not be \
                 one layer's outputs, so they could not be pruned"
            ),
        ))
    }

    /// The index of the conv or dense layer that reads the units of the maxout layer at `maxout`
    /// (through pooling, dropout, relu or flatten); `None` when another maxout layer or the end
    /// of the network comes first.
    pub fn consumer_of(&self, maxout: usize) -> Option<usize> {
        (maxout + 1..self.layers.len())
            .find(|&c| matches!(self.layers[c].role(), Role::Producer | Role::Maxout))
            .filter(|&c| self.layers[c].role() == Role::Producer)
    }

    /// The index of the conv or dense layer whose outputs the maxout layer at `maxout` groups
    /// (through relu and dropout, which act on each piece alone); for a conv or dense layer
    /// itself (a plain unit layer, see [`unit_layers`](Self::unit_layers)), that layer.
    pub fn producer_of(&self, maxout: usize) -> Option<usize> {
        if has_outputs(self.layers.get(maxout)?) {
            return Some(maxout);
        }
        self.layers[..maxout]
            .iter()
            .rposition(|l| !is_piecewise(l))
            .filter(|&p| has_outputs(&self.layers[p]))
    }

    /// The layers whose units can be scored and removed, in order: every maxout layer (its
    /// units and pieces), and every plain conv or dense layer that feeds another conv or dense
    /// layer (each output channel or neuron a unit of one piece; the classifier and the producers
    /// of maxout layers are not among them). A unit layer is named by its producer.
    pub fn unit_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| self.unit_pieces(i).is_some())
            .collect()
    }

    /// The unit layers scored and pruned when none are named: the maxout layers, or in a network
    /// without any, every plain unit layer.
    pub fn default_unit_layers(&self) -> Vec<usize> {
        match self.maxout_layers() {
            m if m.is_empty() => self.unit_layers(),
            m => m,
        }
    }

    /// The units of unit layer `layer`: a maxout layer's pieces, or a plain layer's outputs as
    /// units of one piece; `None` for other layers.
    pub fn unit_pieces(&self, layer: usize) -> Option<Pieces> {
        let l = self.layers.get(layer)?;
        match (l.pieces(), l.outputs()) {
            (Some(pieces), _) => Some(pieces.clone()),
            (None, Some(units)) if self.consumer_of(layer).is_some() => Some(Pieces::Uniform { units, k: 1 }),
            _ => None,
        }
    }

    /// The name of unit layer `layer`: its producer's (`""` for a layer that is none).
    pub fn unit_name(&self, layer: usize) -> &str {
        self.producer_of(layer)
            .and_then(|p| self.layers[p].name())
            .unwrap_or_default()
    }

    /// The unit layers named in `names` (by producer, as [`unit_name`](Self::unit_name)), in
    /// spec order; an empty list gives [`default_unit_layers`](Self::default_unit_layers). An
    /// unknown name is an error that lists the unit layers.
    pub fn unit_layers_named(&self, names: &[String]) -> Result<Vec<usize>> {
        if names.is_empty() {
            return Ok(self.default_unit_layers());
        }
        let all = self.unit_layers();
        let mut found = Vec::new();
        for name in names {
            match all.iter().find(|&&l| self.unit_name(l) == name) {
                Some(&l) => found.push(l),
                None => {
                    let known: Vec<&str> = all.iter().map(|&l| self.unit_name(l)).collect();
                    return Err(Error::Invalid {
                        what: "layers",
                        message: format!(
                            "{}: '{name}' is not a layer whose units can be pruned; expected one of {}",
                            self.name,
                            known.join(", ")
                        ),
                    });
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// The layer whose output a plain unit layer's units are read at: after the relu and
    /// dropout that follow it (a maxout layer's are its pieces, at the maxout itself).
    pub fn unit_output(&self, layer: usize) -> usize {
        layer + self.layers[layer + 1..].iter().take_while(|l| is_piecewise(l)).count()
    }

    /// This architecture at another size: conv filters and hidden dense widths multiplied by
    /// `width` (rounded, at least 1; a maxout layer keeps its k and scales its units, its
    /// producer following), the input resized to `input`, and the last layer's outputs set to
    /// `classes`. Ragged maxout layers cannot be scaled.
    pub fn scaled(&self, width: f64, input: InputShape, classes: usize) -> Result<ArchSpec> {
        let invalid = |message: String| Error::Invalid {
            what: "scaling",
            message,
        };
        if !(width > 0.0 && width.is_finite()) {
            return Err(invalid(format!("width multiplier must be positive, got {width}")));
        }
        let mut spec = self.clone();
        spec.input = input;
        let scale = |n: usize| ((n as f64 * width).round() as usize).max(1);
        let last = spec.layers.iter().rposition(|l| l.role() == Role::Producer);
        for (i, layer) in spec.layers.iter_mut().enumerate() {
            let Some(outputs) = layer.outputs() else { continue };
            if Some(i) != last {
                layer.set_outputs(scale(outputs));
            } else if let LayerSpec::Dense(_) = layer {
                layer.set_outputs(classes);
            } else {
                return Err(invalid(format!(
                    "the last layer {} is a {} layer, not a classifier",
                    layer.name().unwrap_or_default(),
                    layer.kind()
                )));
            }
        }
        for m in spec.maxout_layers() {
            let Some(&Pieces::Uniform { units, k }) = spec.layers[m].pieces() else {
                return Err(invalid(format!("layer {m}: ragged maxout layers cannot be scaled")));
            };
            let units = scale(units);
            spec.layers[m] = LayerSpec::maxout(Pieces::Uniform { units, k });
            if let Some(p) = spec.producer_of(m) {
                spec.layers[p].set_outputs(units * k);
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    /// How many leading layers produce the embedding used for verification: with no `layer`,
    /// everything before the last conv/dense layer (the classifier), i.e. the penultimate
    /// representation; with a layer name, that layer and the activations (relu, maxout,
    /// dropout) directly after it.
    pub fn embedding_depth(&self, layer: Option<&str>) -> Result<usize> {
        let has_params = |l: &LayerSpec| l.name().is_some();
        match layer {
            None => self
                .layers
                .iter()
                .rposition(has_params)
                .filter(|&i| i > 0)
                .ok_or_else(|| Error::Invalid {
                    what: "spec",
                    message: format!("{}: no layer before the classifier to take embeddings from", self.name),
                }),
            Some(name) => {
                let i = self.layers.iter().position(|l| l.name() == Some(name)).ok_or_else(|| {
                    let names: Vec<&str> = self.layers.iter().filter_map(|l| l.name()).collect();
                    Error::Invalid {
                        what: "layer",
                        message: format!("{}: no layer named '{name}' (layers: {})", self.name, names.join(", ")),
                    }
                })?;
                let activations = self.layers[i + 1..]
                    .iter()
                    .take_while(|l| matches!(l.role(), Role::Piecewise | Role::Maxout))
                    .count();
                Ok(i + 1 + activations)
            }
        }
    }

    /// Whether the maxout layer at `maxout` takes its max over rectified pieces (a `relu`
    /// between it and its producer).
    pub fn rectified_pieces(&self, maxout: usize) -> bool {
        self.pieces(maxout).is_some()
            && self.producer_of(maxout).is_some_and(|p| {
                self.layers[p + 1..maxout]
                    .iter()
                    .any(|l| matches!(l, LayerSpec::Relu(_)))
            })
    }

    /// The maxout layers with their pieces, in order: `(layer index, pieces)`.
    pub fn maxouts(&self) -> Vec<(usize, &Pieces)> {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.pieces()?)))
            .collect()
    }

    /// The pieces of layer `layer`, when it is a maxout layer.
    pub fn pieces(&self, layer: usize) -> Option<&Pieces> {
        self.layers.get(layer)?.pieces()
    }

    /// Indices of the maxout layers.
    pub fn maxout_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| self.layers[i].role() == Role::Maxout)
            .collect()
    }

    /// Total parameters (validates first).
    pub fn num_params(&self) -> Result<usize> {
        Ok(self.validate()?.iter().map(|l| l.params).sum())
    }

    /// Every tensor of the spec's network, parameters and buffers, as `(name, shape)` in layer
    /// order (names `<layer>.<role>`, as files store them), without allocating any (validates
    /// first).
    pub fn tensor_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        Ok(self
            .validate()?
            .iter()
            .zip(&self.layers)
            .flat_map(|(info, layer)| {
                let name = layer.name().unwrap_or_default();
                layer
                    .params(info.input)
                    .into_iter()
                    .map(move |d| (format!("{name}.{}", d.role), d.shape))
            })
            .collect())
    }

    /// Compares a file's tensor table, `(name, shape)` of each tensor it holds, with
    /// [`tensor_shapes`](Self::tensor_shapes), before any network is built from it, so that a
    /// small file never makes a reader allocate a large network first. `Some` says the first
    /// tensor missing or of another shape, or a tensor the spec does not name.
    pub fn table_mismatch<'a>(&self, table: impl IntoIterator<Item = (&'a str, Vec<usize>)>) -> Result<Option<String>> {
        let mut table: BTreeMap<&str, Vec<usize>> = table.into_iter().collect();
        for (name, shape) in self.tensor_shapes()? {
            match table.remove(name.as_str()) {
                Some(found) if found == shape => {}
                Some(found) => return Ok(Some(format!("'{name}' has shape {found:?}, the spec needs {shape:?}"))),
                None => return Ok(Some(format!("'{name}' is missing (written for another spec?)"))),
            }
        }
        Ok(table
            .keys()
            .next()
            .map(|extra| format!("extra tensor '{extra}', which the spec does not name")))
    }

    /// The FLOPs for one example that each unit of unit layer `layer` costs, in unit order:
    /// what its producer spends computing its pieces plus what its consumer spends reading it
    /// (counted as [`LayerInfo::flops`]; validates first). Removing units of two adjacent
    /// layers saves a little less than their costs' sum, since both count the weights between
    /// them.
    pub fn unit_flops(&self, layer: usize) -> Result<Vec<f64>> {
        let infos = self.validate()?;
        let pieces = self.unit_pieces(layer).ok_or_else(|| {
            Error::invalid(
                "layers",
                format!("{}: expected a unit layer at index {layer}, found none", self.name),
            )
        })?;
        let per_piece = self
            .producer_of(layer)
            .map_or(0.0, |p| infos[p].flops as f64 / pieces.total().max(1) as f64);
        let reading = self
            .consumer_of(layer)
            .map_or(0.0, |c| infos[c].flops as f64 / pieces.units().max(1) as f64);
        Ok((0..pieces.units())
            .map(|u| per_piece * pieces.count(u) as f64 + reading)
            .collect())
    }

    /// The fewest FLOPs for one example left after removing every unit but one (one with the
    /// fewest pieces) from each of the unit layers `layers` (validates first): a conv or dense
    /// layer's FLOPs scale with the share of its inputs and of its outputs that stay.
    pub fn flops_keeping_one_unit(&self, layers: &[usize]) -> Result<usize> {
        let infos = self.validate()?;
        let mut scale = vec![1.0f64; infos.len()];
        for &l in layers {
            let pieces = self.unit_pieces(l).ok_or_else(|| {
                Error::invalid(
                    "layers",
                    format!("{}: expected a unit layer at index {l}, found none", self.name),
                )
            })?;
            let fewest = pieces.counts().into_iter().min().unwrap_or(0);
            if let Some(p) = self.producer_of(l) {
                scale[p] *= fewest as f64 / pieces.total().max(1) as f64;
            }
            if let Some(c) = self.consumer_of(l) {
                scale[c] /= pieces.units().max(1) as f64;
            }
        }
        Ok(infos
            .iter()
            .zip(&scale)
            .map(|(i, s)| (i.flops as f64 * s).round() as usize)
            .sum())
    }

    /// Total FLOPs for one example (validates first).
    pub fn flops(&self) -> Result<usize> {
        Ok(self.validate()?.iter().map(|l| l.flops).sum())
    }

    /// Number of classes: the last layer's output width (validates first).
    pub fn classes(&self) -> Result<usize> {
        Ok(self.validate()?.last().map_or(0, |l| l.output.numel()))
    }

    /// Parses a `spec.json` document; `source` names it in errors. Validates the result.
    pub fn from_json(text: &str, source: &str) -> Result<ArchSpec> {
        // A UTF-8 byte-order mark (as some editors write) is not part of the document.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let spec: ArchSpec = serde_json::from_str(text).map_err(|e| Error::parse(source, e))?;
        spec.validate().map_err(|e| match e {
            Error::Invalid { what, message } => Error::invalid(what, format!("{source}: {message}")),
            other => Error::invalid("spec", format!("{source}: {other}")),
        })?;
        Ok(spec)
    }

    /// Parses the spec that maxprune stores in a safetensors file's metadata under
    /// [`SPEC_METADATA_KEY`]; errors name `file` and the entry.
    pub fn from_metadata(text: &str, file: &str) -> Result<ArchSpec> {
        ArchSpec::from_json(
            text,
            &format!("{file}: metadata entry {SPEC_METADATA_KEY:?} (expected the network's spec as JSON)"),
        )
    }

    /// The spec as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an ArchSpec always serializes")
    }
}

/// Conv and dense layers: the layers with outputs of their own.
fn has_outputs(layer: &LayerSpec) -> bool {
    layer.role() == Role::Producer
}

/// Layers that may stand between a maxout layer and its producer: they act on every value
/// alone, so piece `j` of unit `u` stays the producer's output `layout::piece_index(u, j)`.
fn is_piecewise(layer: &LayerSpec) -> bool {
    layer.role() == Role::Piecewise
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{Conv2d, Dense, Flatten, Maxout, Relu};
    use crate::model::presets::Preset;

    fn err(spec: &ArchSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn k_zero_is_rejected() {
        let mut s = Preset::Lenet5Maxout.spec();
        for l in &mut s.layers {
            if let LayerSpec::Maxout(Maxout { pieces }) = l {
                *pieces = Pieces::Uniform { units: 125, k: 0 };
            }
        }
        let e = err(&s);
        assert!(e.contains("maxout") && e.contains("k >= 1"), "{e}");
    }

    #[test]
    fn width_not_divisible_by_k_is_rejected() {
        let mut s = Preset::Lenet5Maxout.spec();
        for l in &mut s.layers {
            if let LayerSpec::Maxout(Maxout { pieces }) = l {
                *pieces = Pieces::Uniform { units: 166, k: 3 };
            }
        }
        let e = err(&s);
        assert!(e.contains("498") && e.contains("found 500"), "{e}");
    }

    #[test]
    fn spatial_size_must_stay_positive() {
        let mut s = Preset::Lenet5.spec();
        s.input.height = 8;
        let e = err(&s);
        assert!(
            e.contains("layer 2 (conv2d 'conv2')") && e.contains("expected positive"),
            "{e}"
        );
    }

    #[test]
    fn dense_needs_flat_input_and_maxout_needs_producer() {
        let mut s = Preset::Lenet5.spec();
        s.layers.retain(|l| !matches!(l, LayerSpec::Flatten(Flatten {})));
        assert!(err(&s).contains("add a flatten layer"));
        let mut s = Preset::Lenet5.spec();
        s.layers.insert(
            2,
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units: 10, k: 2 },
            }),
        );
        assert!(err(&s).contains("expected a conv2d or dense layer before it"));
    }

    #[test]
    fn relu_and_dropout_may_stand_between_producer_and_maxout_nothing_else() {
        let maxout = |units, k| {
            LayerSpec::Maxout(Maxout {
                pieces: Pieces::Uniform { units, k },
            })
        };
        let rectified = Preset::Lenet5Maxout.spec();
        let m = rectified.maxout_layers()[0];
        assert_eq!(rectified.producer_of(m), Some(5));
        assert!(rectified.rectified_pieces(m));
        assert_eq!(rectified.validate().unwrap()[m].rectified, Some(true));
        // dropout before relu, relu alone, and a conv maxout over rectified channels
        let mut s = Preset::Lenet5Maxout.spec();
        s.layers.swap(6, 7);
        assert!(s.validate().is_ok() && s.rectified_pieces(m));
        let mut s = Preset::Lenet5Maxout.spec();
        s.layers.remove(7);
        assert!(s.validate().is_ok() && s.rectified_pieces(m - 1));
        let mut s = Preset::Lenet5.spec();
        s.layers.insert(1, LayerSpec::Relu(Relu {}));
        s.layers.insert(2, maxout(5, 4));
        assert_eq!(s.producer_of(2), Some(0));
        assert!(s.validate().is_ok() && s.rectified_pieces(2));
        // Pooling between the conv layer and the maxout: the pieces are no longer one layer's
        // outputs, which the spec refuses with what it found.
        let mut s = Preset::Lenet5.spec();
        s.layers.insert(2, maxout(5, 4));
        let e = err(&s);
        assert!(
            e.contains("layer 2 (maxout)")
                && e.contains("only relu, dropout and batch-norm")
                && e.contains("found max-pool"),
            "{e}"
        );
        let mut s = Preset::Lenet5.spec();
        s.layers.insert(0, maxout(1, 1));
        assert!(err(&s).contains("found the input"));
    }

    #[test]
    fn regression_huge_sizes_are_refused_before_anything_is_allocated() {
        // Seen: filters 10^12 or dense outputs 2^40 aborted on allocation; filters 2^62 and
        // padding 10^9 panicked; inspect printed wrapped parameter counts.
        let with = |f: &dyn Fn(&mut LayerSpec)| {
            let mut s = Preset::Lenet5.spec();
            s.layers.iter_mut().for_each(f);
            err(&s)
        };
        let e = with(&|l| {
            if let LayerSpec::Conv2d(Conv2d { filters, .. }) = l {
                *filters = 1_000_000_000_000;
            }
        });
        assert!(
            e.contains("conv1") && e.contains("exceeds the limit of 1073741824 elements"),
            "{e}"
        );
        let e = with(&|l| {
            if let LayerSpec::Conv2d(Conv2d { filters, .. }) = l {
                *filters = 1 << 62;
            }
        });
        assert!(e.contains("filters of shape [4611686018427387904]"), "{e}");
        let e = with(&|l| {
            if let LayerSpec::Conv2d(Conv2d { padding, .. }) = l {
                *padding = 1_000_000_000;
            }
        });
        assert!(e.contains("padding: 1000000000 exceeds the limit of 65536"), "{e}");
        let e = with(&|l| {
            if let LayerSpec::Dense(Dense { outputs, .. }) = l {
                *outputs = 1 << 40;
            }
        });
        assert!(
            e.contains("fc1") && e.contains("weight of shape [800, 1099511627776]"),
            "{e}"
        );
        let mut s = Preset::Lenet5Maxout.spec();
        let m = s.maxout_layers()[0];
        s.layers[m] = LayerSpec::Maxout(Maxout {
            pieces: Pieces::Ragged {
                per_unit: vec![usize::MAX, 2],
            },
        });
        assert!(err(&s).contains("sum to 18446744073709551615"));
        let mut s = Preset::Lenet5.spec();
        s.input.height = 100_000;
        assert!(err(&s).contains("limits of 65536 per side"));
        let mut s = Preset::Lenet5.spec();
        s.layers = vec![LayerSpec::Relu(Relu {}); MAX_LAYERS + 1];
        assert!(err(&s).contains("exceeds the limit of 10000"));
    }

    #[test]
    fn regression_names_that_could_reach_a_file_path_are_refused() {
        // Seen: a layer named `../evil` or `a/b` was accepted; layer names become file names.
        for bad in ["../evil", "a/b", "a\\b", ".hidden", "", "x y", &"n".repeat(65)] {
            let mut s = Preset::Lenet5.spec();
            if let LayerSpec::Conv2d(Conv2d { name, .. }) = &mut s.layers[0] {
                *name = bad.into();
            }
            assert!(err(&s).contains("name: expected 1 to 64"), "{bad:?}: {}", err(&s));
        }
    }

    #[test]
    fn duplicate_names_and_versions_are_rejected() {
        let mut s = Preset::Lenet5.spec();
        if let LayerSpec::Dense(Dense { name, .. }) = &mut s.layers[5] {
            *name = "conv1".into();
        }
        assert!(err(&s).contains("unique"));
        let mut s = Preset::Lenet5.spec();
        s.format_version = 99;
        assert!(err(&s).contains("format_version"));
    }

    #[test]
    fn json_round_trip_and_errors() {
        let s = Preset::SeedLenet.spec();
        assert_eq!(ArchSpec::from_json(&s.to_json(), "x").unwrap(), s);
        // Seen: a UTF-8 byte-order mark gave "expected value at line 1 column 1".
        assert_eq!(
            ArchSpec::from_json(&format!("\u{feff}{}", s.to_json()), "x").unwrap(),
            s
        );
        let e = crate::error::error_chain(&ArchSpec::from_json("{\"format_version\": 1}", "spec.json").unwrap_err());
        assert!(e.contains("spec.json") && e.contains("missing field"), "{e}");
    }

    #[test]
    fn ragged_pieces_are_compacted_and_counted() {
        assert!(Pieces::from_counts(vec![3, 3]).is_uniform());
        let p = Pieces::from_counts(vec![3, 1, 2]);
        assert_eq!(
            (p.units(), p.total(), p.k_max(), p.to_string()),
            (3, 6, 3, "1..3".to_string())
        );
    }
}
