//! One regression test per cause found by the hostile-user reviews (the hardening issue's
//! list, numbered as there; issue 32's as `issue32_cause_N`), each driving the real binary
//! where the defect was seen through it. Unit tests beside the code cover the same causes at the reader level (`spec.rs`,
//! `sparse.rs`, `idx.rs`, `folder.rs`, `verify.rs`, `run.rs`, `prune/tests.rs`), and
//! `tests/fuzz.rs` feeds every reader arbitrary and mutated bytes.

use std::path::Path;

use maxprune::onnx::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use prost::Message;

mod util;
use util::{fails_with, json, maxprune, ok, train_embedded, train_one_epoch};

/// A small valid spec for 28x28 inputs, edited by the tests below.
fn spec() -> serde_json::Value {
    serde_json::json!({
        "format_version": 1,
        "name": "small",
        "input": {"channels": 1, "height": 28, "width": 28},
        "layers": [
            {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 5, "stride": 1, "padding": 0},
            {"kind": "max-pool", "kernel": 2, "stride": 2},
            {"kind": "flatten"},
            {"kind": "dense", "name": "fc1", "outputs": 10}
        ]
    })
}

/// Trains `s.json`, a conv layer and a dense maxout layer of 4 units of k=3, for one epoch on
/// the embedded subset into `a` (200 validation examples).
fn train_small_maxout(cwd: &Path) {
    let mut s = spec();
    s["layers"] = serde_json::json!([
        {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 5, "stride": 1, "padding": 0},
        {"kind": "max-pool", "kernel": 2, "stride": 2},
        {"kind": "flatten"},
        {"kind": "dense", "name": "fc1", "outputs": 12},
        {"kind": "maxout", "pieces": {"units": 4, "k": 3}},
        {"kind": "dense", "name": "fc2", "outputs": 10}
    ]);
    std::fs::write(cwd.join("s.json"), s.to_string()).unwrap();
    ok(&train_one_epoch(cwd, &["--spec", "s.json"], "a", &["--val", "200"]));
}

/// Writes `spec` to `name` in `dir` and trains it for one epoch into `out`.
fn train_spec(dir: &Path, name: &str, spec: &serde_json::Value, out: &str) -> std::process::Output {
    std::fs::write(dir.join(name), spec.to_string()).unwrap();
    train_spec_file(dir, name, out)
}

/// Trains the spec file `name` in `dir` for one epoch into `out`.
fn train_spec_file(dir: &Path, name: &str, out: &str) -> std::process::Output {
    train_one_epoch(dir, &["--spec", name], out, &[])
}

/// Writes an IDX dataset directory whose training-images header is `dims` with no data.
fn idx_header_only(dir: &Path, dims: [u32; 3]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut header = vec![0, 0, 8, 3];
    for d in dims {
        header.extend_from_slice(&d.to_be_bytes());
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), &header).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 0]).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &header).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 0]).unwrap();
}

/// Runs `train --preset lenet5 --dataset DATASET --out x` with `extra` flags.
fn train_lenet5_on(cwd: &Path, dataset: &str, extra: &[&str]) -> std::process::Output {
    let args = ["train", "--preset", "lenet5", "--dataset", dataset, "--out", "x"];
    maxprune(&[&args[..], extra].concat(), cwd)
}

/// `args` exit 1 with `needle` in the message, and `out` does not exist afterwards.
fn refused_leaving_nothing(cwd: &Path, args: &[&str], needle: &str, out: &str) {
    fails_with(&maxprune(args, cwd), needle);
    assert!(!cwd.join(out).exists(), "{args:?} left {out} behind");
}

/// A trained `seed-lenet` in `a` and a one-step plan for it in `plan.json`.
fn planned_run() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &[]);
    ok(&maxprune(
        &["relevance", "a", "--criterion", "weight-norm", "--out", "rel.json"],
        tmp.path(),
    ));
    ok(&maxprune(
        &["prune", "plan", "a", "--relevance", "rel.json", "--out", "plan.json"],
        tmp.path(),
    ));
    tmp
}

#[test]
fn cause_2_sizes_are_bounded_before_anything_is_allocated() {
    // Seen: aborts on allocation (exit 134), capacity-overflow panics, wrapped parameter
    // counts, and an IDX header of 65536 x 16777216 x 16777216 with no data read as 0 images.
    let tmp = tempfile::tempdir().unwrap();
    for (field, value, needle) in [
        ("filters", serde_json::json!(1_000_000_000_000u64), "exceeds the limit"),
        ("filters", serde_json::json!(1u64 << 62), "exceeds the limit"),
        (
            "padding",
            serde_json::json!(1_000_000_000u64),
            "padding: 1000000000 exceeds the limit of 65536",
        ),
    ] {
        let mut s = spec();
        s["layers"][0][field] = value;
        let out = train_spec(tmp.path(), "s.json", &s, "x");
        fails_with(&out, needle);
        fails_with(&out, "conv1");
    }
    let train = [
        "train",
        "--preset",
        "lenet5-maxout",
        "--dataset",
        "embedded",
        "--out",
        "x",
        "-q",
    ];
    for (extra, needle) in [
        (&["--width", "1000000"][..], "exceeds the limit of 1073741824 elements"),
        (&["--input-size", "100000"][..], "exceeds the limits of 65536 per side"),
    ] {
        fails_with(&maxprune(&[&train[..], extra].concat(), tmp.path()), needle);
    }
    for size in ["100000", "4294967296"] {
        let out = train_lenet5_on(tmp.path(), &format!("folder:imgs@{size}"), &[]);
        fails_with(&out, &format!("a size of 1 to 4096 pixels, found '@{size}'"));
    }
    idx_header_only(&tmp.path().join("huge"), [65536, 16_777_216, 16_777_216]);
    refused_leaving_nothing(
        tmp.path(),
        &["train", "--preset", "lenet5", "--dataset", "idx:huge", "--out", "x"],
        "train-images-idx3-ubyte",
        "x",
    );
}

#[test]
fn cause_3_a_corrupt_sparse_file_is_refused() {
    // Seen: table entries with huge lengths or offsets and huge CSR shapes panicked or aborted.
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &[]);
    ok(&maxprune(&["export", "a", "--out", "a.mxs"], tmp.path()));
    let good = std::fs::read(tmp.path().join("a.mxs")).unwrap();
    let mut flipped = good.clone();
    flipped[40] ^= 0x5a;
    std::fs::write(tmp.path().join("flipped.mxs"), &flipped).unwrap();
    fails_with(
        &maxprune(&["eval", "flipped.mxs", "--dataset", "embedded"], tmp.path()),
        "flipped.mxs",
    );
    std::fs::write(tmp.path().join("short.mxs"), &good[..good.len() / 2]).unwrap();
    fails_with(
        &maxprune(&["eval", "short.mxs", "--dataset", "embedded"], tmp.path()),
        "short.mxs",
    );
}

#[test]
fn cause_4_a_plan_listing_a_layer_twice_is_refused() {
    // Seen: `prune apply` panicked at prune/neuron.rs on a plan with the same layer twice.
    let tmp = planned_run();
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("plan.json")).unwrap()).unwrap();
    let first = plan["layers"][0].clone();
    plan["layers"].as_array_mut().unwrap().push(first);
    std::fs::write(tmp.path().join("twice.json"), plan.to_string()).unwrap();
    refused_leaving_nothing(
        tmp.path(),
        &["prune", "apply", "a", "--plan", "twice.json", "--out", "b"],
        "twice",
        "b",
    );
}

#[test]
fn cause_5_a_spec_with_no_parameter_layers_is_refused() {
    // Seen: `Tensor::backward requires a tracked autodiff tensor`.
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec();
    s["layers"] = serde_json::json!([{"kind": "flatten"}]);
    fails_with(&train_spec(tmp.path(), "s.json", &s, "x"), "nothing to train");
    assert!(!tmp.path().join("x").exists(), "the refused run left its directory");
}

#[test]
fn cause_6_a_second_writer_to_one_output_is_refused() {
    // Seen: two `prune apply` (or `train` and `prune apply`) into one --out both exited 0 and
    // left spec.json from one and model.safetensors from the other.
    let tmp = planned_run();
    let apply = ["prune", "apply", "a", "--plan", "plan.json", "--out", "b"];
    {
        let _held = maxprune::fsio::OutputLock::acquire(&tmp.path().join("b"), "the test's writer").unwrap();
        let out = maxprune(&apply, tmp.path());
        fails_with(&out, "b is being written by another process");
        fails_with(&out, &format!("pid {}: the test's writer", std::process::id()));
        assert!(!tmp.path().join("b").exists());
    }
    // Two writers started together: exactly one succeeds, and what it wrote is whole.
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_maxprune"))
            .args(apply)
            .current_dir(tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let codes: Vec<i32> = [first, second]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 1).count(), 1, "{codes:?}");
    ok(&maxprune(&["eval", "b", "--dataset", "embedded"], tmp.path()));
    assert!(!maxprune::fsio::OutputLock::path_for(&tmp.path().join("b")).exists());
}

