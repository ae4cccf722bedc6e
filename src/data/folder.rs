//! Image-folder datasets: one sub-folder per class, images decoded by the `image` crate.
//!
//! `<dir>/train/<class>/*` and `<dir>/test/<class>/*` when both exist; otherwise
//! `<dir>/<class>/*`, with every 10th image of each class (in file-name order) held out as the
//! test split. Classes are the sub-folder names in sorted order. Images are resized to `size` x
//! `size` (bilinear) and kept in RGB; a folder whose every pixel is gray is stored with 1 channel
//! (the same bytes as the images' own gray conversion). A network with 1 input channel sees an RGB
//! folder's gray conversion ([`super::split::batch`]). Files that are not JPEG or PNG are skipped
//! by extension, and one that fails to decode is an error naming it.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use image::imageops::FilterType;

use super::split::Split;
use crate::error::{Error, Result};

/// The class folders of `dir`, sorted by name.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io("reading directory", dir, e))?;
    let mut dirs: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The image files of one class folder, sorted by name.
fn images(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io("reading directory", dir, e))?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            matches!(ext.as_str(), "jpg" | "jpeg" | "png")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and decodes one image file (JPEG or PNG); errors name the file.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading image", path, e))?;
    image::load_from_memory(&bytes).map_err(|e| Error::Format {
        path: path.display().to_string(),
        what: "image".into(),
        expected: "a JPEG or PNG image".into(),
        found: e.to_string(),
    })
}

/// One image resized to `size` x `size`, as RGB planes (`[3, size, size]`).
fn decode(path: &Path, size: usize) -> Result<Vec<u8>> {
    let rgb = open_image(path)?
        .resize_exact(size as u32, size as u32, FilterType::Triangle)
        .to_rgb8()
        .into_raw();
    Ok((0..3).flat_map(|ch| rgb.iter().skip(ch).step_by(3).copied()).collect())
}

fn push(split: &mut Split, path: &Path, label: usize, size: usize) -> Result<()> {
    split.pixels.extend(decode(path, size)?);
    split.labels.push(label as u8);
    Ok(())
}

/// Keeps only the first plane of every image of an RGB split.
fn to_gray(split: &mut Split) {
    let plane = split.rows * split.cols;
    split.pixels = split
        .pixels
        .chunks(3 * plane)
        .flat_map(|image| &image[..plane])
        .copied()
        .collect();
    split.channels = 1;
}

/// Whether every pixel of an RGB split is gray (red = green = blue).
fn is_gray(split: &Split) -> bool {
    let plane = split.rows * split.cols;
    split.pixels.chunks(3 * plane).all(|image| {
        let (r, gb) = image.split_at(plane);
        let (g, b) = gb.split_at(plane);
        r == g && g == b
    })
}

