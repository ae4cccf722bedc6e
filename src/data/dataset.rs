//! Named datasets: where they are looked for, how they are loaded, and the validation split.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::idx;
use super::split::Split;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Number of classes of MNIST and Fashion-MNIST.
pub const MNIST_CLASSES: usize = 10;

/// The gzip-compressed IDX files of the Fashion-MNIST subset built into the library
/// (2,000 training and 500 test images, the first of each split of Fashion-MNIST).
mod embedded {
    pub const TRAIN_IMAGES: &[u8] = include_bytes!("../../fixtures/fashion-mini/train-images-idx3-ubyte.gz");
    pub const TRAIN_LABELS: &[u8] = include_bytes!("../../fixtures/fashion-mini/train-labels-idx1-ubyte.gz");
    pub const TEST_IMAGES: &[u8] = include_bytes!("../../fixtures/fashion-mini/t10k-images-idx3-ubyte.gz");
    pub const TEST_LABELS: &[u8] = include_bytes!("../../fixtures/fashion-mini/t10k-labels-idx1-ubyte.gz");
}

/// A dataset maxprune knows how to find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DatasetName {
    /// LeCun's handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
    /// The Fashion-MNIST subset built into the binary (2,000 train / 500 test images).
    Embedded,
    /// Any directory holding `train-*` and `t10k-*` IDX files.
    Idx(PathBuf),
    /// An image folder (see [`crate::data::folder`]), images resized to `size` x `size`.
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Side of the square images.
        size: usize,
    },
    /// CIFAR-10's binary batches in a directory (see [`crate::data::cifar`]).
    Cifar10(PathBuf),
}

/// Image side of `folder:<dir>` without an `@<size>`.
const FOLDER_SIZE: usize = 32;

/// Largest image side of `folder:<dir>@<size>`, checked before any image is resized.
pub const MAX_FOLDER_SIZE: usize = 4096;

impl DatasetName {
    /// The directory name under which the dataset is looked for (for the named ones) or
    /// downloaded (also `cifar10`).
    pub fn dir_name(&self) -> Option<&'static str> {
        match self {
            DatasetName::Mnist => Some("mnist"),
            DatasetName::FashionMnist => Some("fashion-mnist"),
            DatasetName::Cifar10(_) => Some("cifar10"),
            _ => None,
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetName::Mnist => write!(f, "mnist"),
            DatasetName::FashionMnist => write!(f, "fashion-mnist"),
            DatasetName::Embedded => write!(f, "embedded"),
            DatasetName::Idx(dir) => write!(f, "idx:{}", dir.display()),
            DatasetName::Folder { dir, size } => write!(f, "folder:{}@{size}", dir.display()),
            DatasetName::Cifar10(dir) => write!(f, "cifar10:{}", dir.display()),
        }
    }
}

impl FromStr for DatasetName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" => Ok(DatasetName::FashionMnist),
            "embedded" => Ok(DatasetName::Embedded),
            _ => {
                if let Some(dir) = s.strip_prefix("idx:").filter(|d| !d.is_empty()) {
                    return Ok(DatasetName::Idx(PathBuf::from(dir)));
                }
                if let Some(dir) = s.strip_prefix("cifar10:").filter(|d| !d.is_empty()) {
                    return Ok(DatasetName::Cifar10(PathBuf::from(dir)));
                }
                if let Some(rest) = s.strip_prefix("folder:").filter(|d| !d.is_empty()) {
                    // Whatever follows the last '@' is the size; a folder whose name holds an
                    // '@' is given with an explicit `@<size>`.
                    let (dir, size) = match rest.rsplit_once('@') {
                        None => (rest, FOLDER_SIZE),
                        Some((dir, n)) => match n.parse::<usize>() {
                            Ok(size) if (1..=MAX_FOLDER_SIZE).contains(&size) && !dir.is_empty() => (dir, size),
                            _ => {
                                return Err(Error::invalid(
                                    "dataset name",
                                    format!(
                                        "'{s}': expected folder:<dir>[@size] with a size of 1 to {MAX_FOLDER_SIZE} \
                                         pixels, found '@{n}'"
                                    ),
                                ));
                            }
                        },
                    };
                    return Ok(DatasetName::Folder {
                        dir: PathBuf::from(dir),
                        size,
                    });
                }
                Err(Error::invalid(
                    "dataset name",
                    format!(
                        "'{s}': expected mnist, fashion-mnist, embedded, idx:<dir>, folder:<dir>[@size] or cifar10:<dir>"
                    ),
                ))
            }
        }
    }
}