#[test]
fn cause_7_wrong_results_are_not_accepted_silently() {
    // Seen: `epochs 0`, 0 training images (trained to a NaN loss), layer names with `/` or
    // `..`, test classes that the training split lacks, and NaN weights were all accepted
    // without a word.
    let tmp = tempfile::tempdir().unwrap();
    idx_header_only(&tmp.path().join("empty"), [0, 28, 28]);
    refused_leaving_nothing(
        tmp.path(),
        &["train", "--preset", "lenet5", "--dataset", "idx:empty", "--out", "x"],
        "idx:empty: 0 training images; expected at least 1",
        "x",
    );
    let train = [
        "train",
        "--preset",
        "seed-lenet",
        "--dataset",
        "embedded",
        "--out",
        "x",
        "-q",
    ];
    fails_with(
        &maxprune(&[&train[..], &["--epochs", "0"]].concat(), tmp.path()),
        "--epochs: expected at least 1, found 0",
    );
    std::fs::write(tmp.path().join("t.toml"), "epochs = 0\n").unwrap();
    fails_with(
        &maxprune(&[&train[..], &["--config", "t.toml"]].concat(), tmp.path()),
        "epochs: expected at least 1",
    );
    for name in ["../evil", "a/b"] {
        let mut s = spec();
        s["layers"][0]["name"] = name.into();
        fails_with(&train_spec(tmp.path(), "s.json", &s, "x"), &format!("found {name:?}"));
    }
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("evil").exists());
    for (dir, class) in [("train", "a"), ("train", "b"), ("test", "a"), ("test", "c")] {
        let path = tmp.path().join("imgs").join(dir).join(class);
        std::fs::create_dir_all(&path).unwrap();
        image::save_buffer(path.join("1.png"), &[9; 16], 4, 4, image::ColorType::L8).unwrap();
    }
    let out = train_lenet5_on(tmp.path(), "folder:imgs@28", &["--classes", "2"]);
    fails_with(
        &out,
        "test class: expected a class of the training split (a, b), found \"c\"",
    );

    train_embedded(tmp.path(), "seed-lenet", "a", &[]);
    let path = tmp.path().join("a/model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec(), v.shape().to_vec()))
        .collect();
    tensors[0].1[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, meta.metadata().clone()).unwrap()).unwrap();
    fails_with(
        &maxprune(&["eval", "a", "--dataset", "embedded"], tmp.path()),
        "NaN or infinite",
    );
}

#[test]
fn cause_8_a_spec_of_200000_layers_is_refused_at_once() {
    // Seen: still running after minutes.
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec();
    let mut layers = vec![serde_json::json!({"kind": "relu"}); 200_000];
    layers.extend(s["layers"].as_array().unwrap().iter().cloned());
    s["layers"] = layers.into();
    fails_with(
        &train_spec(tmp.path(), "s.json", &s, "x"),
        "layers: 200004 exceeds the limit of 10000",
    );
}

#[test]
fn cause_9_messages_name_the_field_and_what_was_found() {
    // Seen: `eval_batch_size = 0` reported as `batch_size`; `folder:DIR@0`, `@abc` and `@`
    // read as part of the path; train/ without test/ reported "found 0 training images"; a
    // byte-order mark in spec.json refused; a corrupt spec in safetensors metadata reported as
    // a bare serde message.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("t.toml"), "eval_batch_size = 0\n").unwrap();
    let train = [
        "train",
        "--preset",
        "seed-lenet",
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "-q",
    ];
    fails_with(
        &maxprune(
            &[&train[..], &["--config", "t.toml", "--out", "x"]].concat(),
            tmp.path(),
        ),
        "eval_batch_size: expected at least 1, found 0",
    );
    for size in ["0", "abc", ""] {
        let out = train_lenet5_on(tmp.path(), &format!("folder:imgs@{size}"), &[]);
        fails_with(&out, &format!("found '@{size}'"));
    }
    let path = tmp.path().join("lone/train/a");
    std::fs::create_dir_all(&path).unwrap();
    image::save_buffer(path.join("1.png"), &[9; 16], 4, 4, image::ColorType::L8).unwrap();
    let out = train_lenet5_on(tmp.path(), "folder:lone@28", &[]);
    fails_with(&out, "expected test/ beside train/");

    std::fs::write(tmp.path().join("bom.json"), format!("\u{feff}{}", spec())).unwrap();
    ok(&train_spec_file(tmp.path(), "bom.json", "bom"));

    let bytes = std::fs::read(tmp.path().join("bom/model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = meta.metadata().clone().unwrap();
    meta.insert("maxprune_spec".into(), "{\"format_version\": 1, \"na".into());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let rewritten = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    std::fs::write(tmp.path().join("bom/model.safetensors"), rewritten).unwrap();
    fails_with(
        &maxprune(&["eval", "bom", "--dataset", "embedded"], tmp.path()),
        "model.safetensors: metadata entry \"maxprune_spec\" (expected the network's spec as JSON)",
    );
}

#[test]
fn cause_1_labels_beyond_the_outputs_are_refused_before_a_run_exists() {
    // Seen: `index 7 out of bounds` in the loss's gather, and a directory left behind that
    // refused the retry as "already holds a run".
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "--preset",
        "lenet5-maxout",
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "--out",
        "a",
        "-q",
    ];
    let out = maxprune(&[&args[..], &["--classes", "5"]].concat(), tmp.path());
    fails_with(&out, "5 outputs, but the dataset embedded has 10 classes");
    assert!(!tmp.path().join("a").exists());
    ok(&maxprune(&args, tmp.path()));

    // A 5-class network (trained on a 5-class folder) used with 10-class data: every command
    // that reads labels refuses it before it writes anything.
    for class in ["a", "b", "c", "d", "e"] {
        let dir = tmp.path().join("five").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10 {
            image::save_buffer(dir.join(format!("{i}.png")), &[i * 20; 16], 4, 4, image::ColorType::L8).unwrap();
        }
    }
    let five = [
        "train",
        "--preset",
        "seed-lenet",
        "--classes",
        "5",
        "--dataset",
        "folder:five@28",
    ];
    ok(&maxprune(
        &[&five[..], &["--epochs", "1", "--out", "f", "-q"]].concat(),
        tmp.path(),
    ));
    let needle = "the last layer has 5 outputs, but the dataset";
    let on_embedded = ["--dataset", "embedded"];
    for (command, out) in [
        (&["eval", "f"][..], "nothing"),
        (&["relevance", "f", "--out", "rel.json"][..], "rel.json"),
        (&["prune", "neurons", "f", "--val", "0", "--out", "p"][..], "p"),
        (&["prune", "weights", "f", "--val", "0", "--out", "w"][..], "w"),
    ] {
        refused_leaving_nothing(tmp.path(), &[command, &on_embedded[..]].concat(), needle, out);
    }
}

#[test]
fn cause_7_numbers_out_of_range_or_nan_are_refused_at_the_boundary() {
    // Seen: `--tolerance NaN` rejected every step, `--tau NaN` kept every piece, `--quality NaN`
    // removed 99.7% of the weights, `--per-step 0`, `--until-k 0`, negative tolerances,
    // duplicate `--sparsity` keys and `lr_gamma = nan` were accepted.
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &["--val", "200"]);
    let neurons = [
        "prune",
        "neurons",
        "a",
        "--out",
        "b",
        "--val",
        "200",
        "--retrain-epochs",
        "1",
    ];
    for (extra, needle) in [
        (
            &["--tolerance", "NaN"][..],
            "tolerance: expected a finite number of points >= 0, found NaN",
        ),
        (&["--tolerance=-1"][..], "found -1"),
        (
            &["--policy", "threshold", "--tau", "NaN"][..],
            "threshold: expected a finite score >= 0",
        ),
        (
            &["--policy", "global", "--fraction", "NaN"][..],
            "fraction: expected (0, 1), found NaN",
        ),
        (&["--per-step", "0"][..], "at least 1 piece per unit and step"),
        (&["--until-k", "0"][..], "until k: expected at least 1"),
        (&["--retrain-lr", "NaN"][..], "retraining learning rate"),
    ] {
        fails_with(&maxprune(&[&neurons[..], extra].concat(), tmp.path()), needle);
        assert!(!tmp.path().join("b").exists(), "{extra:?} left an output behind");
    }
    let weights = [
        "prune",
        "weights",
        "a",
        "--out",
        "c",
        "--val",
        "200",
        "--retrain-epochs",
        "1",
    ];
    for (extra, needle) in [
        (
            &["--quality", "NaN"][..],
            "quality factor of conv layers: expected a finite number >= 0, found NaN",
        ),
        (&["--sparsity", "dense=0.5,dense=0.6"][..], "'dense' is given twice"),
    ] {
        fails_with(&maxprune(&[&weights[..], extra].concat(), tmp.path()), needle);
    }
    std::fs::write(tmp.path().join("t.toml"), "lr_gamma = nan\n").unwrap();
    let out = maxprune(
        &[
            "train",
            "--preset",
            "seed-lenet",
            "--config",
            "t.toml",
            "--dataset",
            "embedded",
            "--out",
            "d",
        ],
        tmp.path(),
    );
    fails_with(&out, "lr_gamma: expected a finite number >= 0, found NaN");
}

#[test]
fn cause_6_a_schedule_never_writes_into_a_run_directory() {
    // Seen: `prune neurons` and `prune weights` wrote into an existing run directory, even
    // their own starting run.
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &["--val", "200"]);
    train_embedded(tmp.path(), "seed-lenet", "other", &["--val", "200"]);
    for (out, needle) in [
        ("a", "a: is the command's input a"),
        ("other", "other: holds other files"),
    ] {
        for kind in ["neurons", "weights"] {
            let args = [
                "prune",
                kind,
                "a",
                "--out",
                out,
                "--val",
                "200",
                "--retrain-epochs",
                "1",
            ];
            fails_with(&maxprune(&args, tmp.path()), needle);
        }
    }
    assert!(!tmp.path().join("a/schedule.json").exists());
}

#[test]
fn cause_8_thread_counts_out_of_range_are_refused() {
    // Seen: `--threads 5000` hung for minutes.
    let tmp = tempfile::tempdir().unwrap();
    for n in ["0", "5000"] {
        let out = maxprune(&["--threads", n, "inspect", "--preset", "lenet5"], tmp.path());
        fails_with(&out, &format!("--threads: expected 1 to 1024, found {n}"));
    }
}

