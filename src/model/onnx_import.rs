//! An ONNX model (as `torch.onnx.export` or `maxprune export --format onnx` writes it) into a
//! network: its [`ArchSpec`] and parameters.
//!
//! The graph must be a chain: one float input `[batch, C, H, W]`, one output, and every computed
//! value read by the next layer only. Operators map to layer kinds: `Conv` (groups 1, square
//! kernel, equal strides and pads) -> `conv2d`; `Gemm`, and `MatMul` with an optional following
//! `Add` of a bias -> `dense`; `Relu`; `MaxPool` (no padding, floor) -> `max-pool`;
//! `AveragePool` -> `avg-pool`; `GlobalAveragePool` (or `ReduceMean` over the two spatial axes)
//! -> `global-avg-pool`; `Flatten` and `Reshape` to `[N, -1]` -> `flatten` (nothing after a
//! vector); `BatchNormalization` -> `batch-norm` (folded into the layer before it with
//! [`OnnxOptions::fold_bn`]); `Reshape` to `[N, units, k]` or `[N, units, k, H, W]` followed by
//! `ReduceMax` over axis 2 -> `maxout` (a `Gather` of channels before the `Reshape`, as maxprune
//! writes ragged layers, gives the pieces per unit). `Dropout` and `Identity` are dropped. A
//! `Sub` and `Div` by constants before the first layer are the input's normalisation
//! ([`Imported::mean`], [`Imported::std`]).
//!
//! Shape arithmetic (`Shape`, `Gather`, `Unsqueeze`, `Squeeze`, `Concat`, `Slice`, `Cast`,
//! `Constant`) is evaluated for the model's input shape; nodes whose outputs nothing reads are
//! ignored. Any other operator, an operator of another domain than the default one, or a node
//! reading a value other than the chain's last one (a residual `Add`, a `Concat` of branches),
//! is an error naming the node.
//!
//! Parsing uses the prost messages of [`crate::onnx`] rather than `tract-onnx`: the importer
//! needs the file's own initializer names and operator attributes (tract rewrites the graph
//! into its own operators), and it adds no dependency to the library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::tensor::Device;
use prost::Message;

use crate::error::{Error, Result};
use crate::model::layers::{Kind, LayerSpec, Role};
use crate::model::network::{Network, non_finite};
use crate::model::params::{LayerParams, Param};
use crate::model::spec::{ActShape, ArchSpec, Init, InputShape, Pieces, SPEC_FORMAT_VERSION};
use crate::onnx::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// Operators a layer chain may use (listed in refusals).
const SUPPORTED: &str = "Conv, Gemm, MatMul (+ Add), Relu, MaxPool, AveragePool, GlobalAveragePool, \
     ReduceMean (spatial), Flatten, Reshape, Gather + Reshape + ReduceMax (maxout), \
     BatchNormalization, Dropout, Identity, Sub/Div (input normalisation), and shape arithmetic \
     (Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Constant)";

/// The batch size shape arithmetic is evaluated for when the file's batch is symbolic: a
/// prime no layer width is likely to equal.
const SYMBOLIC_BATCH: usize = 1_000_003;

/// How to read the file.
#[derive(Debug, Clone, Default)]
pub struct OnnxOptions {
    /// The input's `[C, H, W]` when the file leaves any of them symbolic (must agree with the
    /// file's fixed sizes).
    pub input: Option<InputShape>,
    /// Fold every batch normalisation into the conv or dense layer before it.
    pub fold_bn: bool,
}

/// The imported network and what the file said about its input.
pub struct Imported {
    /// The network (evaluation mode).
    pub network: Network,
    /// Per-channel mean subtracted from the `[0, 1]` input before the first layer, if any.
    pub mean: Option<Vec<f64>>,
    /// Per-channel std the input is divided by before the first layer, if any.
    pub std: Option<Vec<f64>>,
    /// Nodes dropped as the identity in inference (`Dropout`, `Identity`), by name.
    pub dropped: Vec<String>,
}

/// A constant tensor (an initializer or the value of shape arithmetic).
#[derive(Debug, Clone)]
struct Const {
    dims: Vec<usize>,
    data: Data,
}

