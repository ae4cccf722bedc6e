//! Models: the architecture as data, presets, piece layout and the built network.

pub mod conv;
pub mod finite;
mod host;
pub mod import;
pub mod layers;
pub mod layout;
pub mod network;
pub mod norm;
pub mod onnx_import;
pub mod params;
pub mod pool;
pub mod presets;
pub mod spec;
