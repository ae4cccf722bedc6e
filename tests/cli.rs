//! Drives the real `maxprune` binary on the built-in Fashion-MNIST subset.

use std::path::Path;

mod util;
use util::{fails_with, json, maxprune, ok, train_embedded};

#[test]
fn inspect_presets_report_the_paper_parameter_counts() {
    let tmp = tempfile::tempdir().unwrap();
    for (preset, params) in [
        ("lenet5", 431_080),
        ("lenet5-maxout", 427_330),
        ("seed-lenet", 240_470),
        ("vgg16", 138_357_544),
    ] {
        let j = json(&maxprune(&["inspect", "--preset", preset, "--json"], tmp.path()));
        assert_eq!(j["params"], params, "{preset}");
    }
}

#[test]
fn bench_json_has_the_keys_the_pytorch_reference_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let j = json(&maxprune(
        &[
            "--threads",
            "1",
            "bench",
            "--preset",
            "lenet5-maxout",
            "--reps",
            "1",
            "--train-batch",
            "16",
            "--json",
        ],
        tmp.path(),
    ));
    for key in [
        "train_img_per_s",
        "infer_img_per_s",
        "latency_ms_b1",
        "relevance_img_per_s",
    ] {
        assert!(j[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {j}");
    }
    assert_eq!(
        (j["train_batch"].clone(), j["threads"].clone(), j["params"].clone()),
        (16.into(), 1.into(), 427_330.into())
    );
    assert_eq!(j["backend"], "flex");
}

#[test]
fn train_eval_and_resume_on_the_embedded_subset() {
    let tmp = tempfile::tempdir().unwrap();
    let base = [
        "train",
        "--preset",
        "lenet5-maxout",
        "--dataset",
        "embedded",
        "--val",
        "200",
        "-q",
    ];
    // two epochs straight
    ok(&maxprune(
        &[&base[..], &["--epochs", "2", "--out", "straight"]].concat(),
        tmp.path(),
    ));
    // one epoch, then resumed to two
    ok(&maxprune(
        &[&base[..], &["--epochs", "1", "--out", "resumed"]].concat(),
        tmp.path(),
    ));
    ok(&maxprune(
        &["train", "--resume", "--epochs", "2", "--out", "resumed", "-q"],
        tmp.path(),
    ));
    let read = |d: &str, f: &str| std::fs::read(tmp.path().join(d).join(f)).unwrap();
    assert_eq!(
        read("straight", "model.safetensors"),
        read("resumed", "model.safetensors"),
        "resuming reproduces the uninterrupted run"
    );
    let csv = String::from_utf8(read("resumed", "metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // a spec.json edited after the run was created is refused, not silently ignored
    let spec = tmp.path().join("resumed").join("spec.json");
    let edited = std::fs::read_to_string(&spec).unwrap().replace("0.5", "0.25");
    std::fs::write(&spec, edited).unwrap();
    fails_with(
        &maxprune(
            &["train", "--resume", "--epochs", "3", "--out", "resumed", "-q"],
            tmp.path(),
        ),
        "spec.json: architecture",
    );
    fails_with(&maxprune(&["eval", "resumed"], tmp.path()), "architecture");

    let e = json(&maxprune(&["eval", "straight", "--json"], tmp.path()));
    let acc = e["accuracy"].as_f64().unwrap();
    assert!(
        (0.5..=1.0).contains(&acc),
        "two epochs on 1,800 images should beat chance by far: {acc}"
    );
    assert_eq!(e["per_class"].as_array().unwrap().len(), 10);
    assert_eq!(e["examples"], 500);

    // an existing run is never overwritten
    fails_with(
        &maxprune(
            &[&base[..], &["--epochs", "1", "--out", "straight"]].concat(),
            tmp.path(),
        ),
        "already holds a run",
    );
}

#[test]
fn demo_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&maxprune(&["demo", "--epochs", "1", "--out", "d", "-q"], tmp.path()));
    assert!(out.contains("test accuracy"), "{out}");
    // a second demo replaces the first
    ok(&maxprune(&["demo", "--epochs", "1", "--out", "d", "-q"], tmp.path()));
    // but never a directory it did not write
    std::fs::create_dir(tmp.path().join("mine")).unwrap();
    fails_with(
        &maxprune(&["demo", "--out", "mine", "-q"], tmp.path()),
        "not an earlier demo",
    );
}

#[test]
fn bad_inputs_exit_1_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    fails_with(&maxprune(&["eval", "empty"], tmp.path()), "no spec.json");
    fails_with(&maxprune(&["inspect", "nowhere"], tmp.path()), "not a directory");

    // a dataset directory whose image file is truncated
    let data = tmp.path().join("bad-data");
    std::fs::create_dir(&data).unwrap();
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let mut bytes = if f.contains("images") {
            vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]
        } else {
            vec![0, 0, 8, 1, 0, 0, 0, 2]
        };
        bytes.extend(if f.contains("images") {
            vec![0u8; 100]
        } else {
            vec![1, 2]
        });
        std::fs::write(data.join(f), bytes).unwrap();
    }
    let out = maxprune(
        &[
            "train",
            "--preset",
            "lenet5",
            "--dataset",
            "idx:bad-data",
            "--epochs",
            "1",
            "--out",
            "r",
        ],
        tmp.path(),
    );
    fails_with(&out, "train-images-idx3-ubyte");
    fails_with(&out, "1568 bytes");

    fails_with(
        &maxprune(
            &["train", "--preset", "lenet5", "--dataset", "cifar", "--out", "r2"],
            tmp.path(),
        ),
        "cifar",
    );
    let usage = maxprune(&["train", "--preset", "nope", "--out", "x"], tmp.path());
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn relevance_plan_apply_and_their_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let train = |preset: &str, out: &str| train_embedded(tmp.path(), preset, out, &["--batch-size", "128"]);
    train("lenet5-maxout", "a");
    train("seed-lenet", "other");
    let out = ok(&maxprune(&["relevance", "a", "--out", "rel.json"], tmp.path()));
    assert!(out.contains("500 pieces over 2000 contests"), "{out}");
    assert!(tmp.path().join("rel-fc1.svg").exists());
    let rel: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.path().join("rel.json")).unwrap()).unwrap();
    let unit0: f64 = rel["layers"][0]["scores"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((unit0 - 1.0).abs() < 1e-9, "frequencies of a unit sum to 1: {unit0}");

    ok(&maxprune(
        &["prune", "plan", "a", "--relevance", "rel.json", "--out", "plan.json"],
        tmp.path(),
    ));
    let out = ok(&maxprune(
        &["prune", "apply", "a", "--plan", "plan.json", "--out", "b"],
        tmp.path(),
    ));
    assert!(out.contains("427330 -> 327205 parameters"), "{out}");
    let j = json(&maxprune(&["inspect", "b", "--json"], tmp.path()));
    assert_eq!(j["params"], 327_205);
    ok(&maxprune(&["eval", "b", "--json"], tmp.path()));

    // whole units: arg-max frequencies cannot rank them; the contribution criterion can
    fails_with(
        &maxprune(
            &["prune", "plan", "a", "--relevance", "rel.json", "--policy", "units"],
            tmp.path(),
        ),
        "contribution",
    );
    ok(&maxprune(
        &[
            "relevance",
            "a",
            "--criterion",
            "contribution",
            "--out",
            "contribution.json",
        ],
        tmp.path(),
    ));
    ok(&maxprune(
        &[
            "prune",
            "plan",
            "a",
            "--relevance",
            "contribution.json",
            "--policy",
            "units",
            "--fraction",
            "0.2",
            "--out",
            "units.json",
        ],
        tmp.path(),
    ));
    ok(&maxprune(
        &["prune", "apply", "a", "--plan", "units.json", "--out", "u"],
        tmp.path(),
    ));
    // 100 units of k=4: fc1 800 -> 400, fc2 100 -> 10, the convs unchanged
    let j = json(&maxprune(&["inspect", "u", "--json"], tmp.path()));
    assert_eq!(j["params"], 520 + 25_050 + 800 * 400 + 400 + 100 * 10 + 10);

    // made for another spec
    fails_with(
        &maxprune(&["prune", "plan", "other", "--relevance", "rel.json"], tmp.path()),
        "another spec",
    );
    fails_with(
        &maxprune(
            &["prune", "apply", "other", "--plan", "plan.json", "--out", "c"],
            tmp.path(),
        ),
        "another spec",
    );
    // indices out of range
    let plan = std::fs::read_to_string(tmp.path().join("plan.json")).unwrap();
    let bad = plan.replacen(
        "\"keep\": [\n        [\n          0,",
        "\"keep\": [\n        [\n          9,",
        1,
    );
    assert_ne!(bad, plan);
    std::fs::write(tmp.path().join("bad-plan.json"), bad).unwrap();
    fails_with(
        &maxprune(
            &["prune", "apply", "a", "--plan", "bad-plan.json", "--out", "c"],
            tmp.path(),
        ),
        "out of range",
    );
    // not a relevance file, a directory without spec.json
    fails_with(
        &maxprune(&["prune", "plan", "a", "--relevance", "plan.json"], tmp.path()),
        "plan.json",
    );
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    fails_with(&maxprune(&["relevance", "empty"], tmp.path()), "no spec.json");
    fails_with(
        &maxprune(&["prune", "neurons", "empty", "--out", "x"], tmp.path()),
        "no spec.json",
    );
}