#[derive(Debug, Clone)]
enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Const {
    fn ints(values: Vec<i64>) -> Const {
        Const {
            dims: vec![values.len()],
            data: Data::I64(values),
        }
    }

    fn as_ints(&self) -> Vec<i64> {
        match &self.data {
            Data::I64(v) => v.clone(),
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    fn as_floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A layer found in the graph: its spec and its tensors by role.
struct Found {
    layer: LayerSpec,
    tensors: BTreeMap<&'static str, Vec<f32>>,
}

/// A `Gather` and `Reshape` waiting for the `ReduceMax` that makes them a maxout layer.
enum Pending {
    None,
    Gather(Vec<i64>),
    Units(Pieces),
}

/// Reads the ONNX model `bytes`; `source` is the file (external data is read beside it, and its
/// stem names the spec). See the module's documentation for what is accepted.
///
/// ```
/// use std::path::Path;
/// use burn::tensor::Device;
/// use maxprune::data::transform::Normalization;
/// use maxprune::model::network::Network;
/// use maxprune::model::onnx_import::{OnnxOptions, import_onnx};
/// use maxprune::model::presets::Preset;
///
/// let net = Network::init(&Preset::SeedLenet.spec(), 7, &Device::flex()).unwrap();
/// let onnx = maxprune::onnx::export(&net, &Normalization::default()).unwrap();
/// let back = import_onnx(&onnx, Path::new("seed.onnx"), &OnnxOptions::default(), &Device::flex()).unwrap();
/// assert_eq!(back.network.num_params(), net.num_params());
/// assert_eq!(back.network.spec().name, "seed");
/// ```
pub fn import_onnx(bytes: &[u8], source: &Path, options: &OnnxOptions, device: &Device) -> Result<Imported> {
    let path = source.display().to_string();
    let model = ModelProto::decode(bytes).map_err(|e| Error::Format {
        path: path.clone(),
        what: "ONNX model".into(),
        expected: "a protobuf ModelProto".into(),
        found: e.to_string(),
    })?;
    let graph = model
        .graph
        .ok_or_else(|| format_error(&path, "graph", "a graph", "none"))?;
    let dir = source.parent().unwrap_or(Path::new("."));
    let mut consts = BTreeMap::new();
    for t in &graph.initializer {
        consts.insert(t.name.clone(), decode_tensor(t, dir, &path)?);
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !consts.contains_key(&i.name)).collect();
    let [input] = inputs[..] else {
        return Err(format_error(
            &path,
            "graph inputs",
            "exactly one input (besides initializers)",
            &format!("{}", inputs.len()),
        ));
    };
    let [output] = &graph.output[..] else {
        return Err(format_error(
            &path,
            "graph outputs",
            "exactly one output",
            &format!("{}", graph.output.len()),
        ));
    };
    let dims: Vec<Option<usize>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(crate::onnx::proto::DimensionValue::DimValue(v)) if v > 0 => Some(v as usize),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if dims.len() != 4 {
        return Err(format_error(
            &path,
            &format!("input '{}'", input.name),
            "a rank-4 [batch, C, H, W] input",
            &format!("rank {}", dims.len()),
        ));
    }
    let shape = match (options.input, [dims[1], dims[2], dims[3]]) {
        (Some(given), file) => {
            let want = [given.channels, given.height, given.width];
            if file.iter().zip(want).any(|(f, w)| f.is_some_and(|f| f != w)) {
                return Err(format_error(
                    &path,
                    &format!("input '{}'", input.name),
                    &format!("the --input-shape {},{},{}", want[0], want[1], want[2]),
                    &format!("{file:?}"),
                ));
            }
            given
        }
        (None, [Some(channels), Some(height), Some(width)]) => InputShape {
            channels,
            height,
            width,
        },
        (None, file) => {
            return Err(format_error(
                &path,
                &format!("input '{}'", input.name),
                "fixed C, H and W (or give --input-shape C,H,W)",
                &format!("{file:?}"),
            ));
        }
    };
    let batch = dims[0].unwrap_or(SYMBOLIC_BATCH);
    // Nodes nothing reads (an ArgMax beside a ReduceMax, say) do not affect the output.
    let mut live: BTreeSet<&str> = BTreeSet::from([output.name.as_str()]);
    let mut nodes = Vec::new();
    for node in graph.node.iter().rev() {
        if node.output.iter().any(|o| live.contains(o.as_str())) {
            live.extend(node.input.iter().map(String::as_str));
            nodes.push(node);
        }
    }
    nodes.reverse();
    let mut walk = Walk {
        path: path.clone(),
        input: shape,
        dir,
        consts,
        dyn_dims: BTreeMap::from([(
            input.name.clone(),
            vec![batch, shape.channels, shape.height, shape.width],
        )]),
        cur: input.name.clone(),
        act: ActShape::Map([shape.channels, shape.height, shape.width]),
        batch,
        found: Vec::new(),
        pending: Pending::None,
        open_bias: false,
        mean: None,
        std: None,
        dropped: Vec::new(),
        names: BTreeSet::new(),
    };
    for node in nodes {
        walk.node(node)?;
    }
    if walk.cur != output.name || !matches!(walk.pending, Pending::None) {
        return Err(format_error(
            &path,
            &format!("output '{}'", output.name),
            "the end of the layer chain",
            &format!("a value the chain does not end with (the chain ends at '{}')", walk.cur),
        ));
    }
    let name = source
        .file_stem()
        .map_or_else(|| "onnx".to_string(), |s| s.to_string_lossy().into_owned());
    let spec = ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name,
        input: shape,
        layers: walk.found.iter().map(|f| f.layer.clone()).collect(),
        init: Init::default(),
    };
    let infos = spec
        .validate()
        .map_err(|e| format_error(&path, "the layer chain", "a network maxprune can build", &e.to_string()))?;
    let params = walk
        .found
        .into_iter()
        .zip(&infos)
        .map(|(f, info)| {
            let params = f
                .layer
                .params(info.input)
                .into_iter()
                .map(|d| {
                    let values = f.tensors.get(d.role).cloned().unwrap_or_default();
                    let n: usize = d.shape.iter().product();
                    let what = format!("{} {}", f.layer, d.role);
                    if values.len() != n {
                        return Err(format_error(
                            &path,
                            &what,
                            &format!("{n} values"),
                            &values.len().to_string(),
                        ));
                    }
                    if let Some(bad) = non_finite(&values) {
                        return Err(format_error(&path, &what, "finite values", &bad));
                    }
                    Ok(Param::declared(&d, values, device))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(LayerParams { params })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut network = Network::from_params(&spec, params, device)?;
    if options.fold_bn {
        network = network.fold_batch_norm()?;
    }
    let widen = |v: Option<Vec<f32>>| v.map(|v| v.into_iter().map(f64::from).collect());
    Ok(Imported {
        network,
        mean: widen(walk.mean),
        std: widen(walk.std),
        dropped: walk.dropped,
    })
}

fn format_error(path: &str, what: &str, expected: &str, found: &str) -> Error {
    Error::Format {
        path: path.into(),
        what: what.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// The values of an initializer or constant, from `raw_data`, the typed fields or external data
/// in `dir`.
fn decode_tensor(t: &TensorProto, dir: &Path, path: &str) -> Result<Const> {
    let what = format!("tensor '{}'", t.name);
    let dims = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format_error(path, &what, "non-negative dims", &format!("{:?}", t.dims)))
        })
        .collect::<Result<Vec<_>>>()?;
    let n: usize = dims.iter().product();
    let external;
    let raw: &[u8] = if t.data_location == 1 {
        external = read_external(t, dir, path)?;
        &external
    } else {
        &t.raw_data
    };
    let (size, data) = match t.data_type {
        1 => (
            4,
            Data::F32(if raw.is_empty() {
                t.float_data.clone()
            } else {
                le(raw, f32::from_le_bytes)
            }),
        ),
        11 => (
            8,
            Data::F32(if raw.is_empty() {
                t.double_data.iter().map(|&x| x as f32).collect()
            } else {
                le(raw, f64::from_le_bytes).into_iter().map(|x: f64| x as f32).collect()
            }),
        ),
        7 => (
            8,
            Data::I64(if raw.is_empty() {
                t.int64_data.clone()
            } else {
                le(raw, i64::from_le_bytes)
            }),
        ),
        6 => (
            4,
            Data::I64(if raw.is_empty() {
                t.int32_data.iter().map(|&x| i64::from(x)).collect()
            } else {
                le(raw, i32::from_le_bytes).into_iter().map(i64::from).collect()
            }),
        ),
        other => {
            return Err(format_error(
                path,
                &what,
                "FLOAT, DOUBLE, INT32 or INT64 data",
                &format!("data type {other}"),
            ));
        }
    };
    let len = match &data {
        Data::F32(v) => v.len(),
        Data::I64(v) => v.len(),
    };
    if len != n || (!raw.is_empty() && raw.len() != n * size) {
        return Err(format_error(
            path,
            &what,
            &format!("{n} values for dims {dims:?}"),
            &format!("{len}"),
        ));
    }
    Ok(Const { dims, data })
}

/// Little-endian values of `N` bytes each.
fn le<T, const N: usize>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

/// The bytes of an external-data tensor: `length` bytes at `offset` of `location`, a file
/// beside the model (never outside its directory).
fn read_external(t: &TensorProto, dir: &Path, path: &str) -> Result<Vec<u8>> {
    let what = format!("tensor '{}' external data", t.name);
    let get = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let location = get("location").ok_or_else(|| format_error(path, &what, "a location", "none"))?;
    let relative = Path::new(location);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format_error(path, &what, "a file name beside the model", location));
    }
    let number = |key: &str| -> Result<Option<usize>> {
        get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| format_error(path, &what, &format!("a numeric {key}"), v))
            })
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let file = dir.join(relative);
    let bytes = crate::fsio::read_tensor_file(&file)?;
    let end = length.map_or(bytes.len(), |l| offset.saturating_add(l));
    bytes.get(offset..end).map(<[u8]>::to_vec).ok_or_else(|| {
        format_error(
            path,
            &what,
            &format!("bytes {offset}..{end} of {}", file.display()),
            &format!("{} bytes", bytes.len()),
        )
    })
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attr(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn ints_attr(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// The walk along the chain: constants, the chain's last value and the layers found so far.
struct Walk<'a> {
    path: String,
    /// The network's input.
    input: InputShape,
    /// The model's directory, where external data lies.
    dir: &'a Path,
    consts: BTreeMap<String, Const>,
    /// ONNX shapes (batch first) of the computed values.
    dyn_dims: BTreeMap<String, Vec<usize>>,
    /// The chain's last value.
    cur: String,
    /// Its shape as maxprune sees it (a global pool's `[C, 1, 1]` is a vector).
    act: ActShape,
    batch: usize,
    found: Vec<Found>,
    pending: Pending,
    /// Whether the last layer is a `MatMul` dense layer whose bias an `Add` may still set.
    open_bias: bool,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
    dropped: Vec<String>,
    names: BTreeSet<String>,
}

impl Walk<'_> {
    fn refuse(&self, node: &NodeProto, expected: &str, found: &str) -> Error {
        format_error(
            &self.path,
            &format!("node '{}' ({})", node.name, node.op_type),
            expected,
            found,
        )
    }

    fn konst(&self, node: &NodeProto, i: usize) -> Result<&Const> {
        let name = node.input.get(i).filter(|n| !n.is_empty());
        name.and_then(|n| self.consts.get(n)).ok_or_else(|| {
            self.refuse(
                node,
                &format!("a constant input {i}"),
                name.map_or("none", |n| n.as_str()),
            )
        })
    }

    fn opt_konst(&self, node: &NodeProto, i: usize) -> Option<&Const> {
        node.input.get(i).and_then(|n| self.consts.get(n))
    }

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        // Another domain's operator of the same name (`com.microsoft.nchwc`'s `Conv`, say)
        // computes something else.
        if !matches!(node.domain.as_str(), "" | "ai.onnx") {
            return Err(self.refuse(
                node,
                "an operator of the default ONNX domain",
                &format!("domain '{}'", node.domain),
            ));
        }
        let computed: Vec<&String> = node
            .input
            .iter()
            .filter(|n| !n.is_empty() && !self.consts.contains_key(*n))
            .collect();
        if node.op_type == "Shape" || computed.is_empty() {
            let value = self.evaluate(node)?;
            let out = node.output.first().cloned().unwrap_or_default();
            self.consts.insert(out, value);
            return Ok(());
        }
        if computed.len() > 1 || *computed[0] != self.cur {
            return Err(self.refuse(
                node,
                "a sequential graph: each node reads the previous layer's output only",
                &format!(
                    "inputs {:?} while the chain is at '{}' (a residual Add or a Concat of branches is not supported)",
                    computed, self.cur
                ),
            ));
        }
        let open_bias = std::mem::take(&mut self.open_bias);
        if !matches!(self.pending, Pending::None) && !matches!(node.op_type.as_str(), "Reshape" | "ReduceMax") {
            return Err(self.refuse(node, "ReduceMax over axis 2 after a maxout Reshape", &node.op_type));
        }
        let mut onnx_dims = None;
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                self.dropped.push(node.name.clone());
                let dims = self.dyn_dims[&self.cur].clone();
                self.advance(node, dims);
            }
            "Relu" => self.push(node, LayerSpec::relu(), BTreeMap::new())?,
            "Conv" => self.conv(node)?,
            "Gemm" => self.gemm(node)?,
            "MatMul" => {
                let w = self.konst(node, 1)?;
                let (n, out) = match (self.act, &w.dims[..]) {
                    (ActShape::Flat(n), &[i, o]) if i == n => (n, o),
                    _ => {
                        return Err(self.refuse(
                            node,
                            "a [features, outputs] constant after a vector",
                            &format!("{:?}", w.dims),
                        ));
                    }
                };
                let weight = transpose(&w.as_floats(), n, out);
                let name = self.name(node, 1, "fc");
                self.push(
                    node,
                    LayerSpec::dense(&name, out),
                    BTreeMap::from([("weight", weight), ("bias", vec![0.0; out])]),
                )?;
                self.open_bias = true;
            }
            "Add" if open_bias => {
                let i = usize::from(node.input[0] == self.cur);
                let b = self.konst(node, i)?.clone();
                let last = self.found.last_mut().expect("a MatMul layer is open");
                let out = last.tensors["bias"].len();
                if b.numel() != out {
                    return Err(self.refuse(node, &format!("a bias of {out} values"), &format!("{:?}", b.dims)));
                }
                last.tensors.insert("bias", b.as_floats());
                self.cur = node.output[0].clone();
                self.dyn_dims.insert(self.cur.clone(), vec![self.batch, out]);
            }
            "Sub" | "Div" if self.found.is_empty() && node.input[0] == self.cur => self.normalise(node)?,
            "BatchNormalization" => {
                if int_attr(node, "training_mode", 0) != 0 {
                    return Err(self.refuse(node, "training_mode 0", "1"));
                }
                let c = self.act.channels();
                let mut tensors = BTreeMap::new();
                for (i, role) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                    let t = self.konst(node, i)?;
                    if t.numel() != c {
                        return Err(self.refuse(node, &format!("{role} of {c} values"), &format!("{:?}", t.dims)));
                    }
                    tensors.insert(role, t.as_floats());
                }
                let name = self.name(node, 1, "bn");
                let mut layer = LayerSpec::batch_norm(&name);
                if let LayerSpec::BatchNorm(bn) = &mut layer {
                    // The f32's shortest decimal, so that 1e-5 reads back as 1e-5.
                    let eps = attr(node, "epsilon").map_or(1e-5, |a| a.f);
                    bn.eps = eps.to_string().parse().expect("an f32 prints as a number");
                }
                self.push(node, layer, tensors)?;
            }
            "MaxPool" | "AveragePool" => self.pool(node)?,
            "GlobalAveragePool" => {
                self.push(node, LayerSpec::global_avg_pool(), BTreeMap::new())?;
                onnx_dims = Some(vec![self.batch, self.act.channels(), 1, 1]);
            }
            "ReduceMean" => {
                let axes = self.axes(node)?;
                let keep = int_attr(node, "keepdims", 1);
                if !matches!(self.act, ActShape::Map(_))
                    || !(axes == [2, 3] || axes == [-2, -1] || axes == [-1, -2] || axes == [3, 2])
                {
                    return Err(self.refuse(
                        node,
                        "a mean over the spatial axes [2, 3] of a feature map",
                        &format!("axes {axes:?}"),
                    ));
                }
                self.push(node, LayerSpec::global_avg_pool(), BTreeMap::new())?;
                if keep != 0 {
                    onnx_dims = Some(vec![self.batch, self.act.channels(), 1, 1]);
                }
            }
            "Flatten" => {
                if int_attr(node, "axis", 1) != 1 {
                    return Err(self.refuse(node, "axis 1", &int_attr(node, "axis", 1).to_string()));
                }
                self.flatten(node)?;
            }
            "Reshape" => self.reshape(node)?,
            "Gather" => {
                let index = self.konst(node, 1)?.as_ints();
                let width = self.act.channels() as i64;
                if int_attr(node, "axis", 0) != 1 || index.iter().any(|&i| !(0..width).contains(&i)) {
                    return Err(self.refuse(
                        node,
                        "a gather of channels (axis 1) feeding a maxout Reshape",
                        "another gather",
                    ));
                }
                let mut dims = self.dyn_dims[&self.cur].clone();
                dims[1] = index.len();
                self.pending = Pending::Gather(index);
                self.advance(node, dims);
            }
            "ReduceMax" => self.reduce_max(node)?,
            _ => {
                return Err(self.refuse(
                    node,
                    &format!("one of the supported operators ({SUPPORTED})"),
                    &node.op_type,
                ));
            }
        }
        if let Some(dims) = onnx_dims {
            self.dyn_dims.insert(self.cur.clone(), dims);
        }
        Ok(())
    }

    /// Moves the chain to `node`'s output, of ONNX shape `dims`.
    fn advance(&mut self, node: &NodeProto, dims: Vec<usize>) {
        self.cur = node.output[0].clone();
        self.dyn_dims.insert(self.cur.clone(), dims);
    }

    /// Appends a layer reading the chain's value and moves the chain to `node`'s output.
    fn push(&mut self, node: &NodeProto, layer: LayerSpec, tensors: BTreeMap<&'static str, Vec<f32>>) -> Result<()> {
        let inferred = layer
            .infer(self.act)
            .map_err(|m| self.refuse(node, "a layer that fits its input", &m))?;
        self.act = inferred.output;
        let dims = match self.act {
            ActShape::Map([c, h, w]) => vec![self.batch, c, h, w],
            ActShape::Flat(n) => vec![self.batch, n],
        };
        self.advance(node, dims);
        self.found.push(Found { layer, tensors });
        Ok(())
    }

    /// The layer name for `node`: its weight initializer's prefix (`fc1` of `fc1.weight`) when
    /// that is a safe, unused name, else `<stem><n>`.
    fn name(&mut self, node: &NodeProto, weight: usize, stem: &str) -> String {
        let prefix = node
            .input
            .get(weight)
            .and_then(|w| w.strip_suffix(".weight"))
            .filter(|p| crate::model::spec::is_safe_name(p) && !self.names.contains(*p));
        let name = prefix.map_or_else(
            || {
                (1..)
                    .map(|n| format!("{stem}{n}"))
                    .find(|n| !self.names.contains(n) && !self.consts.contains_key(&format!("{n}.weight")))
                    .expect("some number is free")
            },
            str::to_string,
        );
        self.names.insert(name.clone());
        name
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let w = self.konst(node, 1)?;
        let ActShape::Map([c, _, _]) = self.act else {
            return Err(self.refuse(node, "a feature map input", &self.act.to_string()));
        };
        let &[f, wc, kh, kw] = &w.dims[..] else {
            return Err(self.refuse(node, "a rank-4 weight", &format!("{:?}", w.dims)));
        };
        let strides = ints_attr(node, "strides").unwrap_or(vec![1, 1]);
        let pads = ints_attr(node, "pads").unwrap_or(vec![0; 4]);
        let dilations = ints_attr(node, "dilations").unwrap_or(vec![1, 1]);
        let auto_pad = attr(node, "auto_pad").map_or(&b"NOTSET"[..], |a| &a.s[..]);
        let ok = wc == c
            && kh == kw
            && int_attr(node, "group", 1) == 1
            && strides.len() == 2
            && strides[0] == strides[1]
            && pads.len() == 4
            && pads.iter().all(|&p| p == pads[0])
            && dilations.iter().all(|&d| d == 1)
            && matches!(auto_pad, b"NOTSET" | b"")
            && strides[0] > 0
            && pads[0] >= 0;
        if !ok {
            return Err(self.refuse(
                node,
                &format!("groups 1, a square kernel over {c} channels, equal strides and pads, no dilation"),
                &format!(
                    "weight {:?}, group {}, strides {strides:?}, pads {pads:?}, dilations {dilations:?}",
                    w.dims,
                    int_attr(node, "group", 1)
                ),
            ));
        }
        let weight = w.as_floats();
        let bias = match self.opt_konst(node, 2) {
            Some(b) => b.as_floats(),
            None => vec![0.0; f],
        };
        let name = self.name(node, 1, "conv");
        let layer = LayerSpec::conv2d(&name, f, kh, strides[0] as usize, pads[0] as usize);
        self.push(node, layer, BTreeMap::from([("weight", weight), ("bias", bias)]))
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        let alpha = attr(node, "alpha").map_or(1.0, |a| a.f);
        let beta = attr(node, "beta").map_or(1.0, |a| a.f);
        let (trans_a, trans_b) = (int_attr(node, "transA", 0), int_attr(node, "transB", 0));
        let w = self.konst(node, 1)?;
        let ActShape::Flat(n) = self.act else {
            return Err(self.refuse(node, "a vector input (Flatten first)", &self.act.to_string()));
        };
        let out = match (&w.dims[..], trans_b) {
            (&[o, i], 1) if i == n => o,
            (&[i, o], 0) if i == n => o,
            _ => 0,
        };
        if out == 0 || alpha != 1.0 || beta != 1.0 || trans_a != 0 {
            return Err(self.refuse(
                node,
                &format!("alpha 1, beta 1, transA 0 and a weight over {n} inputs"),
                &format!(
                    "alpha {alpha}, beta {beta}, transA {trans_a}, transB {trans_b}, weight {:?}",
                    w.dims
                ),
            ));
        }
        let weight = if trans_b == 1 {
            w.as_floats()
        } else {
            transpose(&w.as_floats(), n, out)
        };
        let bias = match self.opt_konst(node, 2) {
            Some(b) if b.numel() == out => b.as_floats(),
            Some(b) => return Err(self.refuse(node, &format!("a bias of {out} values"), &format!("{:?}", b.dims))),
            None => vec![0.0; out],
        };
        let name = self.name(node, 1, "fc");
        self.push(
            node,
            LayerSpec::dense(&name, out),
            BTreeMap::from([("weight", weight), ("bias", bias)]),
        )
    }

    fn pool(&mut self, node: &NodeProto) -> Result<()> {
        let kernel = ints_attr(node, "kernel_shape").unwrap_or_default();
        let strides = ints_attr(node, "strides").unwrap_or(vec![1, 1]);
        let pads = ints_attr(node, "pads").unwrap_or(vec![0; 4]);
        let dilations = ints_attr(node, "dilations").unwrap_or(vec![1, 1]);
        let max = node.op_type == "MaxPool";
        // maxprune's average pooling counts padded zeros; without padding both agree.
        let count_pad = int_attr(node, "count_include_pad", 0) == 1 || pads.iter().all(|&p| p == 0);
        let ok = kernel.len() == 2
            && kernel[0] == kernel[1]
            && kernel[0] > 0
            && strides.len() == 2
            && strides[0] == strides[1]
            && strides[0] > 0
            && pads.len() == 4
            && pads.iter().all(|&p| p == pads[0] && p >= 0)
            && (!max || pads[0] == 0)
            && (max || count_pad)
            && dilations.iter().all(|&d| d == 1)
            && int_attr(node, "ceil_mode", 0) == 0
            && attr(node, "auto_pad").is_none_or(|a| matches!(&a.s[..], b"NOTSET" | b""));
        if !ok {
            return Err(self.refuse(
                node,
                "a square kernel, equal strides, floor mode, no dilation; no padding for MaxPool, count_include_pad for padded AveragePool",
                &format!("kernel {kernel:?}, strides {strides:?}, pads {pads:?}, ceil_mode {}", int_attr(node, "ceil_mode", 0)),
            ));
        }
        let (k, s) = (kernel[0] as usize, strides[0] as usize);
        let layer = if max {
            LayerSpec::max_pool(k, s)
        } else {
            LayerSpec::avg_pool(k, s, pads[0] as usize)
        };
        self.push(node, layer, BTreeMap::new())
    }

    fn flatten(&mut self, node: &NodeProto) -> Result<()> {
        if matches!(self.act, ActShape::Map(_)) {
            self.push(node, LayerSpec::flatten(), BTreeMap::new())
        } else {
            let n = self.act.channels();
            self.advance(node, vec![self.batch, n]);
            Ok(())
        }
    }

    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let target = self.konst(node, 1)?.as_ints();
        let dims = self.dyn_dims[&self.cur].clone();
        let numel: usize = dims.iter().product();
        let mut resolved: Vec<usize> = target
            .iter()
            .enumerate()
            .map(|(i, &t)| match t {
                0 => dims.get(i).copied().unwrap_or(0),
                t if t > 0 => t as usize,
                _ => 0,
            })
            .collect();
        if let Some(free) = target.iter().position(|&t| t == -1) {
            let known: usize = resolved
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != free)
                .map(|(_, &d)| d)
                .product();
            resolved[free] = numel.checked_div(known).unwrap_or(0);
        }
        let bad = self.refuse(
            node,
            "a Reshape to [N, -1] (flatten) or to [N, units, k(, H, W)] followed by ReduceMax over axis 2 (maxout)",
            &format!("a reshape of {dims:?} to {target:?}"),
        );
        if resolved.first() != Some(&self.batch) || resolved.iter().product::<usize>() != numel {
            return Err(bad);
        }
        let width = dims[1];
        match (&resolved[1..], self.act) {
            (&[n], _) if matches!(self.pending, Pending::None) && n == self.act.numel() => self.flatten(node),
            (&[u, k], ActShape::Flat(_)) if u * k == width => self.units(node, u, k, resolved),
            (&[u, k, h, w], ActShape::Map([_, ah, aw])) if u * k == width && [h, w] == [ah, aw] => {
                self.units(node, u, k, resolved)
            }
            _ => Err(bad),
        }
    }

    /// A maxout Reshape to `units` x `k`: the pieces per unit, from a preceding Gather if any.
    fn units(&mut self, node: &NodeProto, units: usize, k: usize, dims: Vec<usize>) -> Result<()> {
        let pieces = match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => Pieces::Uniform { units, k },
            Pending::Gather(index) => {
                let counts = ragged_counts(&index, units, k, self.act.channels()).ok_or_else(|| {
                    self.refuse(
                        node,
                        "a Gather in maxprune's ragged maxout layout",
                        &format!("indices {index:?}"),
                    )
                })?;
                Pieces::from_counts(counts)
            }
            Pending::Units(_) => return Err(self.refuse(node, "ReduceMax after a maxout Reshape", "a second Reshape")),
        };
        self.pending = Pending::Units(pieces);
        self.advance(node, dims);
        Ok(())
    }

    fn reduce_max(&mut self, node: &NodeProto) -> Result<()> {
        let axes = self.axes(node)?;
        let rank = self.dyn_dims[&self.cur].len() as i64;
        let keep = int_attr(node, "keepdims", 1);
        let Pending::Units(pieces) = std::mem::replace(&mut self.pending, Pending::None) else {
            return Err(self.refuse(
                node,
                "ReduceMax over the pieces after a maxout Reshape",
                "a ReduceMax elsewhere",
            ));
        };
        if axes.len() != 1 || (axes[0] != 2 && axes[0] != 2 - rank) || keep != 0 {
            return Err(self.refuse(
                node,
                "axes [2] and keepdims 0",
                &format!("axes {axes:?}, keepdims {keep}"),
            ));
        }
        let layer = LayerSpec::maxout(pieces);
        let mut layers: Vec<LayerSpec> = self.found.iter().map(|f| f.layer.clone()).collect();
        layers.push(layer.clone());
        let at = layers.len() - 1;
        let probe = ArchSpec {
            format_version: SPEC_FORMAT_VERSION,
            name: String::new(),
            input: self.input,
            layers,
            init: Init::default(),
        };
        if probe.producer_of(at).is_none() {
            let before = self.found.iter().rev().find(|f| f.layer.role() != Role::Piecewise);
            return Err(self.refuse(
                node,
                "a maxout over the outputs of one Conv, Gemm or MatMul (only Relu, Dropout and \
                 BatchNormalization between): its pieces must be one layer's outputs to be pruned",
                &format!("a maxout after {}", before.map_or("the input", |f| f.layer.kind())),
            ));
        }
        self.push(node, layer, BTreeMap::new())
    }

    /// The `axes` of a reduction: an attribute (before opset 18) or input 1.
    fn axes(&self, node: &NodeProto) -> Result<Vec<i64>> {
        match ints_attr(node, "axes") {
            Some(axes) => Ok(axes),
            None => Ok(self.konst(node, 1)?.as_ints()),
        }
    }

    /// `Sub` or `Div` of the input by a constant per channel: the input's normalisation.
    fn normalise(&mut self, node: &NodeProto) -> Result<()> {
        let c = self.act.channels();
        let values = self.konst(node, 1)?.as_floats();
        let slot = if node.op_type == "Sub" { &self.mean } else { &self.std };
        if slot.is_some() || (node.op_type == "Sub" && self.std.is_some()) || !(values.len() == 1 || values.len() == c)
        {
            return Err(self.refuse(
                node,
                &format!("one Sub then one Div of the input by 1 or {c} values per channel"),
                &format!("{} values", values.len()),
            ));
        }
        if node.op_type == "Sub" {
            self.mean = Some(values);
        } else {
            self.std = Some(values);
        }
        let dims = self.dyn_dims[&self.cur].clone();
        self.advance(node, dims);
        Ok(())
    }

    /// The value of a node whose inputs are all constant (or a `Shape`).
    fn evaluate(&self, node: &NodeProto) -> Result<Const> {
        let op = node.op_type.as_str();
        Ok(match op {
            "Constant" => {
                let a = node
                    .attribute
                    .first()
                    .ok_or_else(|| self.refuse(node, "a value attribute", "none"))?;
                match a.name.as_str() {
                    "value" => decode_tensor(
                        a.t.as_ref().ok_or_else(|| self.refuse(node, "a tensor", "none"))?,
                        self.dir,
                        &self.path,
                    )?,
                    "value_int" => Const {
                        dims: vec![],
                        data: Data::I64(vec![a.i]),
                    },
                    "value_ints" => Const::ints(a.ints.clone()),
                    "value_float" => Const {
                        dims: vec![],
                        data: Data::F32(vec![a.f]),
                    },
                    "value_floats" => Const {
                        dims: vec![a.floats.len()],
                        data: Data::F32(a.floats.clone()),
                    },
                    other => return Err(self.refuse(node, "value, value_int(s) or value_float(s)", other)),
                }
            }
            "Shape" => {
                let name = &node.input[0];
                let dims = self
                    .dyn_dims
                    .get(name)
                    .cloned()
                    .or_else(|| self.consts.get(name).map(|c| c.dims.clone()))
                    .ok_or_else(|| self.refuse(node, "the shape of a known value", name))?;
                let r = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let start = clamp(int_attr(node, "start", 0));
                let end = clamp(int_attr(node, "end", r));
                Const::ints(dims[start..end.max(start)].iter().map(|&d| d as i64).collect())
            }
            "Identity" | "Cast" => {
                let mut v = self.konst(node, 0)?.clone();
                if op == "Cast" {
                    v.data = match int_attr(node, "to", 1) {
                        1 | 11 => Data::F32(v.as_floats()),
                        6 | 7 => Data::I64(v.as_ints()),
                        to => return Err(self.refuse(node, "a cast to float or int", &format!("to {to}"))),
                    };
                }
                v
            }
            "Unsqueeze" | "Squeeze" => {
                let mut v = self.konst(node, 0)?.clone();
                let axes = match ints_attr(node, "axes") {
                    Some(a) => a,
                    None => self.opt_konst(node, 1).map(Const::as_ints).unwrap_or_default(),
                };
                if op == "Unsqueeze" {
                    let r = (v.dims.len() + axes.len()) as i64;
                    let mut axes: Vec<usize> = axes.iter().map(|&a| (if a < 0 { a + r } else { a }) as usize).collect();
                    axes.sort_unstable();
                    for a in axes {
                        v.dims.insert(a.min(v.dims.len()), 1);
                    }
                } else {
                    let r = v.dims.len() as i64;
                    let axes: Vec<usize> = axes.iter().map(|&a| (if a < 0 { a + r } else { a }) as usize).collect();
                    v.dims = v
                        .dims
                        .iter()
                        .enumerate()
                        .filter(|&(i, &d)| !(d == 1 && (axes.is_empty() || axes.contains(&i))))
                        .map(|(_, &d)| d)
                        .collect();
                }
                v
            }
            "Gather" => {
                let data = self.konst(node, 0)?;
                let index = self.konst(node, 1)?;
                if data.dims.len() != 1 || int_attr(node, "axis", 0) != 0 {
                    return Err(self.refuse(node, "a gather from a vector", &format!("{:?}", data.dims)));
                }
                let n = data.numel() as i64;
                let picked = index
                    .as_ints()
                    .iter()
                    .map(|&i| {
                        let i = if i < 0 { i + n } else { i };
                        (0..n).contains(&i).then_some(i as usize)
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        self.refuse(node, &format!("indices below {n}"), &format!("{:?}", index.as_ints()))
                    })?;
                let data = match &data.data {
                    Data::I64(v) => Data::I64(picked.iter().map(|&i| v[i]).collect()),
                    Data::F32(v) => Data::F32(picked.iter().map(|&i| v[i]).collect()),
                };
                Const {
                    dims: index.dims.clone(),
                    data,
                }
            }
            "Concat" => {
                let parts = (0..node.input.len())
                    .map(|i| self.konst(node, i))
                    .collect::<Result<Vec<_>>>()?;
                if parts.iter().any(|p| p.dims.len() != 1) {
                    return Err(self.refuse(node, "a concatenation of vectors", "higher ranks"));
                }
                Const::ints(parts.iter().flat_map(|p| p.as_ints()).collect())
            }
            "Slice" => {
                let data = self.konst(node, 0)?;
                let one = |i: usize, default: i64| {
                    self.opt_konst(node, i)
                        .and_then(|c| c.as_ints().first().copied())
                        .unwrap_or(default)
                };
                let n = data.numel() as i64;
                let (start, end, axis, step) = (one(1, 0), one(2, n), one(3, 0), one(4, 1));
                if data.dims.len() != 1 || axis != 0 || step != 1 {
                    return Err(self.refuse(node, "a unit-step slice of a vector", &format!("{:?}", data.dims)));
                }
                let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
                let (s, e) = (clamp(start), clamp(end).max(clamp(start)));
                Const::ints(data.as_ints()[s..e].to_vec())
            }
            _ => {
                return Err(self.refuse(
                    node,
                    &format!("one of the supported operators ({SUPPORTED})"),
                    &format!("{op} on constants"),
                ));
            }
        })
    }
}

