//! ONNX export of any network maxprune builds, as standard operators only.
//!
//! The graph (opset 13, IR version 7) takes `input` `[batch, C, H, W]` float32 in `[0, 1]`
//! (pixels / 255), with a symbolic batch dimension, and returns the logits as `logits`
//! `[batch, classes]`. A run normalised with `mean` and `std` (`train.toml`) starts with `Sub`
//! and `Div` nodes by `[1, C, 1, 1]` constants (`input.mean`, `input.std`), so the file takes
//! the same `[0, 1]` pixels either way. Layers map one to one: `conv2d` -> `Conv`, `max-pool` -> `MaxPool`
//! (floor, as maxprune), `flatten` -> `Flatten`, `dense` -> `Gemm` (`transB = 1`, the weight is
//! `[out, in]`), `relu` -> `Relu`; `dropout` is left out (an inference graph). A maxout layer of
//! `units` x `k` pieces is `Reshape` to `[batch, units, k(, H, W)]` + `ReduceMax` over the `k`
//! axis (opset 13 keeps `axes` an attribute). A ragged layer (pieces per unit differ) first
//! `Gather`s its pieces along the channel axis into `units` x `k_max`, filling the missing
//! places of a unit with copies of its own first piece (`max(a, a) = a`), so no `-inf` padding
//! is needed. Weight-pruned networks export dense: their zeros are kept as zeros.
//!
//! The protobuf messages are written with `prost` derives (prost is already in the dependency
//! tree through burn): only the fields this exporter writes are declared, with the field
//! numbers of `onnx.proto3`, which keeps the dependency set small and needs no code generation.

use burn::tensor::TensorData;

use crate::data::transform::Normalization;
use crate::error::Result;
use crate::model::layers::Kind;
use crate::model::network::{LayerParams, Network};

/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 13;
/// The ONNX IR version of the file (the one that goes with opset 13).
pub const IR_VERSION: i64 = 7;
/// The name of the graph's input.
pub const INPUT: &str = "input";
/// The name of the graph's output.
pub const OUTPUT: &str = "logits";