// Issue 32 ("Results you can trust"), part 2: file-system and resource safety.

/// `args` exit 1 with `needle` in the message and leave every file in `files` as it was.
fn refused_leaving_files(cwd: &Path, args: &[&str], needle: &str, files: &[&str]) {
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(cwd.join(f)).unwrap()).collect();
    fails_with(&maxprune(args, cwd), needle);
    for (f, bytes) in files.iter().zip(before) {
        assert_eq!(std::fs::read(cwd.join(f)).unwrap(), bytes, "{args:?} changed {f}");
    }
}

#[test]
fn issue_32_cause_3_writers_never_overwrite_what_is_not_theirs() {
    // Seen: `train`, `prune apply` and `import` into a directory of other files overwrote
    // them; `--out .` and `--out /` were accepted; `export`, `relevance` and `prune plan`
    // overwrote their own input run's files.
    let tmp = planned_run();
    let cwd = tmp.path();
    std::fs::create_dir(cwd.join("mine")).unwrap();
    std::fs::write(cwd.join("mine/notes.txt"), "keep").unwrap();
    let train = [
        "train",
        "--preset",
        "seed-lenet",
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "-q",
    ];
    for writer in [
        &train[..],
        &["prune", "apply", "a", "--plan", "plan.json"],
        &["import", "a/model.safetensors", "--preset", "lenet5"],
    ] {
        refused_leaving_files(
            cwd,
            &[writer, &["--out", "mine"]].concat(),
            "mine: holds other files (notes.txt) but no train.toml",
            &["mine/notes.txt"],
        );
        assert_eq!(std::fs::read_dir(cwd.join("mine")).unwrap().count(), 1);
        for out in [".", "/", "mine/.."] {
            fails_with(
                &maxprune(&[writer, &["--out", out]].concat(), cwd),
                "expected a path ending in a file or directory name, not '.', '..' or '/'",
            );
        }
    }
    for (args, file) in [
        (
            &["export", "a", "--out", "a/model.safetensors"][..],
            "a/model.safetensors",
        ),
        (&["relevance", "a", "--out", "a/spec.json"], "a/spec.json"),
        (
            &["prune", "plan", "a", "--relevance", "rel.json", "--out", "a/train.toml"],
            "a/train.toml",
        ),
        (
            &["prune", "plan", "a", "--relevance", "rel.json", "--out", "rel.json"],
            "rel.json",
        ),
    ] {
        refused_leaving_files(cwd, args, "the command's input", &[file]);
    }
    // The command's own kind of output is still accepted: an empty directory, a file it replaces.
    std::fs::create_dir(cwd.join("empty")).unwrap();
    ok(&maxprune(
        &["prune", "apply", "a", "--plan", "plan.json", "--out", "empty"],
        cwd,
    ));
    ok(&maxprune(
        &["prune", "plan", "a", "--relevance", "rel.json", "--out", "plan.json"],
        cwd,
    ));
}

