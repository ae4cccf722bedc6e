//! Data: IDX files, named datasets and their download.

pub mod dataset;
pub mod fetch;
pub mod idx;