/// Pieces per unit of maxprune's ragged gather: unit `u`'s `k` indices are `o, o + 1, ..,
/// o + c - 1` then `o` repeated, `o` being the pieces of the units before it; they must cover
/// all `width` channels.
fn ragged_counts(index: &[i64], units: usize, k: usize, width: usize) -> Option<Vec<usize>> {
    if index.len() != units * k || k == 0 {
        return None;
    }
    let mut offset = 0i64;
    let mut counts = Vec::with_capacity(units);
    for chunk in index.chunks(k) {
        let c = (1..k).find(|&j| chunk[j] != offset + j as i64).unwrap_or(k);
        if chunk[0] != offset || chunk[c..].iter().any(|&i| i != offset) {
            return None;
        }
        counts.push(c);
        offset += c as i64;
    }
    (offset == width as i64).then_some(counts)
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{
        Dimension, DimensionValue, GraphProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
    };

    fn node(op: &str, name: &str, input: &[&str]) -> NodeProto {
        NodeProto::new(op, name, input.iter().map(|s| s.to_string()).collect(), vec![])
    }

    /// A model of `nodes` reading `x` `[batch, 1, 4, 4]`, whose output is the last node's.
    fn model(nodes: Vec<NodeProto>) -> Vec<u8> {
        let dims = [DimensionValue::DimParam("batch".into())]
            .into_iter()
            .chain([1, 4, 4].map(DimensionValue::DimValue));
        let info = |name: &str, dims: Vec<Dimension>| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: 1,
                    shape: Some(TensorShapeProto { dim: dims }),
                }),
            }),
        };
        let output = nodes.last().expect("a node").output[0].clone();
        ModelProto {
            graph: Some(GraphProto {
                input: vec![info("x", dims.map(|v| Dimension { value: Some(v) }).collect())],
                output: vec![info(&output, vec![])],
                node: nodes,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn refusal(nodes: Vec<NodeProto>) -> String {
        let bytes = model(nodes);
        match import_onnx(&bytes, Path::new("m.onnx"), &OnnxOptions::default(), &Device::flex()) {
            Ok(_) => panic!("imported"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_residual_add_is_refused_naming_the_node() {
        let e = refusal(vec![
            node("Relu", "act", &["x"]),
            node("Add", "skip", &["x", "act.out"]),
        ]);
        assert!(e.contains("node 'skip' (Add)") && e.contains("sequential"), "{e}");
    }

    #[test]
    fn an_unsupported_operator_is_refused_naming_the_node_and_the_supported_ones() {
        let e = refusal(vec![node("Sigmoid", "squash", &["x"])]);
        assert!(e.contains("node 'squash' (Sigmoid)") && e.contains("Conv, Gemm"), "{e}");
        let mut other = node("Relu", "act", &["x"]);
        other.domain = "com.example".into();
        let e = refusal(vec![other]);
        assert!(
            e.contains(
                "node 'act' (Relu): expected an operator of the default ONNX domain, found domain 'com.example'"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_maxout_over_a_pool_is_refused_naming_the_node() {
        let mut shape = node("Constant", "shape", &[]);
        shape.attribute = vec![AttributeProto {
            name: "value_ints".into(),
            ints: vec![-1, 1, 1],
            ..Default::default()
        }];
        let mut pool = node("GlobalAveragePool", "pool", &["x"]);
        pool.output = vec!["pooled".into()];
        let mut max = node("ReduceMax", "max", &["units.out"]);
        max.attribute = vec![
            AttributeProto {
                name: "axes".into(),
                ints: vec![2],
                ..Default::default()
            },
            AttributeProto {
                name: "keepdims".into(),
                ..Default::default()
            },
        ];
        let e = refusal(vec![
            shape,
            pool,
            node("Flatten", "flat", &["pooled"]),
            node("Reshape", "units", &["flat.out", "shape.out"]),
            max,
        ]);
        assert!(
            e.contains("node 'max' (ReduceMax): expected a maxout over the outputs of one Conv"),
            "{e}"
        );
        assert!(e.ends_with("found a maxout after global-avg-pool"), "{e}");
    }

    #[test]
    fn external_data_outside_the_models_directory_is_refused() {
        let entry = |key: &str, value: &str| crate::onnx::proto::StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        };
        for location in ["../secret.data", "/etc/passwd"] {
            let t = TensorProto {
                name: "w".into(),
                data_type: 1,
                dims: vec![1],
                data_location: 1,
                external_data: vec![entry("location", location)],
                ..Default::default()
            };
            let e = decode_tensor(&t, Path::new("."), "m.onnx").unwrap_err().to_string();
            assert!(
                e.contains("tensor 'w' external data") && e.contains("beside the model"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_constant_nodes_external_data_is_read_beside_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..32).map(|i| i as f32 / 8.0).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join("w.bin"), bytes).unwrap();
        let entry = |key: &str, value: &str| crate::onnx::proto::StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        };
        let mut weight = node("Constant", "w", &[]);
        weight.attribute = vec![AttributeProto {
            name: "value".into(),
            t: Some(TensorProto {
                name: "w".into(),
                data_type: 1,
                dims: vec![2, 16],
                data_location: 1,
                external_data: vec![entry("location", "w.bin")],
                ..Default::default()
            }),
            ..Default::default()
        }];
        let mut fc = node("Gemm", "fc", &["flat.out", "w.out"]);
        fc.attribute = vec![AttributeProto {
            name: "transB".into(),
            i: 1,
            ..Default::default()
        }];
        let bytes = model(vec![weight, node("Flatten", "flat", &["x"]), fc]);
        let source = dir.path().join("m.onnx");
        let back = import_onnx(&bytes, &source, &OnnxOptions::default(), &Device::flex()).unwrap();
        let read: Vec<f32> = back.network.params()[1].params[0]
            .value
            .to_data()
            .iter::<f32>()
            .collect();
        assert_eq!(read, values);
    }

    #[test]
    fn a_symbolic_input_needs_its_shape() {
        let mut bytes = model(vec![node("Relu", "act", &["x"])]);
        let mut m = ModelProto::decode(&bytes[..]).unwrap();
        let dim = &mut m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap();
        let shape = dim.tensor_type.as_mut().unwrap().shape.as_mut().unwrap();
        shape.dim[2].value = Some(DimensionValue::DimParam("h".into()));
        bytes = m.encode_to_vec();
        let e = match import_onnx(&bytes, Path::new("m.onnx"), &OnnxOptions::default(), &Device::flex()) {
            Ok(_) => panic!("imported"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("--input-shape"), "{e}");
    }

    #[test]
    fn ragged_gather_decodes_to_counts() {
        // Units of 2, 1 and 3 pieces, k_max 3.
        assert_eq!(
            ragged_counts(&[0, 1, 0, 2, 2, 2, 3, 4, 5], 3, 3, 6),
            Some(vec![2, 1, 3])
        );
        assert_eq!(ragged_counts(&[0, 1, 0, 2, 2, 2, 3, 4, 5], 3, 3, 7), None);
        assert_eq!(ragged_counts(&[1, 0, 0], 1, 3, 2), None);
    }

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
