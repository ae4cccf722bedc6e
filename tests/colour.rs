//! Colour datasets end to end through the binary: a fixture whose class is decided by colour
//! alone, every class at the same luminance, written as CIFAR-10 binary batches and as a PNG
//! folder. A 3-channel network learns it; the same network reading the gray conversion cannot.

use std::path::Path;

mod util;
use util::{maxprune, ok};

/// The class colours: four hues of the same sRGB luma, 100 (`(2126 r + 7152 g + 722 b) / 10000`,
/// rounded down), so that their gray conversion is the same.
const COLOURS: [[u8; 3]; 4] = [[255, 64, 10], [3, 139, 0], [1, 114, 255], [200, 61, 200]];

/// Image side (CIFAR-10's).
const SIDE: usize = 32;

/// Training images per class; the test split has a quarter as many.
const PER_CLASS: usize = 80;

/// `n` images per class as `(label, [3, SIDE, SIDE] planes)`: every pixel is black or the class
/// colour, each with probability 1/2, from a fixed-seed generator.
fn images(n: usize, seed: u64) -> Vec<(u8, Vec<u8>)> {
    let mut state = seed;
    let mut bit = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 63 == 1
    };
    let mut out = Vec::new();
    for i in 0..n * COLOURS.len() {
        let label = i % COLOURS.len();
        let mask: Vec<bool> = (0..SIDE * SIDE).map(|_| bit()).collect();
        let planes = COLOURS[label]
            .iter()
            .flat_map(|&v| mask.iter().map(move |&on| if on { v } else { 0 }))
            .collect();
        out.push((label as u8, planes));
    }
    out
}

/// Writes the fixture as CIFAR-10 batches into `dir/cifar` and as PNG files into
/// `dir/folder/{train,test}/<class>/`.
fn write_fixture(dir: &Path) {
    let (train, test) = (images(PER_CLASS, 1), images(PER_CLASS / 4, 2));
    let cifar = dir.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let records = |set: &[(u8, Vec<u8>)]| -> Vec<u8> {
        set.iter()
            .flat_map(|(label, planes)| std::iter::once(*label).chain(planes.iter().copied()))
            .collect()
    };
    for (b, chunk) in train.chunks(train.len() / 5).enumerate() {
        std::fs::write(cifar.join(format!("data_batch_{}.bin", b + 1)), records(chunk)).unwrap();
    }
    std::fs::write(cifar.join("test_batch.bin"), records(&test)).unwrap();
    for (split, set) in [("train", &train), ("test", &test)] {
        for (i, (label, planes)) in set.iter().enumerate() {
            let class = dir.join(format!("folder/{split}/c{label}"));
            std::fs::create_dir_all(&class).unwrap();
            let plane = SIDE * SIDE;
            let rgb: Vec<u8> = (0..plane)
                .flat_map(|p| (0..3).map(move |c| planes[c * plane + p]))
                .collect();
            image::save_buffer(
                class.join(format!("{i:04}.png")),
                &rgb,
                SIDE as u32,
                SIDE as u32,
                image::ColorType::Rgb8,
            )
            .unwrap();
        }
    }
}

/// A small conv net over `channels` x 32 x 32 inputs with 10 outputs (CIFAR-10's classes).
fn spec(channels: usize) -> String {
    serde_json::json!({
        "format_version": 1,
        "name": format!("colour-{channels}"),
        "input": {"channels": channels, "height": SIDE, "width": SIDE},
        "layers": [
            {"kind": "conv2d", "name": "conv1", "filters": 4, "kernel": 5, "stride": 1, "padding": 0},
            {"kind": "max-pool", "kernel": 4, "stride": 4},
            {"kind": "flatten"},
            {"kind": "dense", "name": "fc1", "outputs": 10}
        ]
    })
    .to_string()
}

/// Trains the `channels`-input network on `dataset` and returns its test accuracy in percent.
fn accuracy(dir: &Path, channels: usize, dataset: &str, out: &str) -> f64 {
    let spec_file = format!("spec{channels}.json");
    std::fs::write(dir.join(&spec_file), spec(channels)).unwrap();
    let stdout = ok(&maxprune(
        &[
            "train",
            "--spec",
            spec_file.as_str(),
            "--dataset",
            dataset,
            "--epochs",
            "8",
            "--batch-size",
            "16",
            "--out",
            out,
            "-q",
        ],
        dir,
    ));
    let after = stdout.split("test accuracy ").nth(1).expect("an accuracy line");
    after[..after.find('%').unwrap()].parse().unwrap()
}

#[test]
fn colour_decides_the_class_through_cifar10_and_folder_datasets() {
    for c in COLOURS {
        assert_eq!(maxprune::data::split::luma(c[0], c[1], c[2]), 100, "{c:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    write_fixture(tmp.path());
    for (tag, dataset) in [("cifar", "cifar10:cifar"), ("folder", "folder:folder")] {
        let colour = accuracy(tmp.path(), 3, dataset, &format!("{tag}-rgb"));
        let gray = accuracy(tmp.path(), 1, dataset, &format!("{tag}-gray"));
        // Chance is 25%: the gray images of all classes are drawn from one distribution.
        assert!(
            colour >= 90.0,
            "{dataset}: the 3-channel network reached only {colour}%"
        );
        assert!(
            gray <= 45.0,
            "{dataset}: the 1-channel network reached {gray}% on gray images"
        );
    }
}
