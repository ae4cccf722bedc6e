//! Data: IDX files, CIFAR-10 batches, image folders, named datasets and their download.

pub mod cifar;
pub mod dataset;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod split;