#[test]
fn weight_pruning_export_and_sparse_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let train = |preset: &str, out: &str| train_embedded(tmp.path(), preset, out, &["--val", "200"]);
    train("lenet5", "a");
    let args = [
        "prune",
        "weights",
        "a",
        "--out",
        "w",
        "--steps",
        "1",
        "--retrain-epochs",
        "1",
        "--val",
        "200",
        "--tolerance",
        "100",
    ];
    let out = ok(&maxprune(
        &[&args[..], &["--sparsity", "conv=0.5,dense=0.9", "-q"]].concat(),
        tmp.path(),
    ));
    assert!(out.contains("| `fc1.weight` | 400000 | 40000 | 90.0% |"), "{out}");
    let out = ok(&maxprune(&["export", "w/step-01", "--out", "m.mxs"], tmp.path()));
    let sparse_len = std::fs::metadata(tmp.path().join("m.mxs")).unwrap().len();
    let dense_len = std::fs::metadata(tmp.path().join("w/step-01/model.safetensors"))
        .unwrap()
        .len();
    assert!(sparse_len * 3 < dense_len, "{out}");
    let from_dir = json(&maxprune(&["eval", "w/step-01", "--json"], tmp.path()));
    let from_file = json(&maxprune(&["eval", "m.mxs", "--json"], tmp.path()));
    assert_eq!(
        from_dir, from_file,
        "the sparse file predicts exactly as the masked dense model"
    );
    let with_model = json(&maxprune(
        &["eval", "w/step-01", "--model", "m.mxs", "--json"],
        tmp.path(),
    ));
    assert_eq!(from_dir, with_model);

    // bad inputs
    train("lenet5-maxout", "other");
    fails_with(
        &maxprune(&["eval", "other", "--model", "m.mxs"], tmp.path()),
        "another spec",
    );
    let bytes = std::fs::read(tmp.path().join("m.mxs")).unwrap();
    std::fs::write(tmp.path().join("cut.mxs"), &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&maxprune(&["eval", "cut.mxs"], tmp.path()), "truncated");
    fails_with(
        &maxprune(&[&args[..], &["--sparsity", "fc7=0.5"]].concat(), tmp.path()),
        "fc7",
    );
    fails_with(
        &maxprune(&[&args[..], &["--sparsity", "dense=1.5"]].concat(), tmp.path()),
        "[0, 1)",
    );
}