/// Loads `dir` as `(classes, train, test)` with images of `size` x `size` pixels.
pub fn load(dir: &Path, size: usize) -> Result<(usize, Split, Split)> {
    let empty = || Split {
        channels: 3,
        rows: size,
        cols: size,
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    let (mut train, mut test) = (empty(), empty());
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    let separate = train_dir.is_dir() && test_dir.is_dir();
    if train_dir.is_dir() != test_dir.is_dir() {
        let (has, lacks) = if train_dir.is_dir() {
            ("train", "test")
        } else {
            ("test", "train")
        };
        return Err(Error::Format {
            path: dir.display().to_string(),
            what: "split folders".into(),
            expected: format!("{lacks}/ beside {has}/ (or no split folders: class folders directly inside)"),
            found: format!("{has}/ only"),
        });
    }
    let classes = class_dirs(if separate { &train_dir } else { dir })?;
    let names: Vec<_> = classes
        .iter()
        .map(|c| c.file_name().unwrap_or_default().to_os_string())
        .collect();
    if separate {
        for test_class in class_dirs(&test_dir)? {
            let name = test_class.file_name().unwrap_or_default();
            if !names.iter().any(|n| n == name) {
                return Err(Error::Format {
                    path: test_class.display().to_string(),
                    what: "test class".into(),
                    expected: format!(
                        "a class of the training split ({})",
                        names.iter().map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
                    ),
                    found: format!("{:?}, which train/ does not have", name.to_string_lossy()),
                });
            }
        }
    }
    if names.is_empty() || names.len() > 256 {
        return Err(Error::Format {
            path: dir.display().to_string(),
            what: "class folders".into(),
            expected: "1 to 256 sub-folders, one per class (or train/ and test/ holding them)".into(),
            found: format!("{} sub-folders", names.len()),
        });
    }
    for (label, name) in names.iter().enumerate() {
        if separate {
            for f in images(&train_dir.join(name))? {
                push(&mut train, &f, label, size)?;
            }
            let test_class = test_dir.join(name);
            if test_class.is_dir() {
                for f in images(&test_class)? {
                    push(&mut test, &f, label, size)?;
                }
            }
        } else {
            for (i, f) in images(&dir.join(name))?.iter().enumerate() {
                push(if i % 10 == 9 { &mut test } else { &mut train }, f, label, size)?;
            }
        }
    }
    if train.labels.is_empty() || test.labels.is_empty() {
        return Err(Error::Format {
            path: dir.display().to_string(),
            what: "images".into(),
            expected: "JPEG or PNG files in the class folders, for both splits".into(),
            found: format!("{} training and {} test images", train.labels.len(), test.labels.len()),
        });
    }
    if is_gray(&train) && is_gray(&test) {
        to_gray(&mut train);
        to_gray(&mut test);
    }
    Ok((names.len(), train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, shade: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::save_buffer(path, &[shade; 12 * 8], 12, 8, image::ColorType::L8).unwrap();
    }

    #[test]
    fn one_folder_per_class_with_every_tenth_image_held_out() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..10 {
            write(&tmp.path().join(format!("cat/{i:02}.png")), 10);
            write(&tmp.path().join(format!("dog/{i:02}.png")), 200);
        }
        std::fs::write(tmp.path().join("dog/notes.txt"), "not an image").unwrap();
        let (classes, train, test) = load(tmp.path(), 4).unwrap();
        assert_eq!(classes, 2);
        assert_eq!((train.len(), test.len()), (18, 2));
        assert_eq!(test.labels, [0, 1]);
        assert_eq!((train.rows, train.cols, train.pixels.len()), (4, 4, 18 * 16));
        assert!(test.image(1).iter().all(|&p| p == 200));
        assert_eq!(train.channels, 1);
    }

    #[test]
    fn colour_folders_keep_their_rgb_planes() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("gray/1.png"), 10);
        let path = tmp.path().join("red/1.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let pixels: Vec<u8> = (0..4).flat_map(|i| [200, 10 * i, 5]).collect();
        image::save_buffer(&path, &pixels, 2, 2, image::ColorType::Rgb8).unwrap();
        // Ten images per class, so that both splits (every 10th held out) hold both classes.
        for i in 2..=10 {
            std::fs::copy(&path, tmp.path().join(format!("red/{i:02}.png"))).unwrap();
            write(&tmp.path().join(format!("gray/{i:02}.png")), 10);
        }
        let (_, train, test) = load(tmp.path(), 2).unwrap();
        assert_eq!((train.channels, test.channels), (3, 3));
        let red = test.image(test.labels.iter().position(|&l| l == 1).unwrap());
        assert_eq!(red, [200, 200, 200, 200, 0, 10, 20, 30, 5, 5, 5, 5]);
        let gray = test.image(test.labels.iter().position(|&l| l == 0).unwrap());
        assert!(gray.iter().all(|&p| p == 10), "{gray:?}");
    }

    #[test]
    fn train_and_test_folders_and_bad_inputs() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("train/a/1.png"), 1);
        write(&tmp.path().join("train/b/1.png"), 2);
        write(&tmp.path().join("test/b/1.png"), 2);
        let (classes, train, test) = load(tmp.path(), 3).unwrap();
        assert_eq!(
            (classes, train.labels.clone(), test.labels.clone()),
            (2, vec![0, 1], vec![1])
        );
        std::fs::write(tmp.path().join("train/a/2.jpg"), b"broken").unwrap();
        let e = load(tmp.path(), 3).unwrap_err().to_string();
        assert!(e.contains("2.jpg") && e.contains("JPEG or PNG"), "{e}");
        let e = load(&tmp.path().join("missing"), 3).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn regression_test_classes_the_training_split_lacks_and_a_lone_train_folder_are_refused() {
        // Seen: test/c was dropped without a word when train/ had a and b; a folder with train/
        // but no test/ said "found 0 training and 0 test images".
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("train/a/1.png"), 1);
        write(&tmp.path().join("train/b/1.png"), 2);
        let e = load(tmp.path(), 3).unwrap_err().to_string();
        assert!(
            e.contains("test/ beside train/") && e.contains("found train/ only"),
            "{e}"
        );
        write(&tmp.path().join("test/a/1.png"), 1);
        write(&tmp.path().join("test/c/1.png"), 3);
        let e = load(tmp.path(), 3).unwrap_err().to_string();
        assert!(
            e.contains("test class") && e.contains("\"c\", which train/ does not have"),
            "{e}"
        );
        assert!(e.contains("(a, b)"), "{e}");
    }
}
