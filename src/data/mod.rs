//! Data: IDX files, image folders, named datasets and their download.

pub mod dataset;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod split;