/// The subset of `onnx.proto3` this exporter writes and the importer
/// ([`crate::model::onnx_import`]) reads (field numbers and meanings as there); fields not
/// declared are skipped when decoding. Encode and decode with [`prost::Message`].
pub mod proto {
    /// A model file: the graph and what wrote it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        /// The IR version the file follows.
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        /// The tool that wrote the file.
        #[prost(string, tag = "2")]
        pub producer_name: String,
        /// That tool's version.
        #[prost(string, tag = "3")]
        pub producer_version: String,
        /// Free text.
        #[prost(string, tag = "6")]
        pub doc_string: String,
        /// The computation.
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        /// The operator sets the graph uses.
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        /// Key-value metadata.
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    /// An operator set and its version.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        /// The operator domain (empty: the default `ai.onnx`).
        #[prost(string, tag = "1")]
        pub domain: String,
        /// Its version.
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    /// A key-value pair.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        /// The key.
        #[prost(string, tag = "1")]
        pub key: String,
        /// The value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// The graph: nodes, constants, inputs and outputs.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        /// The nodes, in topological order.
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        /// The graph's name.
        #[prost(string, tag = "2")]
        pub name: String,
        /// Constant tensors (weights), by name.
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        /// The graph's inputs (some files list the initializers here too).
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        /// The graph's outputs.
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    /// One operator applied to named values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        /// Names of the values it reads (an empty name: an omitted optional input).
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        /// Names of the values it writes.
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        /// The node's name.
        #[prost(string, tag = "3")]
        pub name: String,
        /// The operator (`Conv`, `Relu`, ...).
        #[prost(string, tag = "4")]
        pub op_type: String,
        /// The operator's attributes.
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        /// The operator's domain (empty: the default `ai.onnx`).
        #[prost(string, tag = "7")]
        pub domain: String,
    }

    impl NodeProto {
        /// A node of ONNX's own `op`, named `name`, reading `input` and writing the one value
        /// `<name>.out` (the naming maxprune's export uses).
        pub fn new(op: &str, name: &str, input: Vec<String>, attribute: Vec<AttributeProto>) -> NodeProto {
            NodeProto {
                input,
                output: vec![format!("{name}.out")],
                name: name.into(),
                op_type: op.into(),
                attribute,
                domain: String::new(),
            }
        }
    }

    /// `AttributeProto.AttributeType`: INT = 2, INTS = 7.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        /// The attribute's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// A FLOAT value.
        #[prost(float, tag = "2")]
        pub f: f32,
        /// An INT value.
        #[prost(int64, tag = "3")]
        pub i: i64,
        /// A STRING value, as bytes.
        #[prost(bytes = "vec", tag = "4")]
        pub s: Vec<u8>,
        /// A TENSOR value.
        #[prost(message, optional, tag = "5")]
        pub t: Option<TensorProto>,
        /// A FLOATS value.
        #[prost(float, repeated, tag = "7")]
        pub floats: Vec<f32>,
        /// An INTS value.
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        /// Which of the value fields holds the value.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    /// `TensorProto.DataType`: FLOAT = 1, INT32 = 6, INT64 = 7, DOUBLE = 11;
    /// `data_location` EXTERNAL = 1 (then `external_data` holds `location`, `offset`, `length`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// The shape.
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        /// The element type.
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        /// FLOAT values, when not in `raw_data`.
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        /// INT32 values, when not in `raw_data`.
        #[prost(int32, repeated, tag = "5")]
        pub int32_data: Vec<i32>,
        /// INT64 values, when not in `raw_data`.
        #[prost(int64, repeated, tag = "7")]
        pub int64_data: Vec<i64>,
        /// The tensor's name.
        #[prost(string, tag = "8")]
        pub name: String,
        /// The values as little-endian bytes.
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
        /// DOUBLE values, when not in `raw_data`.
        #[prost(double, repeated, tag = "10")]
        pub double_data: Vec<f64>,
        /// Where external data lies (`location`, `offset`, `length`).
        #[prost(message, repeated, tag = "13")]
        pub external_data: Vec<StringStringEntryProto>,
        /// DEFAULT = 0 (in this message) or EXTERNAL = 1.
        #[prost(int32, tag = "14")]
        pub data_location: i32,
    }

    /// A named value and its type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        /// The value's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its type.
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    /// A value type (only tensors here).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        /// A tensor type.
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorTypeProto>,
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        /// The element type (a `TensorProto.DataType`).
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// The shape, where known.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// A tensor shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        /// One entry per axis.
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`: a fixed size or a symbol.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The size, fixed or symbolic.
        #[prost(oneof = "DimensionValue", tags = "1, 2")]
        pub value: Option<DimensionValue>,
    }

    /// A fixed size or a symbol.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum DimensionValue {
        /// A fixed size.
        #[prost(int64, tag = "1")]
        DimValue(i64),
        /// A symbol (a batch size, say).
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

use proto::*;

const FLOAT: i32 = 1;
const INT64: i32 = 7;

pub(crate) fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: 7,
        ..Default::default()
    }
}

pub(crate) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: value,
        r#type: 1,
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: 2,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<DimensionValue>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims.into_iter().map(|v| Dimension { value: Some(v) }).collect(),
                }),
            }),
        }),
    }
}

/// Builds the graph node by node; every value gets a fresh name. Layer kinds add their nodes
/// through it ([`Kind::onnx`]).
pub struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    last: String,
}

impl Builder {
    /// Adds `op` reading the current value (and `extra` inputs); its output becomes current.
    pub(crate) fn node(&mut self, op: &str, name: &str, extra: Vec<String>, attribute: Vec<AttributeProto>) {
        let mut input = vec![std::mem::replace(&mut self.last, format!("{name}.out"))];
        input.extend(extra);
        self.nodes.push(NodeProto::new(op, name, input, attribute));
    }

    /// Adds an f32 initializer; returns its name.
    pub(crate) fn float_tensor(&mut self, name: String, data: TensorData) -> String {
        let dims = data.shape().iter().map(|&d| d as i64).collect();
        let raw_data = data.iter::<f32>().flat_map(f32::to_le_bytes).collect();
        self.initializers.push(TensorProto {
            dims,
            data_type: FLOAT,
            name: name.clone(),
            raw_data,
            ..Default::default()
        });
        name
    }

    /// Adds an i64 vector initializer; returns its name.
    pub(crate) fn int_tensor(&mut self, name: String, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds every tensor of a layer as an initializer `<name>.<role>`, in order; returns their
    /// names (a node's extra inputs).
    pub(crate) fn params(&mut self, name: &str, params: &LayerParams) -> Vec<String> {
        params
            .params
            .iter()
            .map(|p| self.float_tensor(format!("{name}.{}", p.role), p.value.to_data()))
            .collect()
    }
}

/// The ONNX model of `net` reading pixels normalised by `norm` (see the module docs for the
/// graph).
pub fn export(net: &Network, norm: &Normalization) -> Result<Vec<u8>> {
    use prost::Message;
    let spec = net.spec();
    let infos = spec.validate()?;
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
        last: INPUT.into(),
    };
    if !norm.is_identity() {
        let c = spec.input.channels;
        let (mean, std): (Vec<f32>, Vec<f32>) = (0..c).map(|i| norm.channel(i)).unzip();
        for (op, role, values) in [("Sub", "mean", mean), ("Div", "std", std)] {
            let constant = b.float_tensor(format!("{INPUT}.{role}"), TensorData::new(values, [1, c, 1, 1]));
            b.node(op, &format!("{INPUT}.{}", op.to_lowercase()), vec![constant], vec![]);
        }
    }
    for (i, (layer, params)) in spec.layers.iter().zip(net.params()).enumerate() {
        let name = layer
            .name()
            .map_or_else(|| format!("{}{i}", layer.kind()), str::to_string);
        layer.onnx(&mut b, &name, params, infos[i].input);
    }
    // The last value gets the output's name through an Identity, so the names stay fixed.
    b.node("Identity", OUTPUT, vec![], vec![]);
    b.nodes.last_mut().expect("just added").output = vec![OUTPUT.into()];
    let classes = spec.classes()?;
    let input = spec.input;
    let batch = || DimensionValue::DimParam("batch".into());
    let fixed = |n: usize| DimensionValue::DimValue(n as i64);
    let fingerprint = spec.fingerprint();
    let version = env!("CARGO_PKG_VERSION");
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "maxprune".into(),
        producer_version: version.into(),
        doc_string: format!("{} exported by maxprune {version}", spec.name),
        graph: Some(GraphProto {
            node: b.nodes,
            name: format!("{} ({fingerprint})", spec.name),
            initializer: b.initializers,
            input: vec![value_info(
                INPUT,
                vec![batch(), fixed(input.channels), fixed(input.height), fixed(input.width)],
            )],
            output: vec![value_info(OUTPUT, vec![batch(), fixed(classes)])],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: vec![
            StringStringEntryProto {
                key: "maxprune_spec_fingerprint".into(),
                value: fingerprint,
            },
            StringStringEntryProto {
                key: "maxprune_version".into(),
                value: version.into(),
            },
        ],
    };
    Ok(model.encode_to_vec())
}
