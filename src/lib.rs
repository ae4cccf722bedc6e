//! # maxprune
//!
//! Neuron pruning for maxout networks (Moya Rueda, Grzeszick and Fink, *Neuron Pruning for
//! Compressing Deep Networks Using Maxout Architectures*, GCPR 2017), built on burn.
//!
//! Data flows one way: [`data`] (IDX files, named datasets) -> [`model`] (spec -> network) ->
//! [`train`] (recipe, SGD, checkpoints in a [`train::RunDir`]) -> [`relevance`] (scores per piece)
//! -> [`prune::select`] (scores -> plan) -> [`prune::neuron`] (plan -> smaller network) -> train
//! -> [`report`].
//!
//! ```
//! use maxprune::model::{network::Network, presets::Preset};
//! let spec = Preset::Lenet5Maxout.spec();
//! assert_eq!(spec.num_params().unwrap(), 427_330);
//! let net = Network::init(&spec, 1, &burn::tensor::Device::flex()).unwrap();
//! assert_eq!(net.num_params(), 427_330);
//! ```

#![deny(missing_docs)]

pub mod bench;
pub mod data;
pub mod demo;
pub mod error;
pub mod fsio;
pub mod memory;
pub mod model;
pub mod onnx;
pub mod plot;
pub mod progress;
pub mod prune;
pub mod relevance;
pub mod report;
pub mod reproduce;
pub mod rng;
pub mod sparse;
pub mod train;
pub mod verify;

pub use error::{Error, Result};

use std::sync::OnceLock;

static DEVICE: OnceLock<burn::tensor::Device> = OnceLock::new();

/// The device networks are built, loaded and trained on: the flex CPU backend unless
/// [`set_device`] chose another.
pub fn device() -> burn::tensor::Device {
    DEVICE.get().cloned().unwrap_or_else(burn::tensor::Device::flex)
}

/// Chooses this process's device, once, before any network is built; false if one was already
/// chosen.
pub fn set_device(device: burn::tensor::Device) -> bool {
    DEVICE.set(device).is_ok()
}

static KERNELS: OnceLock<model::network::Kernels> = OnceLock::new();

/// The convolution and pooling kernels networks are built with: maxprune's own unless
/// [`set_kernels`] chose burn's.
pub fn kernels() -> model::network::Kernels {
    #[cfg(test)]
    if let Some(k) = TEST_KERNELS.get() {
        return k;
    }
    KERNELS.get().copied().unwrap_or_default()
}

#[cfg(test)]
thread_local! {
    /// Unit tests compare kernels within one process: this thread's choice, when set, wins.
    pub(crate) static TEST_KERNELS: std::cell::Cell<Option<model::network::Kernels>> = const { std::cell::Cell::new(None) };
}

/// Chooses this process's kernels, once, before any network is built; false if already chosen.
pub fn set_kernels(kernels: model::network::Kernels) -> bool {
    KERNELS.set(kernels).is_ok()
}

/// Threads the flex backend computes with: `RAYON_NUM_THREADS` if set, else the number of
/// available cores.
pub fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Tells glibc's allocator to keep freed memory for reuse (Linux with glibc; elsewhere, or when
/// the user set `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_`, it does nothing and returns
/// false).
///
/// The flex backend allocates a fresh buffer for every tensor op. With glibc's defaults, buffers
/// above its mmap threshold are mapped and unmapped each time, and the top of the heap is returned
/// to the kernel, so every parameter-sized gradient or activation is page-faulted in anew: in a
/// profile of `lenet5-maxout` training at batch 1 a third of the time was page faults. Allocations
/// up to 32 MiB (glibc's maximum) are served from the heap and the heap is never trimmed; the
/// process's resident memory stays at its peak. The CLI calls this before any tensor exists.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if !user_set {
            // SAFETY: mallopt only changes allocator parameters; glibc documents both options
            // as valid at any time, and 32 MiB is its maximum mmap threshold on 64-bit.
            return unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
            };
        }
    }
    false
}
