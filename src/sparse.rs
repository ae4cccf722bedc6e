//! maxprune's sparse model file (`.mxs`): the spec and every parameter tensor, pruned weight
//! matrices in CSR, so a weight-pruned model is smaller on disk, not merely full of zeros.
//!
//! Layout (little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `MXSPARSE` |
//! | 4 | format version (u32, 2) |
//! | 8 | header length H (u64) |
//! | H | header JSON: spec, dataset, tensor table |
//! | P | payload: the tensors, at the offsets the table gives |
//! | 32 | SHA-256 of every byte before it (magic, header and payload) |
//!
//! Version 1 files (no trailer; the header held the payload's SHA-256 only) still read.
//! Reading checks the checksum before it parses anything, then every table entry against the
//! file and the spec's shapes before it allocates a tensor.
//!
//! A CSR tensor views its weight as `[rows, cols]` (`rows` = first dim; conv filters are
//! flattened to `in x kh x kw`) and stores `rows + 1` u32 row pointers, `nnz` column indices
//! (u16 when `cols <= 65,536`, else u32) and `nnz` f32 values. Other tensors are dense f32.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::dataset::DatasetName;
use crate::error::{Error, Result};
use crate::model::network::{Network, ParamMapper, ParamVisitor, f32_values, non_finite};
use crate::model::spec::ArchSpec;

const MAGIC: &[u8; 8] = b"MXSPARSE";
const VERSION: u32 = 2;
/// Version 1: the same without the trailer, the payload's SHA-256 in the header.
const VERSION_1: u32 = 1;

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
    dataset: Option<DatasetName>,
    /// The run's per-channel normalisation (absent: pixels / 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    std: Option<Vec<f64>>,
    tensors: Vec<Entry>,
    /// Version 1 only: the payload's SHA-256 (version 2 checks the whole file instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_sha256: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a sparse file records besides the network: the dataset it was trained on and how its
/// pixels were normalised (`mean`, `std` as in `train.toml`; `None`: pixels / 255).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// The dataset, when known.
    pub dataset: Option<DatasetName>,
    /// Per-channel means.
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviations.
    pub std: Option<Vec<f64>>,
}

impl Recorded {
    /// The dataset and normalisation of a run's config.
    pub fn of(config: &crate::train::TrainConfig) -> Recorded {
        Recorded {
            dataset: Some(config.dataset.clone()),
            mean: config.mean.clone(),
            std: config.std.clone(),
        }
    }

    /// How pixels become the network's inputs.
    pub fn normalization(&self) -> crate::data::transform::Normalization {
        crate::data::transform::Normalization::new(self.mean.as_deref(), self.std.as_deref())
    }
}

/// Encodes `net` (and what `recorded` says of it) as a sparse model file.
pub fn encode(net: &Network, recorded: &Recorded) -> Vec<u8> {
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
        dataset: recorded.dataset.clone(),
        mean: recorded.mean.clone(),
        std: recorded.std.clone(),
        tensors: c.entries,
        payload_sha256: None,
    };
    framed(&serde_json::to_vec(&header).expect("header serializes"), &c.payload)
}