#[test]
fn reproduce_quick_writes_the_table_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["reproduce", "lenet5", "--quick", "--seeds", "1", "--out", "r", "-q"];
    let out = ok(&maxprune(&args, tmp.path()));
    for row in [
        "| LeNet-5 |",
        "| LeNet-5 + weight pruning |",
        "| + neuron pruning (the paper's k=4 → 1) | 126955 |",
        // one whole-unit step of 30% from 125 units of k=1: 88 units
        "| + whole units removed (beyond the paper) | 96948 |",
        "| + neuron + weight pruning |",
    ] {
        assert!(out.contains(row), "{row} missing in:\n{out}");
    }
    let pushed = out
        .lines()
        .find(|l| l.starts_with("| + neuron + weight pruning, pushed to the paper's figure |"))
        .expect("the row at the paper's reduction");
    let nonzeros: usize = pushed.split('|').nth(3).unwrap().trim().parse().unwrap();
    assert!(
        nonzeros <= 21_554,
        "--quick pushes to 95%: at most 5% of 431,080 left: {pushed}"
    );
    assert!(
        tmp.path()
            .join("r/seed-1/lenet5-maxout-paper-reduction/step-01")
            .exists()
    );
    for f in [
        "REPORT.md",
        "report.json",
        "accuracy-vs-nonzeros.svg",
        "seed-1/lenet5-maxout-neurons/report.md",
    ] {
        assert!(tmp.path().join("r").join(f).exists(), "{f}");
    }
    // every stage is finished: a second invocation trains nothing and reports the same rows,
    // and its progress counts every stage once
    let loud = maxprune(&args[..args.len() - 1], tmp.path());
    let again = ok(&loud);
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(stderr.contains("[7/7]") && !stderr.contains("[8/"), "{stderr}");
    let rows = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("| "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&out), rows(&again));
}

