//! Pruning: plans (what survives), selection policies (scores -> plan) and applying a plan
//! to a network (plan -> smaller network).

pub mod neuron;
pub mod plan;
pub mod pruner;
pub mod schedule;
pub mod select;
pub mod sensitivity;
pub mod stop;
pub mod weight;

#[cfg(test)]
mod tests;