/// A version-2 file around a header's JSON and the payload: magic, version, header length,
/// header, payload, and the SHA-256 of all of it.
fn framed(json: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + json.len() + payload.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(payload);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads a model file made for `spec`, in either format (told apart by the first bytes):
/// safetensors, as a run's `model.safetensors`, or this sparse format, whose own spec must be
/// `spec`. `source` names the file in errors.
pub fn read_model(spec: &ArchSpec, bytes: &[u8], source: &str, device: &Device) -> Result<Network> {
    if !is_sparse(bytes) {
        return Network::from_safetensors(spec, bytes, source, device);
    }
    let (net, _) = decode(bytes, source, device)?;
    if net.spec() != spec {
        return Err(Error::invalid(
            "model file",
            format!("{source}: made for another spec ({} vs {})", net.spec().name, spec.name),
        ));
    }
    Ok(net)
}

/// Whether `bytes` start like a sparse model file.
pub fn is_sparse(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Decodes a sparse model file; `source` names it in errors. Returns the network and what the
/// file records of it (its normalisation checked against the network's input).
pub fn decode(bytes: &[u8], source: &str, device: &Device) -> Result<(Network, Recorded)> {
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
    let body = match version {
        VERSION => {
            let Some(split) = bytes.len().checked_sub(32).filter(|&n| n >= 20) else {
                return Err(bad(
                    "checksum",
                    "a 32-byte SHA-256 after the header".into(),
                    format!("{} bytes in all (truncated)", bytes.len()),
                ));
            };
            let (body, sum) = bytes.split_at(split);
            let actual = Sha256::digest(body);
            if actual.as_slice() != sum {
                return Err(bad(
                    "checksum",
                    hex(sum),
                    format!("{} (truncated or corrupted)", hex(&actual)),
                ));
            }
            body
        }
        VERSION_1 => bytes,
        v => {
            return Err(bad(
                "format version",
                format!("{VERSION} (or {VERSION_1})"),
                v.to_string(),
            ));
        }
    };
    let hlen = u64::from_le_bytes(body[12..20].try_into().expect("8 bytes"));
    let Some(json) = usize::try_from(hlen)
        .ok()
        .and_then(|h| body.get(20..20usize.checked_add(h)?))
    else {
        return Err(bad(
            "header",
            format!("{hlen} bytes"),
            format!("{} bytes (truncated)", body.len() - 20),
        ));
    };
    let header: Header =
        serde_json::from_slice(json).map_err(|e| bad("header JSON", "valid JSON".into(), e.to_string()))?;
    header
        .spec
        .validate()
        .map_err(|e| bad("spec", "a valid spec".into(), e.to_string()))?;
    let recorded = Recorded {
        dataset: header.dataset.clone(),
        mean: header.mean.clone(),
        std: header.std.clone(),
    };
    let config = crate::train::TrainConfig {
        mean: recorded.mean.clone(),
        std: recorded.std.clone(),
        ..Default::default()
    };
    config.check_input(&header.spec.input, &format!("{source}: header"))?;
    let payload = &body[20 + json.len()..];
    let mut need = 0usize;
    let mut table = BTreeMap::new();
    for t in &header.tensors {
        let end = t
            .offset
            .checked_add(t.length)
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| {
                bad(
                    &format!("tensor '{}'", t.name),
                    format!("bytes within the {}-byte payload", payload.len()),
                    format!("offset {} + length {} (truncated or corrupted)", t.offset, t.length),
                )
            })?;
        need = need.max(end);
        if table.insert(t.name.as_str(), (t, &payload[t.offset..end])).is_some() {
            return Err(bad(
                "tensor table",
                "each tensor once".into(),
                format!("'{}' twice", t.name),
            ));
        }
    }
    if payload.len() != need {
        return Err(bad(
            "payload",
            format!("{need} bytes"),
            format!("{} bytes (truncated or padded)", payload.len()),
        ));
    }
    if version == VERSION_1 {
        let sha = hex(&Sha256::digest(payload));
        let stored = header.payload_sha256.clone().unwrap_or_default();
        if sha != stored {
            return Err(bad("payload checksum", stored, format!("{sha} (corrupted)")));
        }
    }
    // Names and shapes are compared with the spec's before its network is built, so a small
    // file never makes the reader allocate a large network first.
    let listed = header.tensors.iter().map(|t| (t.name.as_str(), t.shape.clone()));
    if let Some(found) = header.spec.table_mismatch(listed)? {
        return Err(bad(
            "tensor table",
            "the tensors its spec names, with their shapes".into(),
            found,
        ));
    }
    let template = Network::init(&header.spec, 0, device)?;
    struct Fill<'a> {
        table: BTreeMap<&'a str, (&'a Entry, &'a [u8])>,
        device: &'a Device,
        error: Option<String>,
    }
    impl ParamMapper for Fill<'_> {
        fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
            let decoded = match self.table.remove(name) {
                // The shape is compared with the spec's before anything is allocated for it.
                Some((e, _)) if e.shape != t.dims() => Err(format!(
                    "'{name}' has shape {:?}, the spec needs {:?}",
                    e.shape,
                    t.dims()
                )),
                Some((e, data)) => decode_tensor(e, data)
                    .and_then(|v| {
                        non_finite(&v).map_or(Ok(v), |bad| Err(format!("expected finite numbers, found {bad}")))
                    })
                    .map_err(|m| format!("'{name}': {m}")),
                None => Err(format!("'{name}' is missing")),
            };
            match decoded {
                Ok(v) => Tensor::from_data(TensorData::new(v, t.dims()), self.device),
                Err(e) => {
                    self.error.get_or_insert(e);
                    t
                }
            }
        }
    }
    let mut fill = Fill {
        table,
        device,
        error: None,
    };
    let net = template.map_params(&mut fill);
    if let Some(e) = fill.error {
        return Err(bad(
            "tensors",
            "the tensors its spec names, consistently encoded".into(),
            e,
        ));
    }
    if let Some(extra) = fill.table.keys().next() {
        return Err(bad(
            "tensors",
            "only the tensors its spec names".into(),
            format!("extra tensor '{extra}'"),
        ));
    }
    Ok((net, recorded))
}

