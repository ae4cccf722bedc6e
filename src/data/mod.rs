//! Data: IDX files, CIFAR-10 batches, image folders, named datasets and their download; how pixels
//! become inputs (normalisation) and training varies them (augmentation).

pub mod cifar;
pub mod dataset;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod split;
pub mod transform;