/// Writes `name/name_000n.jpg` for every (name, n, pattern) into `root`.
fn lfw_images(root: &Path, images: &[(&str, u32, u8)]) {
    for &(name, n, pattern) in images {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let pixels: Vec<u8> = (0..40u32 * 40 * 3)
            .map(|i| ((i / 3 % 40) as u8).wrapping_mul(pattern) ^ ((i / 120) as u8).wrapping_mul(pattern / 4))
            .collect();
        image::save_buffer_with_format(
            dir.join(format!("{name}_{n:04}.jpg")),
            &pixels,
            40,
            40,
            image::ColorType::Rgb8,
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    }
}

#[test]
fn verify_follows_the_lfw_protocol_on_a_generated_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_embedded(cwd, "lenet5-maxout", "a", &[]);
    // Every person's images are the same picture, so matched pairs are at distance 0, and both
    // folds hold the same mismatched pairs: any threshold learnt on one fold separates the
    // other perfectly. Accuracy is exactly 100% in both folds, standard error 0.
    lfw_images(
        &cwd.join("lfw"),
        &[
            ("Ann", 1, 3),
            ("Ann", 2, 3),
            ("Bob", 1, 7),
            ("Bob", 3, 7),
            ("Cid", 1, 11),
            ("Cid", 2, 11),
            ("Dee", 2, 17),
        ],
    );
    let pairs = "2 2\nAnn 1 2\nBob 1 3\nAnn 1 Bob 1\nCid 1 Dee 2\nCid 1 2\nBob 1 3\nAnn 2 Bob 3\nCid 2 Dee 2\n";
    std::fs::write(cwd.join("pairs.txt"), pairs).unwrap();
    let run = |pairs: &str, extra: &[&str]| {
        let base = ["verify", "a", "--pairs", pairs, "--images", "lfw"];
        maxprune(&[&base[..], extra].concat(), cwd)
    };
    let v = json(&run("pairs.txt", &["--out", "v", "--json"]));
    let accuracies: Vec<f64> = v["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(accuracies, [1.0, 1.0]);
    assert_eq!(v["std_error"].as_f64(), Some(0.0));
    assert!(cwd.join("v/roc.svg").exists() && cwd.join("v/verify.json").exists());
    for extra in [["--distance", "l2"], ["--distance", "bray-curtis"], ["--layer", "fc1"]] {
        let out = ok(&run("pairs.txt", &extra));
        assert!(out.contains("accuracy 100.00%"), "{extra:?}: {out}");
    }

    // Bad inputs: a missing image, a malformed line, an unknown layer.
    std::fs::write(
        cwd.join("missing.txt"),
        "2 1\nAnn 1 5\nAnn 1 Bob 1\nAnn 1 2\nAnn 1 Bob 1\n",
    )
    .unwrap();
    fails_with(&run("missing.txt", &[]), "Ann_0005.jpg");
    std::fs::write(cwd.join("bad.txt"), "2 1\nAnn 1 2\nAnn 1 Bob\nAnn 1 2\nAnn 1 Bob 1\n").unwrap();
    fails_with(&run("bad.txt", &[]), "line 3");
    fails_with(&run("pairs.txt", &["--layer", "fc9"]), "no layer named 'fc9'");
}

#[test]
fn scaled_vgg16_maxout_trains_and_prunes_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let scale = ["--width", "0.0625", "--input-size", "32", "--classes", "10"];
    let info = json(&maxprune(
        &[&["inspect", "--preset", "vgg16-maxout", "--json"][..], &scale].concat(),
        cwd,
    ));
    assert_eq!(info["arch"], "vgg16-maxout-w0.0625-32px");
    train_embedded(cwd, "vgg16-maxout", "v", &[&scale[..], &["--val", "200"]].concat());
    let retrain = ["--retrain-epochs", "1", "--val", "200", "--tolerance", "100", "-q"];
    let neurons = ["prune", "neurons", "v", "--out", "n", "--steps", "1"];
    ok(&maxprune(&[&neurons[..], &retrain].concat(), cwd));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("n/report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert!(rows[1]["params"].as_u64() < rows[0]["params"].as_u64(), "{report}");
    // bench on the schedule (its last accepted step) and on the step: compared with the start.
    let source = report["source"].as_str().unwrap();
    assert!(Path::new(source).is_absolute() && source.ends_with("v"), "{source}");
    for measured in ["n", "n/step-01"] {
        let quick = ["--reps", "1", "--rounds", "3", "--train-batch", "8", "--json"];
        let j = json(&maxprune(&[&["bench", measured][..], &quick].concat(), cwd));
        assert_eq!(j["params"], rows[1]["params"], "{measured}: {j}");
        assert_eq!(j["against"]["base"], source);
        let speedups = j["against"]["speedups"].as_array().unwrap();
        let batches: Vec<_> = speedups.iter().map(|s| s["batch"].as_u64().unwrap()).collect();
        assert_eq!(batches, [1, 64, 256]);
        assert!(
            speedups
                .iter()
                .all(|s| s["rounds"] == 3 && s["median"].as_f64() > Some(0.0)),
            "{j}"
        );
    }
    let weights = [
        "prune",
        "weights",
        "n/step-01",
        "--out",
        "w",
        "--steps",
        "1",
        "--sparsity",
        "conv=0.5,dense=0.8",
    ];
    let out = ok(&maxprune(&[&weights[..], &retrain].concat(), cwd));
    assert!(out.contains("| `fc6.weight` |"), "{out}");
    assert!(cwd.join("w/report.md").exists() && cwd.join("w/step-01/sparsity.md").exists());
}

#[test]
fn a_backend_left_out_of_the_build_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    if cfg!(not(feature = "wgpu")) {
        let out = maxprune(&["--device", "wgpu", "inspect", "--preset", "lenet5"], tmp.path());
        fails_with(&out, "--features wgpu");
    }
}