impl From<DatasetName> for String {
    fn from(d: DatasetName) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for DatasetName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// A dataset with its train and test splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Which dataset this is.
    pub name: DatasetName,
    /// Number of classes.
    pub classes: usize,
    /// The training split.
    pub train: Split,
    /// The test split: for final accuracy only, never for decisions.
    pub test: Split,
    /// A labelled set of its own that validates instead of examples carved off train (see
    /// [`with_validation`](Self::with_validation)); `None` for a dataset as loaded.
    pub validation: Option<Validation>,
}

/// A validation set taken from another dataset: every labelled example of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// The dataset it comes from.
    pub name: DatasetName,
    /// Its examples: that dataset's training split, then its test split.
    pub examples: Split,
}

/// Seed of the fixed permutation that carves the validation split out of train.
const VAL_SEED: u64 = 0x005e_ed0f_7a11;

impl Dataset {
    /// Splits `n` examples off the training split as a validation split.
    ///
    /// The choice is deterministic (a fixed-seed permutation, independent of the training seed),
    /// so every run and every pruning step with the same `n` sees the same validation examples.
    /// Returns `(train, val)`.
    pub fn carve_val(&self, n: usize) -> Result<(Split, Split)> {
        let total = self.train.len();
        if n >= total {
            return Err(Error::invalid(
                "validation size",
                format!("val = {n}: expected fewer than the {total} training examples"),
            ));
        }
        let mut order: Vec<usize> = (0..total).collect();
        SplitMix64::new(VAL_SEED).shuffle(&mut order);
        let (val, train) = order.split_at(n);
        let mut train = train.to_vec();
        train.sort_unstable();
        let mut val = val.to_vec();
        val.sort_unstable();
        Ok((self.train.subset(&train), self.train.subset(&val)))
    }

    /// This dataset with every example of `other` (its training split, then its test split) as
    /// the validation set, for a network trained on all of this dataset's training split
    /// elsewhere. `other` must be another dataset (this one's examples are trained or tested
    /// on), with this one's number of classes and one image shape in both of its splits.
    pub fn with_validation(self, other: Dataset) -> Result<Dataset> {
        let refuse = |expected: String, found: String| {
            Err(Error::invalid(
                "validation dataset",
                format!("{}: expected {expected}, found {found}", other.name),
            ))
        };
        if other.name == self.name {
            return refuse(
                format!(
                    "another dataset than {} (its examples are trained and tested on)",
                    self.name
                ),
                "the same dataset".into(),
            );
        }
        if other.classes != self.classes {
            return refuse(
                format!("the {} classes of {}", self.classes, self.name),
                format!("{} classes", other.classes),
            );
        }
        let shape = |s: &Split| (s.channels, s.rows, s.cols);
        if shape(&other.train) != shape(&other.test) {
            let (c, h, w) = shape(&other.train);
            let (tc, th, tw) = shape(&other.test);
            return refuse(
                format!("one image shape in both of its splits (train: {c}x{h}x{w})"),
                format!("{tc}x{th}x{tw} in its test split"),
            );
        }
        let mut examples = other.train;
        examples.pixels.extend(other.test.pixels);
        examples.labels.extend(other.test.labels);
        Ok(Dataset {
            validation: Some(Validation {
                name: other.name,
                examples,
            }),
            ..self
        })
    }

    /// The Fashion-MNIST subset compiled into the library: needs no file and no network.
    pub fn embedded() -> Result<Dataset> {
        let split = |img: &[u8], lbl: &[u8], what: &str| -> Result<Split> {
            let images = idx::read_images(img, &format!("embedded {what} images"))?;
            let labels = idx::read_labels(lbl, &format!("embedded {what} labels"), MNIST_CLASSES)?;
            Split::from_idx(images, labels, &format!("embedded {what}"))
        };
        Ok(Dataset {
            name: DatasetName::Embedded,
            classes: MNIST_CLASSES,
            train: split(embedded::TRAIN_IMAGES, embedded::TRAIN_LABELS, "train")?,
            test: split(embedded::TEST_IMAGES, embedded::TEST_LABELS, "test")?,
            validation: None,
        })
    }

    /// Loads a dataset by name.
    ///
    /// Named datasets are looked for, in order, in `data_dir`, `$MAXPRUNE_DATA/<name>`,
    /// `./data/<name>` and `/usr/share/datasets/<name>`; the error lists every place searched.
    pub fn load(name: &DatasetName, data_dir: Option<&Path>) -> Result<Dataset> {
        Dataset::load_from(name, search_dirs(name, data_dir))
    }