#[test]
fn issue_32_cause_2_reads_are_capped_and_only_of_regular_files() {
    // Seen: a spec or model.safetensors linked to /dev/zero grew to gigabytes; a FIFO hung.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::os::unix::fs::symlink("/dev/zero", cwd.join("zero.json")).unwrap();
    let fifo = std::ffi::CString::new(cwd.join("fifo.toml").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let big = std::fs::File::create(cwd.join("big.toml")).unwrap();
    big.set_len(maxprune::fsio::MAX_DOCUMENT_BYTES + 1).unwrap();
    let train = ["train", "--dataset", "embedded", "--epochs", "1", "--out", "x", "-q"];
    for (source, needle) in [
        (
            &["--spec", "zero.json"][..],
            "zero.json: file type: expected a regular file (a JSON or TOML document), found a device",
        ),
        (
            &["--preset", "seed-lenet", "--config", "fifo.toml"],
            "fifo.toml: file type: expected a regular file (a JSON or TOML document), found a FIFO",
        ),
        (
            &["--preset", "seed-lenet", "--config", "big.toml"],
            "big.toml: size: expected at most 67108864 bytes (a JSON or TOML document), found 67108865 bytes",
        ),
    ] {
        refused_leaving_nothing(cwd, &[&train[..], source].concat(), needle, "x");
    }
    train_embedded(cwd, "seed-lenet", "a", &[]);
    std::fs::remove_file(cwd.join("a/model.safetensors")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", cwd.join("a/model.safetensors")).unwrap();
    fails_with(
        &maxprune(&["eval", "a", "--dataset", "embedded"], cwd),
        "model.safetensors: file type: expected a regular file (a tensor file), found a device",
    );
}

#[test]
fn issue_32_cause_8_a_lock_covers_the_outputs_whole_tree() {
    // Seen: `train --out rr/seed-1` succeeded inside a running `reproduce --out rr`.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let train = [
        "train",
        "--preset",
        "seed-lenet",
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "-q",
    ];
    {
        let _held = maxprune::fsio::OutputLock::acquire(&cwd.join("rr"), "maxprune reproduce").unwrap();
        for out in ["rr/seed-1", "rr/deeper/seed-1"] {
            let run = maxprune(&[&train[..], &["--out", out]].concat(), cwd);
            fails_with(&run, &format!("{out} lies inside"));
            fails_with(&run, "which is being written by another process");
            fails_with(&run, "maxprune reproduce");
            assert!(!cwd.join(out).exists());
        }
    }
    ok(&maxprune(&[&train[..], &["--out", "rr/seed-1"]].concat(), cwd));
}

/// A process id that no process has (a child that has been waited for).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn issue_32_cause_11_interrupts_leave_no_lock_and_no_stale_files() {
    // Seen: SIGINT and SIGTERM left the lock file; `kill -9` of `export` left `.part` files;
    // a `train` killed at once left train.toml without spec.json, which `--resume` refused
    // as "no spec.json".
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    for (signal, out) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_maxprune"))
            .args([
                "train",
                "--preset",
                "seed-lenet",
                "--dataset",
                "embedded",
                "--epochs",
                "1000",
            ])
            .args(["--out", out, "-q"])
            .current_dir(cwd)
            .env("RAYON_NUM_THREADS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lock = maxprune::fsio::OutputLock::path_for(&cwd.join(out));
        let start = std::time::Instant::now();
        while !lock.exists() {
            assert!(start.elapsed().as_secs() < 60, "no lock file after 60 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: the child's id is a live process of ours.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        assert_eq!(child.wait().unwrap().signal(), Some(signal));
        assert!(!lock.exists(), "signal {signal} left {}", lock.display());
    }

    train_embedded(cwd, "seed-lenet", "a", &[]);
    let stale = format!(".maxprune-{}-x1.part", dead_pid());
    let live = format!(".maxprune-{}-x2.part", std::process::id());
    for name in [&stale, &live] {
        std::fs::write(cwd.join(name), "partial").unwrap();
    }
    ok(&maxprune(&["export", "a", "--out", "a.mxs"], cwd));
    assert!(!cwd.join(&stale).exists(), "the killed writer's file stayed");
    assert!(cwd.join(&live).exists(), "a live writer's file was removed");

    std::fs::create_dir(cwd.join("u")).unwrap();
    std::fs::copy(cwd.join("a/train.toml"), cwd.join("u/train.toml")).unwrap();
    fails_with(
        &maxprune(&["train", "--resume", "--out", "u"], cwd),
        "u: an unfinished run directory (train.toml but no spec.json",
    );
    train_embedded(cwd, "seed-lenet", "u", &[]);
    ok(&maxprune(
        &["train", "--resume", "--out", "u", "--epochs", "2", "-q"],
        cwd,
    ));
}

#[test]
fn issue_32_cause_1_memory_is_bounded_per_batch_not_per_example() {
    // Seen: a conv with padding 3000 on 28x28, within every per-example limit, aborted `train`
    // with exit 134 (`memory allocation of 83664405504 bytes failed`), leaving a 726 MB model.
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec();
    s["layers"][0]["padding"] = 3000.into();
    let out = train_spec(tmp.path(), "s.json", &s, "x");
    fails_with(&out, "layer 0 ('conv1') (conv2d): its output for a batch of 64 takes");
    fails_with(&out, "over the limit of 17179869184 bytes per buffer");
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn issue_32_cause_1_every_command_that_runs_a_network_bounds_its_batch_first() {
    // Seen: `train`, `eval`, `relevance` and `bench` bounded their batches, but `sensitivity`,
    // `verify` and the pruning schedules ran a batch through the network unbounded. A conv
    // before global average pooling has the same parameters at any padding, so a trained
    // network imports under a spec padded 3000.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = spec();
    s["layers"] = serde_json::json!([
        {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "relu"},
        {"kind": "global-avg-pool"},
        {"kind": "dense", "name": "fc1", "outputs": 10}
    ]);
    ok(&train_spec(cwd, "s.json", &s, "a"));
    s["layers"][0]["padding"] = 3000.into();
    std::fs::write(cwd.join("big.json"), s.to_string()).unwrap();
    ok(&maxprune(
        &[
            "import",
            "a/model.safetensors",
            "--spec",
            "big.json",
            "--dataset",
            "embedded",
            "--out",
            "big",
        ],
        cwd,
    ));
    let units = [
        "--criterion",
        "contribution",
        "--policy",
        "units",
        "--fraction",
        "0.5",
        "--steps",
        "1",
    ];
    for (args, out) in [
        (
            vec!["sensitivity", "big", "--val-dataset", "embedded", "--out", "s"],
            "s",
        ),
        (
            vec!["verify", "big", "--pairs", "p.txt", "--images", "i", "--out", "v"],
            "v",
        ),
        (
            [&["prune", "neurons", "big", "--out", "n", "--val", "0"][..], &units].concat(),
            "n",
        ),
        (vec!["prune", "weights", "big", "--out", "w", "--val", "0"], "w"),
    ] {
        fails_with(&maxprune(&args, cwd), "its output for a batch of");
        assert!(!cwd.join(out).exists(), "{args:?} wrote {out}");
    }
}

#[test]
fn real_cnns_neuron_pruning_after_weight_pruning_keeps_the_masks() {
    // Seen: `prune weights a --out w`, then `prune neurons w/step-01 --out n` failed with
    // "tensor 'sgd.mask.fc1.weight': expected 300000 values … found 400000", leaving an
    // `n/step-01` that could not be resumed: the masks did not follow the pruned rows.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_embedded(cwd, "seed-lenet", "a", &[]);
    let quick = ["--retrain-epochs", "1", "--val", "0", "--steps", "1", "-q"];
    ok(&maxprune(
        &[&["prune", "weights", "a", "--out", "w"][..], &quick].concat(),
        cwd,
    ));
    ok(&maxprune(
        &[&["prune", "neurons", "w/step-01", "--out", "n"][..], &quick].concat(),
        cwd,
    ));
    // The step's network is smaller, and the weights the masks removed are still zero: the
    // sparsity survives both the cut and the retraining.
    let row = |schedule: &str| {
        let path = cwd.join(schedule).join("report.json");
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        report["rows"][1].clone()
    };
    let (w, n) = (row("w"), row("n"));
    assert!(n["params"].as_u64() < w["params"].as_u64(), "{n} vs {w}");
    assert!(
        n["nonzeros"].as_u64() < n["params"].as_u64().map(|p| p * 3 / 4),
        "the weight-pruned zeros were lost: {n}"
    );
}

/// Writes `n` IDX images of `side` x `side` pixels and their labels (0 to 9 in turn) as
/// `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` in `dir`.
fn write_idx(dir: &Path, prefix: &str, n: u32, side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut images = vec![0, 0, 8, 3];
    for d in [n, side, side] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend((0..n * side * side).map(|i| (i * 7 % 256) as u8));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

/// `prune neurons a --out b --val 200 --retrain-epochs 1` with `extra` flags.
fn prune_neurons(cwd: &Path, extra: &[&str]) -> std::process::Output {
    let args = [
        "prune",
        "neurons",
        "a",
        "--out",
        "b",
        "--val",
        "200",
        "--retrain-epochs",
        "1",
        "-q",
    ];
    maxprune(&[&args[..], extra].concat(), cwd)
}

#[test]
fn issue32_cause_5_a_resumed_run_refuses_flags_that_would_change_it() {
    // Seen: `train --resume` with another --lr, --batch-size, --preset, --dataset, --val,
    // --seed or --config went on with the run's own values without a word, and an --epochs
    // below the epochs done was written into train.toml.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let first = [
        "train",
        "--preset",
        "seed-lenet",
        "--dataset",
        "embedded",
        "--val",
        "200",
        "--epochs",
        "2",
        "--out",
        "a",
        "-q",
    ];
    ok(&maxprune(&first, cwd));
    std::fs::write(cwd.join("t.toml"), "epochs = 3\n").unwrap();
    let recipe = std::fs::read(cwd.join("a/train.toml")).unwrap();
    let resume = ["train", "--resume", "--out", "a", "-q"];
    for (extra, needle) in [
        (
            &["--lr", "0.5"][..],
            "--lr 0.5: the run in a was started with base_lr = 0.01",
        ),
        (
            &["--batch-size", "32"][..],
            "--batch-size 32: the run in a was started with batch_size = 64",
        ),
        (&["--seed", "7"][..], "--seed 7: the run in a was started with seed = 1"),
        (
            &["--val", "100"][..],
            "--val 100: the run in a was started with val = 200",
        ),
        (
            &["--dataset", "mnist"][..],
            "--dataset mnist: the run in a was started with dataset = embedded",
        ),
        (
            &["--preset", "lenet5"][..],
            "--preset: a resumed run keeps its architecture (seed-lenet",
        ),
        (&["--width", "2"][..], "--width: a resumed run keeps its architecture"),
        (
            &["--config", "t.toml"][..],
            "--config t.toml: a resumed run keeps its recipe",
        ),
        (
            &["--epochs", "1"][..],
            "--epochs 1: the run in a has trained 2 epochs already",
        ),
    ] {
        fails_with(&maxprune(&[&resume[..], extra].concat(), cwd), needle);
        assert_eq!(std::fs::read(cwd.join("a/train.toml")).unwrap(), recipe, "{extra:?}");
    }
    // The run's own values are no change.
    ok(&maxprune(
        &[
            &resume[..],
            &["--lr", "0.01", "--val", "200", "--epochs", "2", "--dataset", "embedded"],
        ]
        .concat(),
        cwd,
    ));
    // The recipe is checked on resume as on a fresh run, naming the file and the value.
    let edited = String::from_utf8(recipe)
        .unwrap()
        .replace("momentum = 0.9", "momentum = 1.5");
    std::fs::write(cwd.join("a/train.toml"), edited).unwrap();
    fails_with(
        &maxprune(&resume, cwd),
        "train.toml: momentum: expected a value in [0, 1), found 1.5",
    );
}

#[test]
fn issue32_cause_6_a_refused_schedule_writes_nothing() {
    // Seen: these were refused after `schedule.json` (or a step directory) was written, and the
    // retry was then refused as a schedule already there.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_embedded(cwd, "seed-lenet", "a", &["--val", "200"]);
    for (extra, needle) in [
        (
            &["--policy", "units", "--fraction", "0.5", "--steps", "1"][..],
            "argmax scores sum to 1 in every unit",
        ),
        (
            &["--policy", "units", "--fraction", "0"][..],
            "fraction: expected (0, 1), found 0",
        ),
        (&["--layers", ""][..], "found an empty one"),
        (&["--layers", ",fc1"][..], "found an empty one"),
        (&["--layers", "fc1,fc1"][..], "'fc1' is given twice"),
        (
            &["--layers", "fc2"][..],
            "'fc2' is not a layer whose units can be pruned",
        ),
        (
            &["--distill", "0.5", "--temperature", "1e30"][..],
            "distillation temperature: expected a temperature in [0.01, 100], found 1e30",
        ),
    ] {
        let out = prune_neurons(cwd, extra);
        fails_with(&out, needle);
        assert!(!cwd.join("b").exists(), "{extra:?} left an output behind");
    }
}

#[test]
fn issue32_cause_7_stopping_rules_count_what_the_schedule_prunes() {
    // Seen: --tolerance-against a run trained on another dataset was accepted; --until-k
    // counted the pieces of maxout layers the schedule does not score (`--layers conv1
    // --until-k 2` pruned conv1 from 2 pieces to 1), and the units policy, which never lowers
    // k, ran under a k rule (to `result: step 0`, or 10 steps down to 5 units).
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = spec();
    s["layers"] = serde_json::json!([
        {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 5, "stride": 1, "padding": 0},
        {"kind": "maxout", "pieces": {"units": 2, "k": 2}},
        {"kind": "max-pool", "kernel": 2, "stride": 2},
        {"kind": "flatten"},
        {"kind": "dense", "name": "fc1", "outputs": 12},
        {"kind": "maxout", "pieces": {"units": 4, "k": 3}},
        {"kind": "dense", "name": "fc2", "outputs": 10}
    ]);
    std::fs::write(cwd.join("s.json"), s.to_string()).unwrap();
    ok(&train_one_epoch(cwd, &["--spec", "s.json"], "a", &["--val", "200"]));
    write_idx(&cwd.join("other"), "train", 300, 28);
    write_idx(&cwd.join("other"), "t10k", 20, 28);
    let other = [
        "train",
        "--spec",
        "s.json",
        "--dataset",
        "idx:other",
        "--epochs",
        "1",
        "--val",
        "200",
        "--out",
        "ref",
        "-q",
    ];
    ok(&maxprune(&other, cwd));
    let units = ["--policy", "units", "--criterion", "contribution", "--fraction", "0.25"];
    for (extra, needle) in [
        (
            &["--tolerance-against", "ref"][..],
            "ref: it was trained on idx:other, the schedule retrains on embedded",
        ),
        (
            &["--layers", "conv1", "--until-k", "2"][..],
            "until k = 2: the scored layers (conv1) have at most 2 pieces per unit already",
        ),
        (
            &units[..],
            "it is stopped by a number of steps: expected steps, found none",
        ),
        (
            &[&units[..], &["--until-k", "2", "--steps", "2"]].concat()[..],
            "until k = 2: removing whole units never lowers a unit's piece count",
        ),
    ] {
        fails_with(&prune_neurons(cwd, extra), needle);
        assert!(!cwd.join("b").exists(), "{extra:?} left an output behind");
    }
    // Counted over fc1 alone: one step takes it from 3 pieces to 2, and conv1 keeps its 2.
    ok(&prune_neurons(cwd, &["--layers", "fc1", "--until-k", "2"]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("b/report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[1]["pieces"], serde_json::json!(["2", "2"]), "{report}");
}

#[test]
fn issue32_cause_10_lists_of_layers_follow_one_rule_and_splits_one_shape() {
    // Seen: `--layers 'fc1 '` refused where `--fraction-per-layer ' fc1 = 0.5 '` was accepted;
    // --fraction silently ignored beside --fraction-per-layer; 28x28 training and 14x14 test
    // images trained to 12%.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_embedded(cwd, "seed-lenet", "a", &["--val", "200"]);
    let out = ok(&maxprune(
        &["relevance", "a", "--layers", " fc1 ", "--out", "r.json"],
        cwd,
    ));
    assert!(out.contains("fc1"), "{out}");
    fails_with(
        &maxprune(&["relevance", "a", "--layers", "fc1,,fc1", "--out", "r2.json"], cwd),
        "--layers: invalid layers: 'fc1,,fc1': expected comma-separated items, found an empty one",
    );
    let both = prune_neurons(
        cwd,
        &[
            "--policy",
            "units",
            "--criterion",
            "contribution",
            "--fraction",
            "0.3",
            "--fraction-per-layer",
            " fc1 = 0.5 ",
            "--steps",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        both.status.code() == Some(2) && stderr.contains("cannot be used with"),
        "{stderr}"
    );
    assert!(!cwd.join("b").exists());
    write_idx(&cwd.join("mixed"), "train", 20, 28);
    write_idx(&cwd.join("mixed"), "t10k", 5, 14);
    refused_leaving_nothing(
        cwd,
        &[
            "train",
            "--preset",
            "seed-lenet",
            "--dataset",
            "idx:mixed",
            "--out",
            "x",
        ],
        "t10k images: expected the training images' size, 28x28, found 14x14",
        "x",
    );
}

#[test]
fn issue32_cause_12_messages_name_the_file_and_offer_only_what_exists() {
    // Seen: config errors without the file or the value, `prune apply` suggesting a --resume
    // it does not have, and `invalid spec: bad.json: invalid spec: layer 2 ...`.
    let tmp = planned_run();
    let cwd = tmp.path();
    std::fs::write(cwd.join("t.toml"), "weight_decay = -1.0\n").unwrap();
    fails_with(
        &train_lenet5_on(cwd, "embedded", &["--config", "t.toml"]),
        "t.toml: weight_decay: expected a finite number >= 0, found -1",
    );
    let apply = ["prune", "apply", "a", "--plan", "plan.json", "--out", "c"];
    ok(&maxprune(&apply, cwd));
    let again = maxprune(&apply, cwd);
    fails_with(&again, "c already holds a run");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("hint: use another --out") && !stderr.contains("--resume"),
        "{stderr}"
    );
    let mut s = spec();
    s["layers"][3]["outputs"] = 0.into();
    let out = train_spec(cwd, "bad.json", &s, "x");
    fails_with(&out, "invalid spec: bad.json: layer 3");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("bad.json: invalid spec"));
}

#[test]
fn real_cnns_batch_norm_trains_resumes_exactly_prunes_through_and_exports_folded() {
    // A conv maxout layer over batch-normalised pieces, a plain conv with its batch norm,
    // global average pooling and a dense classifier.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let spec = serde_json::json!({
        "format_version": 1,
        "name": "bn",
        "input": {"channels": 1, "height": 28, "width": 28},
        "layers": [
            {"kind": "conv2d", "name": "c1", "filters": 8, "kernel": 3, "stride": 2, "padding": 1},
            {"kind": "batch-norm", "name": "bn1"},
            {"kind": "relu"},
            {"kind": "maxout", "pieces": {"units": 4, "k": 2}},
            {"kind": "conv2d", "name": "c2", "filters": 8, "kernel": 3, "stride": 2, "padding": 1},
            {"kind": "batch-norm", "name": "bn2", "momentum": 0.2},
            {"kind": "relu"},
            {"kind": "global-avg-pool"},
            {"kind": "dense", "name": "fc", "outputs": 10}
        ]
    });
    std::fs::write(cwd.join("bn.json"), spec.to_string()).unwrap();
    let train = |out: &str, epochs: &str| {
        let args = ["train", "--spec", "bn.json", "--dataset", "embedded", "--val", "200"];
        ok(&maxprune(
            &[&args[..], &["--epochs", epochs, "--out", out, "-q"]].concat(),
            cwd,
        ));
    };
    train("straight", "2");
    train("resumed", "1");
    ok(&maxprune(
        &["train", "--resume", "--epochs", "2", "--out", "resumed", "-q"],
        cwd,
    ));
    let read = |f: &str| std::fs::read(cwd.join(f)).unwrap();
    assert_eq!(
        read("straight/model.safetensors"),
        read("resumed/model.safetensors"),
        "a resumed run with batch norm (running statistics included) is the uninterrupted run"
    );
    // The running statistics were trained and saved under PyTorch's names; they are buffers,
    // not parameters.
    let st = read("straight/model.safetensors");
    let tensors = safetensors::SafeTensors::deserialize(&st).unwrap();
    let var: Vec<f32> = tensors
        .tensor("bn2.running_var")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(var.iter().all(|&v| v > 0.0) && var.iter().any(|&v| v != 1.0), "{var:?}");
    let params = 8 * 9 + 8 + 2 * 8 + (4 * 9 * 8 + 8) + 2 * 8 + (8 * 10 + 10);
    let inspect = ok(&maxprune(&["inspect", "straight"], cwd));
    assert!(inspect.contains(&format!("{params}")), "{inspect}");
    // Whole units out through both batch norms, then retrained and evaluated.
    ok(&maxprune(
        &[
            "prune",
            "neurons",
            "straight",
            "--out",
            "p",
            "--criterion",
            "contribution",
            "--policy",
            "units",
            "--fraction",
            "0.25",
            "--layers",
            "c1,c2",
            "--steps",
            "1",
            "--retrain-epochs",
            "1",
            "--val",
            "0",
            "-q",
        ],
        cwd,
    ));
    ok(&maxprune(&["eval", "p/step-01", "--dataset", "embedded"], cwd));
    // Folded for deployment: no batch norm left, the same predictions.
    ok(&maxprune(
        &[
            "export",
            "p/step-01",
            "--format",
            "dense",
            "--fold-bn",
            "--out",
            "folded.safetensors",
        ],
        cwd,
    ));
    let folded = read("folded.safetensors");
    let tensors = safetensors::SafeTensors::deserialize(&folded).unwrap();
    assert!(
        tensors.names().iter().all(|n| !n.starts_with("bn")),
        "{:?}",
        tensors.names()
    );
    ok(&maxprune(
        &[
            "export",
            "p/step-01",
            "--format",
            "onnx",
            "--fold-bn",
            "--out",
            "folded.onnx",
        ],
        cwd,
    ));
    ok(&maxprune(
        &["export", "p/step-01", "--fold-bn", "--out", "folded.mxs"],
        cwd,
    ));
    let eval = |what: &str| json(&maxprune(&["eval", what, "--dataset", "embedded", "--json"], cwd));
    let (run, folded) = (eval("p/step-01"), eval("folded.mxs"));
    assert_eq!(run["accuracy"], folded["accuracy"]);
    let loss = |e: &serde_json::Value| e["loss"].as_f64().unwrap();
    assert!((loss(&run) - loss(&folded)).abs() < 1e-4, "{run} vs {folded}");
}

#[test]
fn issue32_cause_12_outputs_are_well_formed_and_names_stay_under_their_root() {
    // Seen: `chart bars` with a control character in a label wrote an SVG no XML reader
    // accepts; `pairs.txt` with a byte-order mark refused; names like `..` or `/etc` joined
    // onto `--images`.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let chart = r#"{"title": "t", "value_label": "x", "bars": [["ok", 1.0], ["bell\u0007", 2.0]]}"#;
    std::fs::write(cwd.join("c.json"), chart).unwrap();
    refused_leaving_nothing(
        cwd,
        &["chart", "bars", "c.json", "--out", "c.svg"],
        "c.json: bars[1] label: expected text without control characters",
        "c.svg",
    );

    train_embedded(cwd, "seed-lenet", "a", &[]);
    for name in ["Ann", "Bob"] {
        std::fs::create_dir_all(cwd.join("lfw").join(name)).unwrap();
        for i in 1..=2u8 {
            let file = cwd.join(format!("lfw/{name}/{name}_{i:04}.jpg"));
            image::save_buffer(file, &[40 * i; 64], 8, 8, image::ColorType::L8).unwrap();
        }
    }
    let pairs = "2 1\nAnn 1 2\nAnn 1 Bob 2\nBob 1 2\nBob 1 Ann 2\n";
    std::fs::write(cwd.join("bom.txt"), format!("\u{feff}{pairs}")).unwrap();
    ok(&maxprune(
        &["verify", "a", "--pairs", "bom.txt", "--images", "lfw"],
        cwd,
    ));
    for name in ["..", "/etc", "../lfw/Ann"] {
        std::fs::write(cwd.join("p.txt"), pairs.replace("Ann 1 Bob", &format!("Ann 1 {name}"))).unwrap();
        fails_with(
            &maxprune(&["verify", "a", "--pairs", "p.txt", "--images", "lfw"], cwd),
            "p.txt: line 3: expected a person's name that is one folder name",
        );
    }
}

#[test]
fn issue32_cause_13_schedules_and_plain_networks_work_with_the_defaults() {
    // Seen: `prune weights` and `export` refused the schedule directory `bench` measures
    // (`no spec.json`), and `sensitivity` on a network without maxout layers failed with its
    // own default criterion (`arg-max frequencies ... cannot rank units`).
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_small_maxout(cwd);
    ok(&prune_neurons(cwd, &["--layers", "fc1", "--until-k", "2"]));
    ok(&maxprune(
        &["export", "b", "--format", "dense", "--out", "m.safetensors"],
        cwd,
    ));
    let step = std::fs::read(cwd.join("b/step-01/model.safetensors")).unwrap();
    let exported = std::fs::read(cwd.join("m.safetensors")).unwrap();
    let tensors = |b: &[u8]| {
        let st = safetensors::SafeTensors::deserialize(b).unwrap();
        let mut t: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect();
        t.sort();
        t
    };
    assert_eq!(
        tensors(&exported),
        tensors(&step),
        "export takes the last accepted step"
    );
    let weights = [
        "prune",
        "weights",
        "b",
        "--out",
        "w",
        "--steps",
        "1",
        "--retrain-epochs",
        "1",
        "--val",
        "200",
        "-q",
    ];
    ok(&maxprune(&weights, cwd));
    let report = std::fs::read_to_string(cwd.join("w/report.json")).unwrap();
    assert!(report.contains("step-01"), "{report}");

    std::fs::write(cwd.join("plain.json"), spec().to_string()).unwrap();
    ok(&train_one_epoch(cwd, &["--spec", "plain.json"], "p", &["--val", "200"]));
    let out = ok(&maxprune(&["sensitivity", "p", "--fractions", "0.5", "-q"], cwd));
    assert!(
        out.contains("contribution criterion") && out.contains("| conv1 | 0.50 |"),
        "{out}"
    );
}

#[test]
fn issue32_cause_9_weights_whose_forward_pass_overflows_are_refused() {
    // Seen: conv1 weights of 3e38 (finite) passed the load check; `relevance` wrote `inf`
    // (as null) that `prune plan` could not read, and `eval` printed loss NaN.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_embedded(cwd, "seed-lenet", "a", &[]);
    let path = cwd.join("a/model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec(), v.shape().to_vec()))
        .collect();
    let conv1 = data.iter_mut().find(|t| t.0 == "conv1.weight").unwrap();
    for v in conv1.1.chunks_exact_mut(4).take(25) {
        v.copy_from_slice(&3e38f32.to_le_bytes());
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, b, s)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap();
            (n.clone(), v)
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, meta.metadata().clone()).unwrap()).unwrap();
    let needle = "layer 0 (conv2d 'conv1'): expected a finite output on the first batch";
    fails_with(&maxprune(&["eval", "a"], cwd), needle);
    refused_leaving_nothing(
        cwd,
        &["relevance", "a", "--criterion", "mean-activation", "--out", "r.json"],
        needle,
        "r.json",
    );
}

#[test]
fn issue32_cause_4_what_is_built_on_is_checked_by_content_not_path() {
    // Seen: a schedule resumed after its starting run was retrained went on with steps pruned
    // from the old network; `reproduce` went on from a stage directory another run had
    // replaced; a `[teacher]` could be the run's own output.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_small_maxout(cwd);
    let steps = ["--steps", "1", "--distill", "0.5"];
    ok(&prune_neurons(cwd, &steps));
    // The step's retraining learns from `a`, whose content it recorded.
    let step = std::fs::read_to_string(cwd.join("b/step-01/train.toml")).unwrap();
    assert!(step.contains("model_sha256"), "{step}");
    ok(&maxprune(
        &["train", "--resume", "--out", "a", "--epochs", "2", "-q"],
        cwd,
    ));
    fails_with(
        &prune_neurons(cwd, &[&steps[..], &["--resume"]].concat()),
        "model.safetensors SHA-256 (retrained or replaced since the schedule in b started from it",
    );
    // The step's own retraining, resumed, learns from the teacher it started with or not at all.
    fails_with(
        &maxprune(&["train", "--resume", "--out", "b/step-01", "--epochs", "2", "-q"], cwd),
        "a: model.safetensors SHA-256 (retrained or replaced since b/step-01 started learning from it",
    );

    std::fs::write(
        cwd.join("t.toml"),
        "[teacher]\nrun = \"x\"\nalpha = 0.5\ntemperature = 4.0\n",
    )
    .unwrap();
    refused_leaving_nothing(
        cwd,
        &[
            "train",
            "--preset",
            "seed-lenet",
            "--dataset",
            "embedded",
            "--config",
            "t.toml",
            "--out",
            "x",
            "-q",
        ],
        "x: expected another run, found the student's own output x",
        "x",
    );

    // A stage replaced by another seed's run.
    let stage = "r/seed-1/lenet5-maxout";
    let other = [
        "train",
        "--preset",
        "lenet5-maxout",
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "--val",
        "200",
    ];
    ok(&maxprune(
        &[&other[..], &["--seed", "2", "--out", stage, "-q"]].concat(),
        cwd,
    ));
    std::fs::write(cwd.join("r/reproduce.json"), "{}").unwrap();
    fails_with(
        &maxprune(
            &["reproduce", "lenet5", "--quick", "--seeds", "1", "--out", "r", "-q"],
            cwd,
        ),
        "expected this stage's run (lenet5-maxout, seed 1, 1 epochs, val 200, embedded), found lenet5-maxout with seed 2",
    );
}

#[test]
fn issue32_cause_13_timing_is_chosen_and_every_step_reports_its_paired_change() {
    // Seen: every step timed 3 batch sizes x 7 rounds twice with no way to turn it off, and no
    // stopping rule but the point comparison.
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &["--val", "200"]);
    let neurons = ["--criterion", "weight-norm", "--steps", "1"];
    let refused = prune_neurons(tmp.path(), &[&neurons[..], &["--bench-steps", "some"]].concat());
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("none, last, all"));
    let stdout = ok(&prune_neurons(
        tmp.path(),
        &[&neurons[..], &["--stop-rule", "paired", "--bench-steps", "none"]].concat(),
    ));
    assert!(stdout.contains("val change, points (95% CI)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("b/report.json")).unwrap()).unwrap();
    assert_eq!(report["config"]["stop_rule"], "paired");
    let step = &report["rows"][1];
    assert_eq!(step["val_change"]["examples"], 200, "{step}");
    assert!(
        step.get("speedups").is_none() && step.get("vs_lenet5").is_none(),
        "{step}"
    );
}

// Issue 33, "bring your own model": `import` of a state_dict, validation data of one's own,
// `eval --predictions`, and quiet broken pipes.

/// The tensors of an f32 safetensors file: (name, shape, values), sorted by name
/// (`conv1.bias`, `conv1.weight`, `fc1.bias`, `fc1.weight` for `spec()`).
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Writes `tensors` in `dtype` (F32, F64 or F16) without metadata, as
/// `safetensors.torch.save_file(model.state_dict(), path)` writes a PyTorch model.
fn write_state_dict(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: safetensors::Dtype) {
    use safetensors::Dtype;
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let bytes = match dtype {
                Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F64 => values.iter().flat_map(|v| f64::from(*v).to_le_bytes()).collect(),
                Dtype::F16 => values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                other => panic!("no encoder for {other:?}"),
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = encoded
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap();
            (n.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// `spec()` trained for one epoch into `a` (also written as `spec.json`), its weights as a
/// PyTorch-style state_dict in `w.safetensors`; returns the weights.
fn state_dict_run(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    ok(&train_spec(dir, "spec.json", &spec(), "a"));
    let weights = tensors(&dir.join("a/model.safetensors"));
    write_state_dict(&dir.join("w.safetensors"), &weights, safetensors::Dtype::F32);
    weights
}

/// `import FILE --spec SPEC --dataset embedded --out OUT` with `extra` flags.
fn import(cwd: &Path, file: &str, spec: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let args = ["import", file, "--spec", spec, "--dataset", "embedded", "--out", out];
    maxprune(&[&args[..], extra].concat(), cwd)
}

#[test]
fn issue_33_a_state_dict_imports_into_a_run_that_predicts_as_its_source() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    state_dict_run(cwd);
    let printed = ok(&import(cwd, "w.safetensors", "spec.json", "b", &[]));
    assert!(printed.contains("copied     conv1.weight <- conv1.weight"), "{printed}");
    let eval = |run: &str, csv: &str| {
        let args = ["eval", run, "--json", "--predictions", csv, "--logits"];
        let e = json(&maxprune(&args, cwd));
        (e, std::fs::read_to_string(cwd.join(csv)).unwrap())
    };
    let ((ea, pa), (eb, pb)) = (eval("a", "a.csv"), eval("b", "b.csv"));
    assert_eq!(ea, eb);
    assert_eq!(pa, pb, "the same logits for every test example");
    // One row per test example: its label, the arg-max class, 10 logits; they give eval's accuracy.
    let rows: Vec<Vec<&str>> = pa.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][..4], ["index", "label", "predicted", "logit_0"]);
    assert_eq!((rows.len(), rows[1].len()), (501, 13));
    let right = rows[1..].iter().filter(|r| r[1] == r[2]).count();
    assert_eq!(right as f64 / 500.0, ea["accuracy"].as_f64().unwrap());
    ok(&maxprune(&["eval", "b", "--predictions", "p.csv"], cwd));
    let header = std::fs::read_to_string(cwd.join("p.csv")).unwrap();
    assert!(header.starts_with("index,label,predicted\n0,"), "{header}");
    // A complete run directory: scored, exported, resumed by training.
    ok(&maxprune(&["relevance", "b", "--out", "r.json", "-q"], cwd));
    ok(&maxprune(&["export", "b", "--format", "sparse", "--out", "b.mxs"], cwd));
    ok(&maxprune(
        &["train", "--resume", "--out", "b", "--epochs", "1", "-q"],
        cwd,
    ));
}

#[test]
fn issue_33_every_mismatch_is_an_error_naming_the_tensor_and_nothing_is_written() {
    use safetensors::Dtype;
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let weights = state_dict_run(cwd);
    // Seen: wrong shapes, other dtypes and NaN weights were imported as random or NaN layers, exit 0.
    let mut wider = spec();
    wider["layers"][0]["filters"] = 6.into();
    std::fs::write(cwd.join("wider.json"), wider.to_string()).unwrap();
    let out = import(cwd, "w.safetensors", "wider.json", "x", &[]);
    for needle in [
        "w.safetensors",
        "3 mismatch(es)",
        "conv1.weight: shape [4, 1, 5, 5], expected [6, 1, 5, 5]",
        "conv1.bias: shape [4], expected [6]",
        "fc1.weight: shape [10, 576], expected [10, 864]",
    ] {
        fails_with(&out, needle);
    }
    assert!(!cwd.join("x").exists());
    write_state_dict(&cwd.join("f64.safetensors"), &weights, Dtype::F64);
    let args = ["import", "f64.safetensors", "--spec", "spec.json", "--out", "x"];
    refused_leaving_nothing(cwd, &args, "conv1.weight: dtype F64, expected F32, F16 or BF16", "x");
    let mut nan = weights.clone();
    nan[2].2[1] = f32::NAN; // fc1.bias
    write_state_dict(&cwd.join("nan.safetensors"), &nan, Dtype::F32);
    let args = ["import", "nan.safetensors", "--spec", "spec.json", "--out", "x"];
    refused_leaving_nothing(cwd, &args, "fc1.bias: 1 NaN or infinite value(s)", "x");
    let args = [
        "import",
        "w.safetensors",
        "--spec",
        "spec.json",
        "--allow-fresh",
        "fc9",
        "--out",
        "x",
    ];
    refused_leaving_nothing(cwd, &args, "'fc9': expected the name of a conv or dense layer", "x");

    // A new classifier is started from scratch only when named; the rest is the file's.
    let mut classes = spec();
    classes["layers"][3]["outputs"] = 12.into();
    std::fs::write(cwd.join("classes.json"), classes.to_string()).unwrap();
    let args = ["import", "w.safetensors", "--spec", "classes.json", "--out", "x"];
    refused_leaving_nothing(cwd, &args, "fc1.weight: shape [10, 576], expected [12, 576]", "x");
    let printed = ok(&import(
        cwd,
        "w.safetensors",
        "classes.json",
        "fresh",
        &["--allow-fresh", "fc1"],
    ));
    assert!(printed.contains("fresh      fc1.weight (--allow-fresh)"), "{printed}");
    let imported = tensors(&cwd.join("fresh/model.safetensors"));
    assert_eq!(imported[..2], weights[..2], "conv1 copied");
    assert_eq!(imported[3].1, [12, 576]);

    // f16 (as `model.half()` saves it) is widened to f32 exactly.
    write_state_dict(&cwd.join("f16.safetensors"), &weights, Dtype::F16);
    let printed = ok(&import(cwd, "f16.safetensors", "spec.json", "half", &[]));
    assert!(
        printed.contains("converted  conv1.weight <- conv1.weight (F16 to f32)"),
        "{printed}"
    );
    let rounded: Vec<Vec<f32>> = weights
        .iter()
        .map(|(_, _, v)| v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect())
        .collect();
    let imported: Vec<Vec<f32>> = tensors(&cwd.join("half/model.safetensors"))
        .into_iter()
        .map(|t| t.2)
        .collect();
    assert_eq!(imported, rounded);
}

#[test]
fn issue_33_a_validation_dataset_of_ones_own_keeps_the_stopping_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    state_dict_run(cwd);
    ok(&import(cwd, "w.safetensors", "spec.json", "b", &[]));
    // A held-out labelled set under another name (here: the fixture's files again).
    let held = cwd.join("held");
    std::fs::create_dir(&held).unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fashion-mini")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, held.join(path.file_name().unwrap())).unwrap();
    }
    // The carve guard stays: b was trained (elsewhere) on the whole training split.
    let prune = [
        "prune",
        "neurons",
        "b",
        "--criterion",
        "l1-norm",
        "--policy",
        "units",
        "--steps",
        "1",
        "--retrain-epochs",
        "1",
        "-q",
    ];
    let out = maxprune(&[&prune[..], &["--out", "p", "--val", "200"]].concat(), cwd);
    fails_with(&out, "trained with val = 0");
    let out = maxprune(
        &[&prune[..], &["--out", "p", "--val-dataset", "embedded"]].concat(),
        cwd,
    );
    fails_with(&out, "expected another dataset than embedded");
    assert!(!cwd.join("p").exists());
    ok(&maxprune(
        &[&prune[..], &["--out", "p", "--val-dataset", "idx:held"]].concat(),
        cwd,
    ));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("p/report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["val_after"].is_f64()), "{report}");
    ok(&maxprune(
        &[
            "sensitivity",
            "b",
            "--val-dataset",
            "idx:held",
            "--criterion",
            "l1-norm",
            "--fractions",
            "0.5",
            "--out",
            "s",
        ],
        cwd,
    ));
    fails_with(
        &maxprune(&["relevance", "b", "--split", "val"], cwd),
        "give --val-dataset",
    );
    // Counted on all 2,500 held-out examples: 5 times the contests of the 500 test examples.
    let contests = |extra: &[&str]| -> usize {
        let args = [&["relevance", "b", "--out", "r.json", "-q"][..], extra].concat();
        let printed = ok(&maxprune(&args, cwd));
        let (_, after) = printed.split_once(" pieces over ").unwrap();
        after.split_whitespace().next().unwrap().parse().unwrap()
    };
    let test = contests(&["--split", "test"]);
    assert_eq!(contests(&["--split", "val", "--val-dataset", "idx:held"]), 5 * test);
}

#[test]
fn issue_33_a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    state_dict_run(tmp.path());
    // Seen: `eval --json | head -1` panicked ("failed printing to stdout: Broken pipe").
    for args in [&["eval", "a", "--json"][..], &["inspect", "--preset", "vgg16"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_maxprune"))
            .args(args)
            .current_dir(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is printed
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

#[test]
fn issue_33_the_spec_documentation_example_is_the_preset_it_names() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/spec.md")).unwrap();
    let (_, rest) = doc.split_once("```json\n").unwrap();
    let (example, _) = rest.split_once("```").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("example.json"), example).unwrap();
    let documented = json(&maxprune(&["inspect", "--spec", "example.json", "--json"], tmp.path()));
    let preset = json(&maxprune(
        &["inspect", "--preset", "lenet5-maxout", "--json"],
        tmp.path(),
    ));
    assert_eq!(documented, preset);
    assert_eq!(documented["params"], 427_330);
}

#[test]
fn issue36_normalisation_and_augmentation_are_deterministic_by_seed_and_resume_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("spec.json"), spec().to_string()).unwrap();
    let recipe = "mean = [0.3]\nstd = [0.4]\n[augment]\nflip = true\ncrop = 2\n";
    std::fs::write(cwd.join("train.toml"), recipe).unwrap();
    std::fs::write(cwd.join("plain.toml"), "mean = [0.3]\nstd = [0.4]\n").unwrap();
    let train = |config: &str, epochs: &str, out: &str| {
        let args = [
            "train",
            "--spec",
            "spec.json",
            "--dataset",
            "embedded",
            "--config",
            config,
        ];
        ok(&maxprune(
            &[&args[..], &["--epochs", epochs, "--out", out, "-q"]].concat(),
            cwd,
        ));
    };
    train("train.toml", "2", "a");
    train("train.toml", "2", "b");
    train("train.toml", "1", "c");
    ok(&maxprune(
        &["train", "--resume", "--epochs", "2", "--out", "c", "-q"],
        cwd,
    ));
    train("plain.toml", "2", "p");
    let model = |d: &str| std::fs::read(cwd.join(d).join("model.safetensors")).unwrap();
    assert_eq!(model("a"), model("b"), "the same seed, the same run");
    assert_eq!(model("a"), model("c"), "resuming reproduces the uninterrupted run");
    assert_ne!(model("a"), model("p"), "augmentation changes what is learnt");
    let saved = std::fs::read_to_string(cwd.join("a/train.toml")).unwrap();
    assert!(saved.contains("mean = [0.3]") && saved.contains("crop = 2"), "{saved}");
    // eval normalises as training did: its accuracy is the run's own last test accuracy.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("a/summary.json")).unwrap()).unwrap();
    let e = util::json(&maxprune(&["eval", "a", "--json"], cwd));
    assert_eq!(e["accuracy"], summary["last"]["test"]["accuracy"]);
    // So does a sparse file of the run, which records the normalisation in its header.
    ok(&maxprune(&["export", "a", "--out", "a.mxs"], cwd));
    let sparse = util::json(&maxprune(&["eval", "a.mxs", "--json"], cwd));
    assert_eq!(sparse["accuracy"], e["accuracy"]);

    for (text, needle) in [
        (
            "mean = [0.5, 0.5]",
            "mean: expected 1 value (the input has 1 channel), found 2 values",
        ),
        ("std = [0.0]", "std: expected finite numbers > 0, found 0.0"),
        (
            "[augment]\nrotate = 10",
            "unknown field `rotate`, expected `flip` or `crop`",
        ),
    ] {
        std::fs::write(cwd.join("train.toml"), text).unwrap();
        let args = [
            "train",
            "--spec",
            "spec.json",
            "--dataset",
            "embedded",
            "--config",
            "train.toml",
        ];
        refused_leaving_nothing(cwd, &[&args[..], &["--out", "refused"]].concat(), needle, "refused");
        fails_with(
            &maxprune(&[&args[..], &["--out", "refused"]].concat(), cwd),
            "train.toml",
        );
    }
}