#[test]
fn a_run_directory_from_before_rectified_pieces_evaluates_as_it_was_trained() {
    // fixtures/pre-rectified-run/spec.json is `lenet5-maxout` as the presets wrote it before
    // the relu on the pieces (no relu between fc1 and the maxout).
    let tmp = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pre-rectified-run/spec.json");
    let spec = spec.to_str().unwrap();
    let args = [
        "train",
        "--spec",
        spec,
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "--out",
        "old",
        "-q",
    ];
    ok(&maxprune(&args, tmp.path()));
    let shows = |args: &[&str]| ok(&maxprune(args, tmp.path()));
    assert!(shows(&["inspect", "old"]).contains("linear"));
    assert!(shows(&["inspect", "--preset", "lenet5-maxout"]).contains("rectified"));
    let e = json(&maxprune(&["eval", "old", "--json"], tmp.path()));
    assert!(e["accuracy"].as_f64().unwrap() > 0.3, "{e}");
    // Its weights are never read as the new preset: that spec.json is refused.
    std::fs::create_dir(tmp.path().join("relabelled")).unwrap();
    for f in std::fs::read_dir(tmp.path().join("old")).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), tmp.path().join("relabelled").join(f.file_name())).unwrap();
        }
    }
    let preset = json(&maxprune(
        &["inspect", "--preset", "lenet5-maxout", "--json"],
        tmp.path(),
    ));
    assert_eq!(preset["params"], 427_330);
    let new_spec = maxprune_spec_json(tmp.path());
    std::fs::write(tmp.path().join("relabelled/spec.json"), new_spec).unwrap();
    fails_with(&maxprune(&["eval", "relabelled"], tmp.path()), "architecture");
}

/// The current `lenet5-maxout` preset's spec.json, as `train` writes it.
fn maxprune_spec_json(cwd: &Path) -> String {
    train_embedded(cwd, "lenet5-maxout", "new", &[]);
    std::fs::read_to_string(cwd.join("new/spec.json")).unwrap()
}

#[test]
fn export_onnx_from_a_run_or_a_sparse_file_and_its_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &[]);
    let out = ok(&maxprune(
        &["export", "a", "--format", "onnx", "--out", "a.onnx"],
        tmp.path(),
    ));
    assert!(out.contains("a.onnx"), "{out}");
    ok(&maxprune(&["export", "a", "--out", "a.mxs"], tmp.path()));
    ok(&maxprune(
        &["export", "a.mxs", "--format", "onnx", "--out", "b.onnx"],
        tmp.path(),
    ));
    // The same network, whether read from the run or from its sparse file.
    let (a, b) = (
        std::fs::read(tmp.path().join("a.onnx")).unwrap(),
        std::fs::read(tmp.path().join("b.onnx")).unwrap(),
    );
    assert!(a.len() > 900_000 && a == b);
    std::fs::remove_file(tmp.path().join("a/model.safetensors")).unwrap();
    fails_with(
        &maxprune(&["export", "a", "--format", "onnx", "--out", "c.onnx"], tmp.path()),
        "model.safetensors",
    );
    // A path under a file cannot be written: a clear error, and nothing left behind.
    let out = maxprune(
        &["export", "a.mxs", "--format", "onnx", "--out", "a.mxs/x.onnx"],
        tmp.path(),
    );
    fails_with(&out, "a.mxs");
    assert!(!tmp.path().join("c.onnx").exists());
}

