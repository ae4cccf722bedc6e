//! `PrunePlan`: which pieces of which maxout units (or which units of a plain layer) survive.
//! Serde data, validated against a spec, replayable on the same checkpoint.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::spec::{ArchSpec, Pieces};

/// Version of the plan format.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// The survivors of one unit layer (see [`ArchSpec::unit_layers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// Index of the unit layer in the spec: a maxout layer, or a plain conv or dense layer whose
    /// outputs are units of one piece.
    pub layer: usize,
    /// Per unit, the surviving pieces (indices into the unit's current pieces, increasing).
    /// An empty list removes the whole unit.
    pub keep: Vec<Vec<usize>>,
}

/// What survives a pruning step.
///
/// ```
/// use maxprune::model::{network::Network, presets::Preset};
/// use maxprune::prune::{neuron::apply, plan::{LayerPlan, PLAN_FORMAT_VERSION, PrunePlan}};
///
/// let spec = Preset::Lenet5Maxout.spec();
/// let (layer, _) = spec.maxouts()[0];
/// // Keep the first two pieces of every unit, then drop unit 0 altogether.
/// let mut keep = vec![vec![0, 1]; 125];
/// keep[0].clear();
/// let plan = PrunePlan {
///     format_version: PLAN_FORMAT_VERSION,
///     spec_fingerprint: spec.fingerprint(),
///     layers: vec![LayerPlan { layer, keep }],
/// };
/// plan.validate(&spec).unwrap();
/// let net = Network::init(&spec, 1, &burn::tensor::Device::flex()).unwrap();
/// let pruned = apply(&net, &plan).unwrap();
/// assert_eq!(pruned.spec().maxouts()[0].1.total(), 124 * 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// Fingerprint of the spec the plan was made for.
    pub spec_fingerprint: String,
    /// Unit layers that change; layers not listed keep every piece.
    pub layers: Vec<LayerPlan>,
}

impl PrunePlan {
    /// Checks the plan against `spec`: same fingerprint, unit layers listed once each, one list per unit,
    /// piece indices in range, increasing, without repeats, and at least one unit left.
    pub fn validate(&self, spec: &ArchSpec) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("plan", m));
        if self.format_version != PLAN_FORMAT_VERSION {
            return bad(format!(
                "format_version: expected {PLAN_FORMAT_VERSION}, found {}",
                self.format_version
            ));
        }
        let fp = spec.fingerprint();
        if self.spec_fingerprint != fp {
            return bad(format!(
                "made for another spec (fingerprint {}, the network's is {fp})",
                self.spec_fingerprint
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for lp in &self.layers {
            let Some(pieces) = spec.unit_pieces(lp.layer) else {
                return bad(format!(
                    "layer {}: expected a maxout layer or a conv or dense layer read by another one",
                    lp.layer
                ));
            };
            if !seen.insert(lp.layer) {
                return bad(format!(
                    "layer {}: listed twice, expected each layer at most once",
                    lp.layer
                ));
            }
            if lp.keep.len() != pieces.units() {
                return bad(format!(
                    "layer {}: {} unit lists, expected {}",
                    lp.layer,
                    lp.keep.len(),
                    pieces.units()
                ));
            }
            for (u, keep) in lp.keep.iter().enumerate() {
                let k = pieces.count(u);
                if let Some(&j) = keep.iter().find(|&&j| j >= k) {
                    return bad(format!("layer {} unit {u}: piece {j} out of range 0..{k}", lp.layer));
                }
                if keep.windows(2).any(|w| w[0] >= w[1]) {
                    return bad(format!(
                        "layer {} unit {u}: pieces {keep:?} must increase without repeats",
                        lp.layer
                    ));
                }
            }
            if lp.keep.iter().all(Vec::is_empty) {
                return bad(format!("layer {}: removes every unit", lp.layer));
            }
        }
        Ok(())
    }

    /// The pieces per surviving unit after applying the plan to the unit layer `layer`.
    pub fn new_pieces(&self, layer: usize, current: &Pieces) -> Pieces {
        match self.layers.iter().find(|l| l.layer == layer) {
            Some(lp) => Pieces::from_counts(lp.keep.iter().map(Vec::len).filter(|&c| c > 0).collect()),
            None => current.clone(),
        }
    }

    /// Parses a plan file; `source` names it in errors.
    pub fn from_json(text: &str, source: &str) -> Result<PrunePlan> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        serde_json::from_str(text).map_err(|e| Error::parse(source, e))
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plans serialize")
    }
}