    /// Like [`load`](Self::load), looking for a named dataset in `candidates` only.
    pub fn load_from(name: &DatasetName, candidates: Vec<PathBuf>) -> Result<Dataset> {
        let dir = match name {
            DatasetName::Embedded => return Dataset::embedded(),
            DatasetName::Folder { dir, size } => {
                let (classes, train, test) = super::folder::load(dir, *size)?;
                return Ok(Dataset {
                    name: name.clone(),
                    classes,
                    train,
                    test,
                    validation: None,
                });
            }
            DatasetName::Cifar10(dir) => {
                let (train, test) = super::cifar::load(dir)?;
                return Ok(Dataset {
                    name: name.clone(),
                    classes: super::cifar::CLASSES,
                    train,
                    test,
                    validation: None,
                });
            }
            DatasetName::Idx(dir) => dir.clone(),
            _ => match candidates.iter().find(|d| find_file(d, "train-images").is_some()) {
                Some(d) => d.clone(),
                None => {
                    return Err(Error::DatasetNotFound {
                        name: name.to_string(),
                        searched: candidates,
                    });
                }
            },
        };
        let (train, test) = (load_split(&dir, "train")?, load_split(&dir, "t10k")?);
        if (test.rows, test.cols) != (train.rows, train.cols) {
            return Err(Error::Format {
                path: dir.display().to_string(),
                what: "t10k images".into(),
                expected: format!("the training images' size, {}x{}", train.rows, train.cols),
                found: format!("{}x{}", test.rows, test.cols),
            });
        }
        Ok(Dataset {
            name: name.clone(),
            classes: MNIST_CLASSES,
            train,
            test,
            validation: None,
        })
    }
}

/// The directories searched for a named dataset, in order.
pub fn search_dirs(name: &DatasetName, data_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = data_dir {
        dirs.push(d.to_path_buf());
    }
    if let Some(sub) = name.dir_name() {
        if let Some(root) = std::env::var_os("MAXPRUNE_DATA") {
            dirs.push(PathBuf::from(root).join(sub));
        }
        dirs.push(PathBuf::from("data").join(sub));
        dirs.push(PathBuf::from("/usr/share/datasets").join(sub));
    }
    dirs
}

/// Where a download of the named dataset goes by default: `$MAXPRUNE_DATA/<name>` when that
/// variable is set, else `./data/<name>` (the first two places [`search_dirs`] looks). `None`
/// for datasets without a directory name (`embedded`, `idx:`, `folder:`); `cifar10` gets one
/// (its own directory is then ignored).
pub fn download_dir(name: &DatasetName) -> Option<PathBuf> {
    let sub = name.dir_name()?;
    Some(match std::env::var_os("MAXPRUNE_DATA") {
        Some(root) => PathBuf::from(root).join(sub),
        None => PathBuf::from("data").join(sub),
    })
}

/// The IDX file in `dir` whose name starts with `prefix` (`train-images`, `t10k-labels`, ...),
/// preferring the gzip-compressed one.
fn find_file(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.ends_with(".part"))
        })
        .collect();
    found.sort();
    found
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "gz"))
        .or(found.first())
        .cloned()
}

