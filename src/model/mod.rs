//! Models: the architecture as data, presets, piece layout and the built network.

pub mod import;
pub mod layout;
pub mod network;
pub mod presets;
pub mod spec;
