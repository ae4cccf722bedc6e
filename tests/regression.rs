//! One regression test per cause found by the hostile-user reviews (the hardening issue's
//! list, numbered as there; issue 32's as `issue32_cause_N`), each driving the real binary
//! where the defect was seen through it. Unit tests beside the code cover the same causes at the reader level (`spec.rs`,
//! `sparse.rs`, `idx.rs`, `folder.rs`, `verify.rs`, `run.rs`, `prune/tests.rs`), and
//! `tests/fuzz.rs` feeds every reader arbitrary and mutated bytes.

use std::path::Path;

mod util;
use util::{fails_with, maxprune, ok, train_embedded, train_one_epoch};

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