#[test]
fn sensitivity_cuts_each_maxout_layer_alone_and_refuses_bad_fractions_and_layers() {
    let tmp = tempfile::tempdir().unwrap();
    // lenet5-maxout with conv1 as a maxout layer too (5 units of 4 rectified channel groups).
    train_embedded(tmp.path(), "lenet5-maxout", "plain", &[]);
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("plain/spec.json")).unwrap()).unwrap();
    let layers = spec["layers"].as_array_mut().unwrap();
    layers.insert(1, serde_json::json!({"kind": "relu"}));
    layers.insert(2, serde_json::json!({"kind": "maxout", "pieces": {"units": 5, "k": 4}}));
    std::fs::write(tmp.path().join("conv.json"), spec.to_string()).unwrap();
    let train = [
        "train",
        "--spec",
        "conv.json",
        "--dataset",
        "embedded",
        "--epochs",
        "1",
        "--val",
        "200",
        "--out",
        "a",
        "-q",
    ];
    ok(&maxprune(&train, tmp.path()));
    let out = ok(&maxprune(
        &[
            "sensitivity",
            "a",
            "--layers",
            "conv1,fc1",
            "--fractions",
            "0.25,0.5",
            "--out",
            "s",
        ],
        tmp.path(),
    ));
    assert!(
        out.contains("| conv1 | 0.25 | 20 -> 15 |") && out.contains("| fc1 | 0.50 | 500 -> 250 |"),
        "{out}"
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("s/sensitivity.json")).unwrap()).unwrap();
    assert_eq!(s["rows"].as_array().unwrap().len(), 4);
    assert_eq!(s["examples"], 200);
    let svg = std::fs::read_to_string(tmp.path().join("s/sensitivity.svg")).unwrap();
    assert!(svg.contains("conv1") && svg.contains("fc1") && svg.contains("uncut"));
    for (extra, needle) in [
        (&["--fractions", "0,0.5"][..], "expected values in (0, 1), found 0"),
        (&["--fractions", "1.5"][..], "found 1.5"),
        (&["--fractions", "NaN"][..], "found NaN"),
        (
            &["--layers", "fc2"][..],
            "'fc2' is not a layer whose units can be pruned; expected one of conv1, conv2, fc1",
        ),
        (&["--val", "300"][..], "trained with val = 200"),
        (
            &["--cut", "units", "--criterion", "argmax"][..],
            "use the contribution criterion",
        ),
    ] {
        let args = [&["sensitivity", "a", "--out", "bad"][..], extra].concat();
        fails_with(&maxprune(&args, tmp.path()), needle);
        assert!(!tmp.path().join("bad").exists(), "{extra:?} left an output");
    }
}