#[test]
fn issue36_import_of_torchvision_weights_normalises_with_imagenets_mean_and_std() {
    use maxprune::model::spec::{InputShape, LayerSpec};
    let tmp = tempfile::tempdir().unwrap();
    let input = InputShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let spec = maxprune::model::presets::Preset::Vgg16
        .spec()
        .scaled(0.0625, input, 10)
        .unwrap();
    let net = maxprune::model::network::Network::init(&spec, 1, &burn::tensor::Device::flex()).unwrap();
    let ours = net.to_safetensors();
    let st = safetensors::SafeTensors::deserialize(&ours).unwrap();
    // torchvision's names, in layer order: features.<i> for convs, classifier.<i> for denses.
    let (mut convs, mut denses) = (0, 0);
    let mut tensors = Vec::new();
    for layer in &spec.layers {
        let (name, theirs) = match layer {
            LayerSpec::Conv2d(c) => (&c.name, format!("features.{}", post_inc(&mut convs))),
            LayerSpec::Dense(d) => (&d.name, format!("classifier.{}", post_inc(&mut denses))),
            _ => continue,
        };
        for role in ["weight", "bias"] {
            tensors.push((
                format!("{theirs}.{role}"),
                st.tensor(&format!("{name}.{role}")).unwrap(),
            ));
        }
    }
    std::fs::write(
        tmp.path().join("vgg.safetensors"),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let scale = ["--width", "0.0625", "--input-size", "32", "--classes", "10"];
    let args = ["import", "vgg.safetensors", "--preset", "vgg16", "--out", "v"];
    ok(&maxprune(&[&args[..], &scale].concat(), tmp.path()));
    let saved = std::fs::read_to_string(tmp.path().join("v/train.toml")).unwrap();
    assert!(
        saved.contains("mean = [0.485, 0.456, 0.406]") && saved.contains("std = [0.229, 0.224, 0.225]"),
        "{saved}"
    );
}

/// Returns `n`, then counts it up.
fn post_inc(n: &mut usize) -> usize {
    *n += 1;
    *n - 1
}

/// A trained `seed-lenet` in `a`, exported to ONNX: the decoded model, for a test to edit.
fn exported_seed_lenet(cwd: &Path) -> ModelProto {
    train_embedded(cwd, "seed-lenet", "a", &[]);
    ok(&maxprune(&["export", "a", "--format", "onnx", "--out", "a.onnx"], cwd));
    ModelProto::decode(&std::fs::read(cwd.join("a.onnx")).unwrap()[..]).unwrap()
}

/// `model` with `node` placed after the node writing its first input, and every later node
/// that read that value reading `node`'s output instead.
fn inserted(model: &ModelProto, node: NodeProto) -> ModelProto {
    let mut model = model.clone();
    let graph = model.graph.as_mut().unwrap();
    let (read, written) = (node.input[0].clone(), node.output[0].clone());
    let at = graph.node.iter().position(|n| n.output.contains(&read)).unwrap() + 1;
    for later in &mut graph.node[at..] {
        for input in later.input.iter_mut().filter(|i| **i == read) {
            input.clone_from(&written);
        }
    }
    graph.node.insert(at, node);
    model
}

/// A node `name` of `op` reading `input`, writing `<name>.out`.
fn onnx_node(op: &str, name: &str, input: &[&str]) -> NodeProto {
    NodeProto::new(op, name, input.iter().map(|s| s.to_string()).collect(), vec![])
}

/// The f32 values of the initializer `name` of `model`, for editing.
fn initializer<'a>(model: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    let graph = model.graph.as_mut().unwrap();
    graph.initializer.iter_mut().find(|t| t.name == name).unwrap()
}

