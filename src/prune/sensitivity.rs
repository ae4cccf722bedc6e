//! Per-layer sensitivity: how much validation accuracy each unit layer (a maxout layer, or a
//! plain conv or dense layer whose outputs are units of one piece) loses when a fraction of its
//! pieces (or of its units) is removed, one layer at a time and without retraining. It
//! tells how much each layer can lose before a schedule is run (NNI's and Distiller's
//! "sensitivity analysis").

use serde::{Deserialize, Serialize};

use super::neuron::apply;
use super::select::{Policy, select};
use crate::data::split::Split;
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
use crate::model::network::Network;
use crate::model::spec::ArchSpec;
use crate::plot::{Chart, Mark, Series};
use crate::relevance::{CriterionKind, Relevance};
use crate::train::evaluate;

/// What a fraction counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cut {
    /// The lowest-scored fraction of the layer's pieces (at least one piece stays per unit; a
    /// plain layer's pieces are its units, so there it is [`Cut::Units`]).
    Pieces,
    /// The fraction of the layer's units whose scores sum lowest (at least one unit stays).
    Units,
}

impl Cut {
    /// What this cut removes in unit layer `layer` of `spec`: pieces only where its units have
    /// several.
    pub fn of(self, spec: &ArchSpec, layer: usize) -> Cut {
        match self {
            Cut::Pieces if spec.pieces(layer).is_some() => Cut::Pieces,
            _ => Cut::Units,
        }
    }

    /// The criterion a sensitivity analysis of `layers` (unit layers of `spec`) uses unless
    /// told otherwise: arg-max frequency where every cut removes pieces, contribution where
    /// one removes units (arg-max frequencies sum to 1 in every unit, so they cannot rank
    /// units).
    pub fn default_criterion(self, spec: &ArchSpec, layers: &[usize]) -> CriterionKind {
        if layers.iter().all(|&m| self.of(spec, m) == Cut::Pieces) {
            CriterionKind::Argmax
        } else {
            CriterionKind::Contribution
        }
    }
}

/// One measurement: one layer cut by one fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityRow {
    /// Index of the unit layer in the spec.
    pub layer: usize,
    /// Name of the conv or dense layer that produces its pieces.
    pub producer: String,
    /// The fraction asked for.
    pub fraction: f64,
    /// Pieces of the layer before and after the cut.
    pub pieces: (usize, usize),
    /// The whole network's parameters after the cut.
    pub params: usize,
    /// Validation accuracy after the cut, in `[0, 1]`.
    pub val_accuracy: f64,
}

/// A sensitivity analysis of one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensitivity {
    /// The criterion that ranked the pieces.
    pub criterion: CriterionKind,
    /// What the fractions count.
    pub cut: Cut,
    /// Validation examples measured on.
    pub examples: usize,
    /// The uncut network's validation accuracy.
    pub baseline: f64,
    /// The uncut network's parameters.
    pub params: usize,
    /// One row per layer and fraction, layer by layer.
    pub rows: Vec<SensitivityRow>,
}

/// Checks the fractions of a sensitivity analysis: each finite and in `(0, 1)`, at least one.
pub fn check_fractions(fractions: &[f64]) -> Result<()> {
    if fractions.is_empty() {
        return Err(Error::invalid(
            "fractions",
            "expected at least one fraction, found none",
        ));
    }
    match fractions.iter().find(|f| !(f.is_finite() && **f > 0.0 && **f < 1.0)) {
        Some(f) => Err(Error::invalid(
            "fractions",
            format!("expected values in (0, 1), found {f}"),
        )),
        None => Ok(()),
    }
}

/// Cuts each unit layer in `layers` (spec indices) by each of `fractions`, alone, ranked by
/// `rel` (made for `net`), and measures accuracy on `val` (`classes` classes, in batches of
/// `batch`, pixels normalised by `norm`). No retraining.
pub fn sensitivity(
    net: &Network,
    rel: &Relevance,
    cut: Cut,
    layers: &[usize],
    fractions: &[f64],
    (val, classes, batch, norm): (&Split, usize, usize, &Normalization),
) -> Result<Sensitivity> {
    check_fractions(fractions)?;
    let spec = net.spec();
    let pieces_of = |n: &Network, m: usize| n.spec().unit_pieces(m).map_or(0, |p| p.total());
    let mut rows = Vec::new();
    for &m in layers {
        let Some(lr) = rel.layers.iter().find(|l| l.layer == m) else {
            return Err(Error::invalid(
                "layers",
                format!("layer {m}: expected a scored unit layer of {}", spec.name),
            ));
        };
        for &fraction in fractions {
            let policy = match cut.of(spec, m) {
                Cut::Pieces => Policy::Global { fraction },
                Cut::Units => Policy::Units { fraction },
            };
            // The layer's scores alone: a global cut ranks this layer's pieces only.
            let alone = Relevance {
                layers: vec![lr.clone()],
                ..rel.clone()
            };
            let plan = select(&alone, spec, policy)?;
            let cut_net = apply(net, &plan)?;
            rows.push(SensitivityRow {
                layer: m,
                producer: lr.producer.clone(),
                fraction,
                pieces: (pieces_of(net, m), pieces_of(&cut_net, m)),
                params: cut_net.num_params(),
                val_accuracy: evaluate(&cut_net, val, classes, batch, norm)?.accuracy,
            });
        }
    }
    Ok(Sensitivity {
        criterion: rel.criterion,
        cut,
        examples: val.len(),
        baseline: evaluate(net, val, classes, batch, norm)?.accuracy,
        params: net.num_params(),
        rows,
    })
}

impl Sensitivity {
    /// The analysis as a Markdown table: one row per layer and fraction.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "Validation accuracy after cutting one layer, without retraining ({} criterion, {} validation \
             examples; uncut: {:.2}%, {} parameters).\n\n\
             | layer | fraction of {} | pieces | parameters | val accuracy | change |\n|---|---:|---:|---:|---:|---:|\n",
            self.criterion.name(),
            self.examples,
            100.0 * self.baseline,
            self.params,
            match self.cut {
                Cut::Pieces => "pieces",
                Cut::Units => "units",
            }
        );
        for r in &self.rows {
            s += &format!(
                "| {} | {:.2} | {} -> {} | {} | {:.2}% | {:+.2} |\n",
                r.producer,
                r.fraction,
                r.pieces.0,
                r.pieces.1,
                r.params,
                100.0 * r.val_accuracy,
                100.0 * (r.val_accuracy - self.baseline)
            );
        }
        s
    }

    /// Validation accuracy against the fraction removed, one line per layer, the uncut
    /// network's accuracy as a reference.
    pub fn chart(&self) -> Result<String> {
        let what = match self.cut {
            Cut::Pieces => "pieces",
            Cut::Units => "units",
        };
        let mut c = Chart::new(
            format!("Sensitivity: one layer cut, no retraining ({})", self.criterion.name()),
            format!("fraction of the layer's {what} removed (%)"),
            "validation accuracy (%)",
        );
        let mut producers: Vec<&str> = self.rows.iter().map(|r| r.producer.as_str()).collect();
        producers.dedup();
        c.series = producers
            .iter()
            .map(|p| {
                let points = self
                    .rows
                    .iter()
                    .filter(|r| r.producer == *p)
                    .map(|r| (100.0 * r.fraction, 100.0 * r.val_accuracy))
                    .collect();
                Series::new(*p, points, Mark::Line)
            })
            .collect();
        c.reference = Some(("uncut".into(), 100.0 * self.baseline));
        c.to_svg()
    }
}