fn load_split(dir: &Path, prefix: &str) -> Result<Split> {
    let locate = |kind: &str| -> Result<PathBuf> {
        let stem = format!("{prefix}-{kind}");
        find_file(dir, &stem).ok_or_else(|| Error::Format {
            path: dir.display().to_string(),
            what: "dataset directory".into(),
            expected: format!("a file named {stem}*"),
            found: "none".into(),
        })
    };
    let open = |p: &Path| -> Result<BufReader<File>> {
        Ok(BufReader::new(File::open(p).map_err(|e| Error::io("opening", p, e))?))
    };
    let img_path = locate("images")?;
    let lbl_path = locate("labels")?;
    let images = idx::read_images(open(&img_path)?, &img_path.display().to_string())?;
    let labels = idx::read_labels(open(&lbl_path)?, &lbl_path.display().to_string(), MNIST_CLASSES)?;
    Split::from_idx(images, labels, &lbl_path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::IdxImages;

    #[test]
    fn downloads_go_where_the_search_looks_first() {
        for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
            let dir = download_dir(&name).unwrap();
            assert_eq!(search_dirs(&name, None)[0], dir);
            assert!(dir.ends_with(name.dir_name().unwrap()), "{}", dir.display());
        }
        assert_eq!(download_dir(&DatasetName::Embedded), None);
    }

    #[test]
    fn names_round_trip() {
        for s in [
            "mnist",
            "fashion-mnist",
            "embedded",
            "idx:/tmp/x",
            "folder:/data/faces@64",
            "cifar10:/data/cifar",
        ] {
            assert_eq!(s.parse::<DatasetName>().unwrap().to_string(), s);
        }
        assert_eq!(
            "folder:faces".parse::<DatasetName>().unwrap().to_string(),
            "folder:faces@32"
        );
        // Seen: `@0`, `@abc` and `@` were read as part of the path; `@100000` aborted.
        for bad in [
            "folder:faces@0",
            "folder:faces@abc",
            "folder:faces@",
            "folder:faces@100000",
            "folder:@64",
        ] {
            let e = bad.parse::<DatasetName>().unwrap_err().to_string();
            assert!(e.contains("size of 1 to 4096 pixels"), "{bad}: {e}");
        }
        let e = "cifar".parse::<DatasetName>().unwrap_err().to_string();
        assert!(e.contains("cifar") && e.contains("idx:<dir>"), "{e}");
    }

    #[test]
    fn embedded_subset_loads() {
        let d = Dataset::embedded().unwrap();
        assert_eq!((d.train.len(), d.test.len()), (2000, 500));
        assert_eq!((d.train.rows, d.train.cols), (28, 28));
        // every class is present in both splits
        for split in [&d.train, &d.test] {
            let mut seen = [false; 10];
            split.labels.iter().for_each(|&l| seen[l as usize] = true);
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn val_split_is_deterministic_and_disjoint() {
        let d = Dataset::embedded().unwrap();
        let (t1, v1) = d.carve_val(300).unwrap();
        let (t2, v2) = d.carve_val(300).unwrap();
        assert_eq!((t1.len(), v1.len()), (1700, 300));
        assert_eq!(v1, v2);
        assert_eq!(t1, t2);
        assert!(d.carve_val(2000).is_err());
    }

    #[test]
    fn a_validation_dataset_is_all_of_another_dataset() {
        let d = Dataset::embedded().unwrap();
        let other = Dataset {
            name: DatasetName::Idx("held-out".into()),
            ..d.clone()
        };
        let v = d.clone().with_validation(other.clone()).unwrap().validation.unwrap();
        assert_eq!(v.name, other.name);
        assert_eq!(v.examples.len(), 2500);
        assert_eq!(v.examples.image(2000), d.test.image(0));
        let e = d.clone().with_validation(d.clone()).unwrap_err().to_string();
        assert!(e.contains("embedded: expected another dataset than embedded"), "{e}");
        let fewer = Dataset { classes: 3, ..other };
        let e = d.with_validation(fewer).unwrap_err().to_string();
        assert!(e.contains("the 10 classes of embedded, found 3 classes"), "{e}");
    }

    #[test]
    fn search_order_is_flag_env_local_system() {
        let dirs = search_dirs(&DatasetName::Mnist, Some(Path::new("/x")));
        assert_eq!(dirs.first(), Some(&PathBuf::from("/x")));
        let n = dirs.len();
        assert_eq!(
            dirs[n - 2..],
            [PathBuf::from("data/mnist"), PathBuf::from("/usr/share/datasets/mnist")]
        );
    }

    #[test]
    fn missing_dataset_lists_places_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![
            tmp.path().to_path_buf(),
            PathBuf::from("/usr/share/datasets/fashion-mnist-absent"),
        ];
        let Err(e) = Dataset::load_from(&DatasetName::FashionMnist, dirs) else {
            panic!("no dataset is in an empty directory")
        };
        let e = e.to_string();
        assert!(e.contains(&tmp.path().display().to_string()), "{e}");
        assert!(e.contains("/usr/share/datasets/fashion-mnist-absent"), "{e}");
        assert!(
            e.contains("maxprune fetch fashion-mnist") && e.contains("dataset-fashion-mnist"),
            "{e}"
        );
    }

    #[test]
    fn idx_dir_with_count_mismatch_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let imgs = IdxImages {
            rows: 2,
            cols: 2,
            pixels: vec![0; 12],
        };
        for p in ["train", "t10k"] {
            let f = File::create(tmp.path().join(format!("{p}-images-idx3-ubyte"))).unwrap();
            idx::write_images(f, &imgs, false).unwrap();
            let f = File::create(tmp.path().join(format!("{p}-labels-idx1-ubyte"))).unwrap();
            idx::write_labels(f, &[1, 2], false).unwrap();
        }
        let e = Dataset::load(&DatasetName::Idx(tmp.path().into()), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("as many labels as images (3)") && e.contains("found 2 labels"),
            "{e}"
        );
    }
}