/// Decodes one tensor whose shape already equals the spec's (so its size is bounded).
fn decode_tensor(t: &Entry, data: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let n: usize = t.shape.iter().product();
    match t.encoding {
        Encoding::Dense => {
            if data.len() != 4 * n {
                return Err(format!("{} bytes for {n} dense values", data.len()));
            }
            Ok(f32_values(data))
        }
        Encoding::Csr => {
            let rows = *t.shape.first().ok_or("CSR tensor without dims")?;
            let cols = n / rows.max(1);
            let isz = if cols <= 1 << 16 { 2 } else { 4 };
            if t.nnz > n {
                return Err(format!("{} nonzeros in {n} values", t.nnz));
            }
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
            let vals = f32_values(&data[4 * (rows + 1) + isz * t.nnz..]);
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
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::Preset;

    /// Keeps every third weight of each matrix, so the encoder picks CSR for them.
    struct Thin;
    impl ParamMapper for Thin {
        fn map<const D: usize>(&mut self, _: &str, t: Tensor<D>) -> Tensor<D> {
            if D < 2 {
                return t;
            }
            let v: Vec<f32> = t
                .to_data()
                .iter::<f32>()
                .enumerate()
                .map(|(i, x)| if i % 3 == 0 { x } else { 0.0 })
                .collect();
            Tensor::from_data(TensorData::new(v, t.dims()), &t.device())
        }
    }

    /// The encoded file of a small weight-pruned network, split into its header JSON and
    /// payload.
    fn parts() -> (serde_json::Value, Vec<u8>) {
        let net = Network::init(&Preset::SeedLenet.spec(), 1, &Device::flex())
            .unwrap()
            .map_params(&mut Thin);
        let bytes = encode(
            &net,
            &Recorded {
                dataset: Some(DatasetName::Embedded),
                ..Recorded::default()
            },
        );
        let h = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        let header = serde_json::from_slice(&bytes[20..20 + h]).unwrap();
        (header, bytes[20 + h..bytes.len() - 32].to_vec())
    }

    /// A file with this header and payload, checksummed as version 2 writes it (so what a test
    /// changed passes the checksum and reaches the checks behind it).
    fn signed(header: &serde_json::Value, payload: &[u8]) -> Vec<u8> {
        framed(&serde_json::to_vec(header).unwrap(), payload)
    }

    fn error(bytes: &[u8]) -> String {
        decode(bytes, "m.mxs", &Device::flex())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_checksum_covers_the_header() {
        let (header, payload) = parts();
        let mut bytes = signed(&header, &payload);
        assert!(decode(&bytes, "m.mxs", &Device::flex()).is_ok());
        // A digit of the spec in the header, not the payload.
        let at = bytes.windows(9).position(|w| w == b"\"filters\"").unwrap() + 10;
        bytes[at] ^= 0x01;
        let e = error(&bytes);
        assert!(
            e.contains("m.mxs") && e.contains("checksum") && e.contains("corrupted"),
            "{e}"
        );
    }

    #[test]
    fn table_entries_outside_the_file_or_the_spec_are_refused_before_allocating() {
        let (header, payload) = parts();
        for (field, value, needle) in [
            ("length", serde_json::json!(u64::MAX), "offset"),
            ("offset", serde_json::json!(u64::MAX - 7), "offset"),
            ("shape", serde_json::json!([1u64 << 62, 4]), "the spec needs"),
            ("shape", serde_json::json!([1, 1u64 << 40]), "the spec needs"),
            ("nnz", serde_json::json!(1u64 << 40), "nonzeros"),
        ] {
            let mut h = header.clone();
            let tensors = h["tensors"].as_array_mut().unwrap();
            let t = tensors
                .iter_mut()
                .find(|t| t["encoding"] == "csr")
                .expect("a CSR tensor");
            t[field] = value;
            let e = error(&signed(&h, &payload));
            assert!(e.contains("m.mxs") && e.contains(needle), "{field}: {e}");
        }
        // A spec far larger than the table is refused before its network is built.
        let mut h = header.clone();
        let dense = h["spec"]["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .rfind(|l| l["kind"] == "dense")
            .unwrap();
        dense["outputs"] = 1_000_000.into();
        let e = error(&signed(&h, &payload));
        assert!(
            e.contains("m.mxs: tensor table: expected the tensors its spec names")
                && e.contains("the spec needs [1000000,"),
            "{e}"
        );
        let mut h = header.clone();
        let first = h["tensors"][0].clone();
        h["tensors"].as_array_mut().unwrap().push(first);
        assert!(error(&signed(&h, &payload)).contains("twice"));
    }

    #[test]
    fn model_files_of_either_format_read_for_their_spec_only() {
        let spec = Preset::SeedLenet.spec();
        let net = Network::init(&spec, 1, &Device::flex()).unwrap().map_params(&mut Thin);
        let same = |other: &Network| other.to_safetensors() == net.to_safetensors();
        for bytes in [net.to_safetensors(), encode(&net, &Recorded::default())] {
            assert!(same(&read_model(&spec, &bytes, "m", &Device::flex()).unwrap()));
        }
        let other = Preset::Lenet5.spec();
        let e = read_model(&other, &encode(&net, &Recorded::default()), "m.mxs", &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("m.mxs: made for another spec"), "{e}");
        // A larger spec than the file holds is refused before its network is built.
        let e = read_model(&other, &net.to_safetensors(), "m", &Device::flex()).unwrap_err();
        assert!(
            e.to_string()
                .contains("m: tensors: expected the tensors its spec names, with their shapes, found '"),
            "{e}"
        );
    }

    #[test]
    fn version_1_files_still_read() {
        let (mut header, payload) = parts();
        header["payload_sha256"] = hex(&Sha256::digest(&payload)).into();
        let json = serde_json::to_vec(&header).unwrap();
        let mut v1 = [&MAGIC[..], &VERSION_1.to_le_bytes(), &(json.len() as u64).to_le_bytes()].concat();
        v1.extend_from_slice(&json);
        v1.extend_from_slice(&payload);
        let (net, recorded) = decode(&v1, "m.mxs", &Device::flex()).unwrap();
        assert_eq!(
            (net.num_params(), recorded.dataset),
            (240_470, Some(DatasetName::Embedded))
        );
        let last = v1.len() - 1;
        v1[last] ^= 0x40;
        assert!(error(&v1).contains("payload checksum"));
    }
}
