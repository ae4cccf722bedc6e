//! Helpers shared by the integration tests that drive the real `maxprune` binary.
#![allow(dead_code)] // each test crate uses a part of them

pub mod nets;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with `args` in `cwd` (two threads).
pub fn maxprune(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maxprune"))
        .args(args)
        .current_dir(cwd)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the binary runs")
}

/// Exit code 0: returns the standard output.
pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstderr: {stderr}", out.status.code());
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Exit code 1, a message containing `needle`, and no panic.
pub fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Trains `preset` for one epoch on the embedded subset into `out`, with `extra` flags.
pub fn train_embedded(cwd: &Path, preset: &str, out: &str, extra: &[&str]) -> String {
    ok(&train_one_epoch(cwd, &["--preset", preset], out, extra))
}

/// Runs `train` for one epoch on the embedded subset from `source` (`--preset P` or
/// `--spec F`) into `out`, with `extra` flags.
pub fn train_one_epoch(cwd: &Path, source: &[&str], out: &str, extra: &[&str]) -> Output {
    let fixed = ["--dataset", "embedded", "--epochs", "1", "--out", out, "-q"];
    maxprune(&[&["train"][..], source, &fixed, extra].concat(), cwd)
}

/// The standard output of a successful run, parsed as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}
