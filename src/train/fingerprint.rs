//! What a run directory holds, by content: its model file's SHA-256 and its spec's fingerprint.
//! A schedule, a distilled run and a reproduction record the fingerprint of every run they
//! build on, and check it when they go on, so a run retrained or replaced under the same path
//! is refused rather than mixed with the work done on the old one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsio;
use crate::model::spec::ArchSpec;

/// The content of a run directory: what [`Fingerprint::of`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// SHA-256 of its `model.safetensors`, in hex.
    pub model_sha256: String,
    /// [`ArchSpec::fingerprint`] of its `spec.json`.
    pub spec: String,
}

impl Fingerprint {
    /// The fingerprint of the run directory `dir` as it is now.
    pub fn of(dir: &Path) -> Result<Fingerprint> {
        let spec_path = dir.join("spec.json");
        let spec = ArchSpec::from_json(&fsio::read_text(&spec_path)?, &spec_path.display().to_string())?;
        let model = fsio::read_tensor_file(&dir.join("model.safetensors"))?;
        let model_sha256 = Sha256::digest(&model).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Fingerprint {
            model_sha256,
            spec: spec.fingerprint(),
        })
    }

    /// Checks that `dir` still holds the run this fingerprint was taken of; the error says
    /// which part changed and `why` it matters (who recorded it, what the change would mix).
    pub fn check(&self, dir: &Path, why: &str) -> Result<()> {
        let now = Fingerprint::of(dir)?;
        let (part, recorded, found) = if now.spec != self.spec {
            ("spec.json fingerprint", &self.spec, &now.spec)
        } else if now.model_sha256 != self.model_sha256 {
            ("model.safetensors SHA-256", &self.model_sha256, &now.model_sha256)
        } else {
            return Ok(());
        };
        Err(Error::Format {
            path: dir.display().to_string(),
            what: format!("{part} (retrained or replaced since {why})"),
            expected: format!("the recorded {}", short(recorded)),
            found: short(found),
        })
    }
}

/// The first 12 hex digits: enough to tell two fingerprints apart in a message.
fn short(hex: &str) -> String {
    format!("{}…", &hex[..hex.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::Network;
    use crate::model::presets::Preset;
    use crate::train::{RunDir, TrainConfig};

    #[test]
    fn a_run_retrained_or_replaced_under_its_path_is_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let d = burn::tensor::Device::flex();
        let spec = Preset::Lenet5Maxout.spec();
        let make = |name: &str, seed| {
            RunDir::create(
                &tmp.path().join(name),
                &Network::init(&spec, seed, &d).unwrap(),
                &TrainConfig::default(),
            )
            .unwrap()
        };
        let (a, b) = (make("a", 1), make("b", 2));
        let fp = Fingerprint::of(a.path()).unwrap();
        fp.check(a.path(), "the test recorded it").unwrap();
        let e = fp.check(b.path(), "the test recorded it").unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors SHA-256 (retrained or replaced since the test recorded it)"),
            "{e}"
        );
    }
}
