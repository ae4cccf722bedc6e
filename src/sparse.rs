//! maxprune's sparse model file (`.mxs`): the spec and every parameter tensor, pruned weight
//! matrices in CSR, so a weight-pruned model is smaller on disk, not merely full of zeros.
//!
//! Layout (little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `MXSPARSE` |
//! | 4 | format version (u32, 1) |
//! | 8 | header length H (u64) |
//! | H | header JSON: spec, dataset, tensor table, SHA-256 of the payload |
//! | rest | payload: the tensors, at the offsets the table gives |
//!
//! A CSR tensor views its weight as `[rows, cols]` (`rows` = first dim; conv filters are
//! flattened to `in x kh x kw`) and stores `rows + 1` u32 row pointers, `nnz` column indices
//! (u16 when `cols <= 65,536`, else u32) and `nnz` f32 values. Other tensors are dense f32.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::network::{Network, ParamMapper, ParamVisitor};
use crate::model::spec::ArchSpec;

const MAGIC: &[u8; 8] = b"MXSPARSE";
const VERSION: u32 = 1;

/// Bytes of a `[rows, cols]` matrix with `nnz` nonzeros in CSR.
pub fn csr_bytes(rows: usize, cols: usize, nnz: usize) -> usize {
    let index = if cols <= 1 << 16 { 2 } else { 4 };
    4 * (rows + 1) + nnz * (index + 4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Encoding {
    Dense,
    Csr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    encoding: Encoding,
    nnz: usize,
    offset: usize,
    length: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    spec: ArchSpec,
    dataset: Option<String>,
    tensors: Vec<Entry>,
    payload_sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes `net` (and the dataset it was trained on) as a sparse model file.
pub fn encode(net: &Network, dataset: Option<&str>) -> Vec<u8> {
    struct Collect {
        payload: Vec<u8>,
        entries: Vec<Entry>,
    }
    impl ParamVisitor for Collect {
        fn visit<const D: usize>(&mut self, name: &str, t: &Tensor<D>) {
            let shape = t.dims().to_vec();
            let v: Vec<f32> = t.to_data().iter::<f32>().collect();
            let rows = if D >= 2 { shape[0] } else { 1 };
            let cols = v.len() / rows.max(1);
            let nnz = v.iter().filter(|x| **x != 0.0).count();
            let offset = self.payload.len();
            let encoding = if D >= 2 && csr_bytes(rows, cols, nnz) < 4 * v.len() {
                Encoding::Csr
            } else {
                Encoding::Dense
            };
            match encoding {
                Encoding::Dense => v.iter().for_each(|x| self.payload.extend_from_slice(&x.to_le_bytes())),
                Encoding::Csr => {
                    let mut ptr = 0u32;
                    self.payload.extend_from_slice(&ptr.to_le_bytes());
                    for row in v.chunks(cols) {
                        ptr += row.iter().filter(|x| **x != 0.0).count() as u32;
                        self.payload.extend_from_slice(&ptr.to_le_bytes());
                    }
                    for row in v.chunks(cols) {
                        for (c, _) in row.iter().enumerate().filter(|(_, x)| **x != 0.0) {
                            if cols <= 1 << 16 {
                                self.payload.extend_from_slice(&(c as u16).to_le_bytes());
                            } else {
                                self.payload.extend_from_slice(&(c as u32).to_le_bytes());
                            }
                        }
                    }
                    v.iter()
                        .filter(|x| **x != 0.0)
                        .for_each(|x| self.payload.extend_from_slice(&x.to_le_bytes()));
                }
            }
            self.entries.push(Entry {
                name: name.to_string(),
                shape,
                encoding,
                nnz,
                offset,
                length: self.payload.len() - offset,
            });
        }
    }
    let mut c = Collect {
        payload: Vec::new(),
        entries: Vec::new(),
    };
    net.visit_params(&mut c);
    let header = Header {
        spec: net.spec().clone(),
        dataset: dataset.map(str::to_string),
        tensors: c.entries,
        payload_sha256: hex(&Sha256::digest(&c.payload)),
    };
    let json = serde_json::to_vec(&header).expect("header serializes");
    let mut out = Vec::with_capacity(20 + json.len() + c.payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&c.payload);
    out
}

/// Whether `bytes` start like a sparse model file.
pub fn is_sparse(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Decodes a sparse model file; `source` names it in errors. Returns the network and the
/// dataset recorded in it.
pub fn decode(bytes: &[u8], source: &str, device: &Device) -> Result<(Network, Option<String>)> {
    let bad = |what: &str, expected: String, found: String| Error::Format {
        path: source.to_string(),
        what: what.to_string(),
        expected,
        found,
    };
    if !is_sparse(bytes) {
        return Err(bad(
            "magic",
            "MXSPARSE".into(),
            format!("{:?}", &bytes[..bytes.len().min(8)]),
        ));
    }
    if bytes.len() < 20 {
        return Err(bad(
            "header",
            "at least 20 bytes".into(),
            format!("{} bytes (truncated)", bytes.len()),
        ));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad("format version", VERSION.to_string(), version.to_string()));
    }
    let hlen = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
    let Some(json) = bytes.get(20..20usize.saturating_add(hlen)) else {
        return Err(bad(
            "header",
            format!("{hlen} bytes"),
            format!("{} bytes (truncated)", bytes.len() - 20),
        ));
    };
    let header: Header =
        serde_json::from_slice(json).map_err(|e| bad("header JSON", "valid JSON".into(), e.to_string()))?;
    header
        .spec
        .validate()
        .map_err(|e| bad("spec", "a valid spec".into(), e.to_string()))?;
    let payload = &bytes[20 + hlen..];
    let need = header.tensors.iter().map(|t| t.offset + t.length).max().unwrap_or(0);
    if payload.len() != need {
        return Err(bad(
            "payload",
            format!("{need} bytes"),
            format!("{} bytes (truncated or padded)", payload.len()),
        ));
    }
    let sha = hex(&Sha256::digest(payload));
    if sha != header.payload_sha256 {
        return Err(bad(
            "payload checksum",
            header.payload_sha256.clone(),
            format!("{sha} (corrupted)"),
        ));
    }
    let mut tensors = BTreeMap::new();
    for t in &header.tensors {
        tensors.insert(
            t.name.clone(),
            decode_tensor(t, &payload[t.offset..t.offset + t.length])
                .map_err(|m| bad(&format!("tensor '{}'", t.name), "a consistent encoding".into(), m))?,
        );
    }
    let template = Network::init(&header.spec, 0, device)?;
    struct Fill<'a> {
        tensors: &'a mut BTreeMap<String, (Vec<usize>, Vec<f32>)>,
        device: &'a Device,
        error: Option<String>,
    }
    impl ParamMapper for Fill<'_> {
        fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
            match self.tensors.remove(name) {
                Some((shape, v)) if shape == t.dims() => Tensor::from_data(TensorData::new(v, t.dims()), self.device),
                Some((shape, _)) => {
                    self.error
                        .get_or_insert(format!("'{name}' has shape {shape:?}, the spec needs {:?}", t.dims()));
                    t
                }
                None => {
                    self.error.get_or_insert(format!("'{name}' is missing"));
                    t
                }
            }
        }
    }
    let mut fill = Fill {
        tensors: &mut tensors,
        device,
        error: None,
    };
    let net = template.map_params(&mut fill);
    if let Some(e) = fill.error {
        return Err(bad("tensors", "the tensors its spec names".into(), e));
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(bad(
            "tensors",
            "only the tensors its spec names".into(),
            format!("extra tensor '{extra}'"),
        ));
    }
    Ok((net, header.dataset))
}

