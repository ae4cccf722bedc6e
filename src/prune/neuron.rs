//! Applying a [`PrunePlan`]: a new, physically smaller network and its spec.
//!
//! The producer of a maxout layer loses the rows (dense) or output channels (conv) of removed
//! pieces. While every unit keeps a piece, the consumer is untouched; a removed unit also
//! removes the consumer's inputs that read it (through a `flatten`, every spatial position of
//! that channel). A plain conv or dense layer's units are its outputs: the layer loses the
//! filters or rows of removed units and the consumer the inputs that read them. Channel-wise
//! layers in between (batch norm) lose the channels their input loses.

use super::plan::PrunePlan;
use crate::error::{Error, Result};
use crate::model::layers::Kind;
use crate::model::layout;
use crate::model::network::Network;
use crate::model::spec::{ActShape, LayerSpec};

/// Applies `plan` to `net`, returning the smaller network (the input is not modified).
pub fn apply(net: &Network, plan: &PrunePlan) -> Result<Network> {
    let spec = net.spec();
    plan.validate(spec)?;
    let infos = net.infos();
    let mut new_spec = spec.clone();
    let mut params = net.params().to_vec();
    for lp in &plan.layers {
        let m = lp.layer;
        let pieces = &spec.unit_pieces(m).expect("a validated plan names unit layers");
        let p = spec.producer_of(m).expect("a validated unit layer has a producer");
        let rows: Vec<usize> = lp
            .keep
            .iter()
            .enumerate()
            .flat_map(|(u, keep)| keep.iter().map(move |&j| layout::piece_index(pieces, u, j)))
            .collect();
        params[p] = params[p].keep_outputs(&rows);
        new_spec.layers[p].set_outputs(rows.len());
        // Channel-wise layers (batch norm) between the producer and its maxout hold one entry
        // per piece.
        for between in params.iter_mut().take(m).skip(p + 1) {
            *between = between.keep_outputs(&rows);
        }
        if p != m {
            new_spec.layers[m] = LayerSpec::maxout(plan.new_pieces(m, pieces));
        }
        let units: Vec<usize> = (0..lp.keep.len()).filter(|&u| !lp.keep[u].is_empty()).collect();
        if units.len() == pieces.units() {
            continue;
        }
        let consumer = spec.consumer_of(m).ok_or_else(|| {
            Error::invalid(
                "plan",
                format!("layer {m}: units can only be removed when a conv or dense layer reads them"),
            )
        })?;
        // A layer reading a vector reads every spatial position of a unit (through a flatten).
        let cols = |l: usize| match infos[l].input {
            ActShape::Flat(n) => layout::flat_features(&units, n / pieces.units()),
            ActShape::Map(_) => units.clone(),
        };
        // Channel-wise layers (batch norm) between the units and their consumer hold one entry
        // per unit (per feature after a flatten).
        for (l, between) in params.iter_mut().enumerate().take(consumer).skip(m + 1) {
            *between = between.keep_outputs(&cols(l));
        }
        params[consumer] = params[consumer].keep_inputs(&cols(consumer));
    }
    Network::from_params(&new_spec, params, net.device())
}