#[test]
fn conv_maxout_and_plain_layers_cut_by_units_with_per_layer_budgets() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train_embedded(cwd, "lenet5-maxout-conv", "conv", &["--val", "200"]);
    train_embedded(cwd, "lenet5", "plain", &["--val", "200"]);
    // Sensitivity of the conv maxout network: conv1's 40 pieces, fc1's 500.
    let out = ok(&maxprune(
        &[
            "sensitivity",
            "conv",
            "--layers",
            "conv1,fc1",
            "--fractions",
            "0.25,0.5",
            "--out",
            "s1",
        ],
        cwd,
    ));
    assert!(
        out.contains("| conv1 | 0.25 | 40 -> 30 |") && out.contains("| fc1 | 0.50 | 500 -> 250 |"),
        "{out}"
    );
    // One maxout layer at a time: only conv2's units lose a piece.
    let args = [
        "prune",
        "neurons",
        "conv",
        "--out",
        "c2",
        "--dataset",
        "embedded",
        "--layers",
        "conv2",
        "--steps",
        "1",
        "--retrain-epochs",
        "1",
        "--val",
        "200",
        "-q",
    ];
    ok(&maxprune(&args, cwd));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("c2/report.json")).unwrap()).unwrap();
    assert_eq!(report["rows"][1]["pieces"], serde_json::json!(["2", "1", "4"]));
    let rel: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("c2/step-01/relevance.json")).unwrap()).unwrap();
    assert_eq!(rel["layers"].as_array().unwrap().len(), 1);
    assert_eq!(rel["layers"][0]["producer"], "conv2");
    let out = ok(&maxprune(
        &["relevance", "conv", "--layers", "fc1", "--out", "r.json"],
        cwd,
    ));
    assert!(out.contains("('fc1')") && !out.contains("conv1"), "{out}");
    // Of plain LeNet-5: every layer read by another is a layer of units of one piece.
    let out = ok(&maxprune(
        &[
            "sensitivity",
            "plain",
            "--criterion",
            "l1-norm",
            "--cut",
            "units",
            "--fractions",
            "0.5",
            "--out",
            "s2",
        ],
        cwd,
    ));
    for row in [
        "| conv1 | 0.50 | 20 -> 10 |",
        "| conv2 | 0.50 | 50 -> 25 |",
        "| fc1 | 0.50 | 500 -> 250 |",
    ] {
        assert!(out.contains(row), "{row} in {out}");
    }
    // L1 filter pruning of plain LeNet-5's convs by per-layer budgets, in two steps.
    let prune = |source: &str, out: &str, budgets: &str| {
        let args = [
            "prune",
            "neurons",
            source,
            "--out",
            out,
            "--dataset",
            "embedded",
            "--policy",
            "units",
            "--criterion",
            "l1-norm",
            "--fraction-per-layer",
            budgets,
            "--steps",
            "2",
            "--retrain-epochs",
            "1",
            "--val",
            "200",
            "-q",
        ];
        maxprune(&args, cwd)
    };
    ok(&prune("plain", "l1", "conv1=0.5,conv2=0.64"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("l1/report.json")).unwrap()).unwrap();
    assert!(
        report["description"]
            .as_str()
            .unwrap()
            .contains("per-layer budgets `conv1 0.5, conv2 0.64`")
    );
    // conv1 20 -> 15 -> 10 filters, conv2 50 -> 34 -> 18 (unless the stopping rule ended it).
    let final_step = report["final_step"].as_u64().unwrap();
    let params = [
        431_080,
        15 * 26 + 34 * 376 + 34 * 16 * 500 + 500 + 5010,
        10 * 26 + 18 * 251 + 18 * 16 * 500 + 500 + 5010,
    ];
    assert_eq!(
        report["rows"][final_step as usize]["params"],
        params[final_step as usize]
    );
    assert_eq!(report["rows"][1]["params"], params[1]);
    // Bad budgets are refused before anything is written.
    for (budgets, needle) in [
        ("conv1=1.0", "conv1: expected a fraction in (0, 1), found 1"),
        ("conv1=-0.1", "found -0.1"),
        (
            "conv9=0.5",
            "'conv9' is not a layer whose units can be pruned; expected one of conv1, conv2, fc1",
        ),
        ("fc2=0.5", "'fc2' is not a layer whose units can be pruned"),
        (
            "conv1=0.99",
            "conv1: 0.99 of its 20 units rounds to 20, which would remove every unit",
        ),
    ] {
        fails_with(&prune("plain", "bad", budgets), needle);
        assert!(!cwd.join("bad").exists(), "{budgets} left an output");
    }
    let args = [
        "prune",
        "neurons",
        "plain",
        "--out",
        "bad",
        "--dataset",
        "embedded",
        "--fraction-per-layer",
        "conv1=0.5",
    ];
    fails_with(&maxprune(&args, cwd), "expected the units policy, found per-unit");
    assert!(!cwd.join("bad").exists());
}

#[test]
fn chart_bars_draws_ratios_from_json_and_names_a_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = r#"{"title": "maxprune / PyTorch", "value_label": "ratio (x)",
                   "bars": [["training", 0.9], ["inference", 1.5]], "reference": ["parity", 1.0]}"#;
    std::fs::write(cwd.join("speed.json"), data).unwrap();
    ok(&maxprune(&["chart", "bars", "speed.json", "--out", "speed.svg"], cwd));
    let svg = std::fs::read_to_string(cwd.join("speed.svg")).unwrap();
    assert!(
        svg.contains("0.90x") && svg.contains("1.50x") && svg.contains("parity"),
        "{svg}"
    );
    std::fs::write(cwd.join("bad.json"), r#"{"title": "t", "bars": []}"#).unwrap();
    fails_with(
        &maxprune(&["chart", "bars", "bad.json", "--out", "bad.svg"], cwd),
        "bad.json: cannot parse: missing field `value_label`",
    );
    assert!(!cwd.join("bad.svg").exists());
}