#[test]
fn import_of_an_onnx_graph_it_cannot_represent_names_the_node_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let model = exported_seed_lenet(cwd);
    let graph = model.graph.as_ref().unwrap();
    let output_of = |op: &str| {
        let node = graph.node.iter().find(|n| n.op_type == op).unwrap();
        (node.name.clone(), node.output[0].clone())
    };
    let (conv1, conv1_out) = output_of("Conv");
    assert_eq!(conv1, "conv1");
    let (fc1_out, relu_out) = (output_of("Gemm").1, output_of("Relu").1);
    // A Softmax between conv1 and the pool; fc1's relu added to its own input (a residual).
    let softmax = inserted(&model, onnx_node("Softmax", "squash", &[&conv1_out]));
    let residual = inserted(&model, onnx_node("Add", "skip", &[&relu_out, &fc1_out]));
    // conv2 over its 20 channels in 2 groups of 10: the weight keeps each filter's first 10.
    let mut grouped = model.clone();
    let conv2 = grouped
        .graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.name == "conv2")
        .unwrap();
    conv2.attribute.push(AttributeProto {
        name: "group".into(),
        i: 2,
        r#type: 2,
        ..Default::default()
    });
    let w = initializer(&mut grouped, "conv2.weight");
    assert_eq!(w.dims, [52, 20, 5, 5]);
    let per_filter = 20 * 25 * 4;
    w.raw_data = w
        .raw_data
        .chunks(per_filter)
        .flat_map(|f| f[..per_filter / 2].to_vec())
        .collect();
    w.dims[1] = 10;
    let mut nan = model.clone();
    initializer(&mut nan, "fc2.bias").raw_data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    for (edited, needle) in [
        (
            &softmax,
            "node 'squash' (Softmax): expected one of the supported operators",
        ),
        (&residual, "node 'skip' (Add): expected a sequential graph"),
        (&grouped, "node 'conv2' (Conv): expected groups 1"),
        (&nan, "dense 'fc2' bias: expected finite values, found 1 NaN"),
    ] {
        std::fs::write(cwd.join("edited.onnx"), edited.encode_to_vec()).unwrap();
        let args = ["import", "edited.onnx", "--dataset", "embedded", "--out", "x"];
        refused_leaving_nothing(cwd, &args, needle, "x");
    }
    let found = "found weight [52, 10, 5, 5], group 2";
    std::fs::write(cwd.join("edited.onnx"), grouped.encode_to_vec()).unwrap();
    fails_with(&maxprune(&["import", "edited.onnx", "--out", "x"], cwd), found);
}