fn decode_tensor(t: &Entry, data: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    let n: usize = t.shape.iter().product();
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    match t.encoding {
        Encoding::Dense => {
            if data.len() != 4 * n {
                return Err(format!("{} bytes for {n} dense values", data.len()));
            }
            Ok((t.shape.clone(), f32s(data)))
        }
        Encoding::Csr => {
            let rows = *t.shape.first().ok_or("CSR tensor without dims")?;
            let cols = n / rows.max(1);
            let isz = if cols <= 1 << 16 { 2 } else { 4 };
            if data.len() != 4 * (rows + 1) + t.nnz * (isz + 4) {
                return Err(format!(
                    "{} bytes for a {rows}x{cols} CSR matrix with {} nonzeros",
                    data.len(),
                    t.nnz
                ));
            }
            let ptr: Vec<usize> = data[..4 * (rows + 1)]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
                .collect();
            let idx_bytes = &data[4 * (rows + 1)..4 * (rows + 1) + isz * t.nnz];
            let idx: Vec<usize> = idx_bytes
                .chunks_exact(isz)
                .map(|c| {
                    if isz == 2 {
                        u16::from_le_bytes([c[0], c[1]]) as usize
                    } else {
                        u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize
                    }
                })
                .collect();
            let vals = f32s(&data[4 * (rows + 1) + isz * t.nnz..]);
            if ptr[0] != 0 || ptr[rows] != t.nnz || ptr.windows(2).any(|w| w[0] > w[1]) {
                return Err("row pointers are not increasing from 0 to nnz".into());
            }
            let mut out = vec![0.0f32; n];
            for r in 0..rows {
                for k in ptr[r]..ptr[r + 1] {
                    if idx[k] >= cols {
                        return Err(format!("column {} out of range 0..{cols}", idx[k]));
                    }
                    out[r * cols + idx[k]] = vals[k];
                }
            }
            Ok((t.shape.clone(), out))
        }
    }
}