#[test]
fn import_of_an_onnx_export_evaluates_as_the_original_and_bad_files_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    train_embedded(tmp.path(), "seed-lenet", "a", &[]);
    ok(&maxprune(
        &["export", "a", "--format", "onnx", "--out", "a.onnx"],
        tmp.path(),
    ));
    let out = ok(&maxprune(
        &["import", "a.onnx", "--out", "r", "--dataset", "embedded"],
        tmp.path(),
    ));
    assert!(out.contains("wrote r"), "{out}");
    let (a, r) = (
        json(&maxprune(&["eval", "a", "--json"], tmp.path())),
        json(&maxprune(&["eval", "r", "--json"], tmp.path())),
    );
    assert_eq!((&a["accuracy"], &a["per_class"]), (&r["accuracy"], &r["per_class"]));
    // An architecture flag, or a file that is no ONNX model: refused, nothing written.
    fails_with(
        &maxprune(&["import", "a.onnx", "--preset", "lenet5", "--out", "s"], tmp.path()),
        "--preset",
    );
    std::fs::write(tmp.path().join("bad.onnx"), b"\xff\xff not protobuf").unwrap();
    fails_with(&maxprune(&["import", "bad.onnx", "--out", "s"], tmp.path()), "bad.onnx");
    assert!(!tmp.path().join("s").exists());
}

#[test]
fn prune_neurons_to_a_flop_target_by_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // FLOPs: conv1 115,200, fc1 6,912, fc2 80; every unit but one per maxout layer leaves
    // 58,484 (a FLOP ratio of 2.09).
    let spec = serde_json::json!({
        "format_version": 1,
        "name": "small-maxout",
        "input": {"channels": 1, "height": 28, "width": 28},
        "layers": [
            {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 5, "stride": 1, "padding": 0},
            {"kind": "maxout", "pieces": {"units": 2, "k": 2}},
            {"kind": "max-pool", "kernel": 2, "stride": 2},
            {"kind": "flatten"},
            {"kind": "dense", "name": "fc1", "outputs": 12},
            {"kind": "maxout", "pieces": {"units": 4, "k": 3}},
            {"kind": "dense", "name": "fc2", "outputs": 10}
        ]
    });
    std::fs::write(cwd.join("s.json"), spec.to_string()).unwrap();
    ok(&util::train_one_epoch(
        cwd,
        &["--spec", "s.json"],
        "a",
        &["--val", "200"],
    ));
    let prune = |extra: &[&str]| {
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
    };
    let cost = ["--policy", "cost", "--criterion", "contribution"];
    for (extra, needle) in [
        (
            &[&cost[..], &["--target-speedup", "50"]].concat()[..],
            "FLOP ratio 50 (at most 2443 FLOPs per example) cannot be reached: removing every unit but one in \
             each scored layer (conv1, fc1) leaves 58484",
        ),
        (
            &[&cost[..], &["--against", "a"]].concat()[..],
            "--against needs --target-speedup",
        ),
        (
            &[
                "--policy",
                "units",
                "--criterion",
                "contribution",
                "--target-speedup",
                "1.2",
            ][..],
            "expected the cost policy, found units",
        ),
        (
            &[&cost[..], &["--target-speedup", "0.5"]].concat()[..],
            "speedup: expected a finite number above 1",
        ),
    ] {
        fails_with(&prune(extra), needle);
        assert!(!cwd.join("b").exists(), "{extra:?} left an output behind");
    }
    let extra = [
        &cost[..],
        &[
            "--target-speedup",
            "1.2",
            "--stop-rule",
            "none",
            "--bench-steps",
            "none",
        ],
    ]
    .concat();
    ok(&prune(&extra));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("b/report.json")).unwrap()).unwrap();
    assert_eq!(report["ended_by"], "limit");
    let rows = report["rows"].as_array().unwrap();
    let last = rows.last().unwrap()["flop_ratio"].as_f64().unwrap();
    assert!(
        last >= 1.2 && rows[rows.len() - 2]["flop_ratio"].as_f64().unwrap() < 1.2,
        "{rows:?}"
    );
    let md = std::fs::read_to_string(cwd.join("b/report.md")).unwrap();
    assert!(md.contains("Target speedup 1.2: the result was not timed"), "{md}");
}