#[test]
fn import_of_onnx_refuses_a_dataset_of_another_image_size_naming_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    exported_seed_lenet(cwd);
    write_idx(&cwd.join("big"), "train", 20, 32);
    write_idx(&cwd.join("big"), "t10k", 10, 32);
    let args = ["import", "a.onnx", "--dataset", "idx:big", "--out", "x"];
    let needle = "a.onnx: the model does not read --dataset idx:big: idx:big: images: expected the \
                  network's input shape 1x28x28";
    refused_leaving_nothing(cwd, &args, needle, "x");
    fails_with(&maxprune(&args, cwd), "found 1x32x32");
    // An empty output directory is left as it was.
    std::fs::create_dir(cwd.join("x")).unwrap();
    fails_with(&maxprune(&args, cwd), "found 1x32x32");
    assert_eq!(std::fs::read_dir(cwd.join("x")).unwrap().count(), 0);
    // Images of the model's size import.
    write_idx(&cwd.join("same"), "train", 20, 28);
    write_idx(&cwd.join("same"), "t10k", 10, 28);
    ok(&maxprune(
        &["import", "a.onnx", "--dataset", "idx:same", "--out", "y"],
        cwd,
    ));
}

#[test]
fn bench_per_layer_lists_every_layer_at_batch_1_and_256_with_shares_summing_to_1() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--threads",
        "1",
        "bench",
        "--preset",
        "lenet5-maxout-conv",
        "--width",
        "0.25",
    ];
    let quick = [
        "--reps",
        "1",
        "--train-batch",
        "16",
        "--rounds",
        "1",
        "--per-layer",
        "--json",
    ];
    let j = json(&maxprune(&[&args[..], &quick].concat(), tmp.path()));
    let profiles = j["per_layer"].as_array().unwrap();
    let batches: Vec<u64> = profiles.iter().map(|p| p["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 256]);
    let kinds = [
        "conv2d", "relu", "maxout", "max-pool", "conv2d", "relu", "maxout", "max-pool", "flatten", "dense", "relu",
        "dropout", "maxout", "dense",
    ];
    for p in profiles {
        let layers = p["layers"].as_array().unwrap();
        assert_eq!(
            layers.iter().map(|l| l["kind"].as_str().unwrap()).collect::<Vec<_>>(),
            kinds
        );
        let shares: Vec<f64> = layers.iter().map(|l| l["share"].as_f64().unwrap()).collect();
        // Tolerance: rounding of the summed shares.
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{p}");
        assert!(
            layers.iter().all(|l| l["ms"].as_f64().is_some_and(|ms| ms > 0.0)),
            "{p}"
        );
    }
}

#[test]
fn prune_cost_measured_records_its_profile_and_needs_the_cost_policy() {
    let tmp = tempfile::tempdir().unwrap();
    train_small_maxout(tmp.path());
    // Refused before anything is measured or written.
    let units = [
        "--criterion",
        "contribution",
        "--policy",
        "units",
        "--steps",
        "1",
        "--cost",
        "measured",
    ];
    fails_with(
        &prune_neurons(tmp.path(), &units),
        "--cost measured: invalid schedule: a measured cost ranks units by their time: expected the cost policy, found units",
    );
    assert!(!tmp.path().join("b").exists());
    let flops = [
        "--criterion",
        "contribution",
        "--policy",
        "cost",
        "--fraction",
        "0.1",
        "--steps",
        "1",
        "--bench-steps",
        "none",
        "--tolerance",
        "100",
    ];
    let cost = [&flops[..], &["--cost", "measured"]].concat();
    ok(&prune_neurons(tmp.path(), &cost));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("b/schedule.json")).unwrap()).unwrap();
    assert_eq!(
        (&saved["cost"]["source"], &saved["cost"]["profile"]["batch"]),
        (&"measured".into(), &256.into())
    );
    let layers = saved["cost"]["profile"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6, "{saved}");
    assert!(
        layers.iter().all(|l| l["ms"].as_f64().is_some_and(|ms| ms > 0.0)),
        "{saved}"
    );
    // A resumed schedule ranks by the profile it recorded (a new one would differ); ranking by
    // FLOPs is another schedule.
    ok(&prune_neurons(tmp.path(), &[&cost[..], &["--resume"]].concat()));
    fails_with(
        &prune_neurons(tmp.path(), &[&flops[..], &["--resume"]].concat()),
        "resuming with options that differ",
    );
}
