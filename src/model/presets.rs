//! The paper's architectures as [`ArchSpec`] values.

use crate::model::layers::{Conv2d, Dense, Dropout, Flatten, MaxPool, Maxout, Relu};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::spec::{ArchSpec, Init, InputShape, LayerSpec, Pieces, SPEC_FORMAT_VERSION};

/// A named architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Caffe's LeNet: conv 20@5x5, pool 2, conv 50@5x5, pool 2, dense 500, relu, dense 10
    /// (431,080 parameters).
    Lenet5,
    /// The paper's network (its Caffe `get_mnist_lenet`): LeNet with dense 500, relu, dropout
    /// 0.5 during training, then 125 maxout units of k=4 over the rectified pieces (427,330
    /// parameters). `experiments/lenet5-maxout-linear.json` is the same without the relu.
    Lenet5Maxout,
    /// `lenet5-maxout` with conv1 and conv2 as maxout layers too: 40 filters, relu, 20 units of
    /// k=2 over contiguous channel pairs; 100 filters, relu, 50 units of k=2 (452,900
    /// parameters). The unit counts are LeNet's channel counts, so everything after each maxout
    /// is `lenet5-maxout`'s; k=2 keeps the training cost under twice `lenet5-maxout`'s.
    Lenet5MaxoutConv,
    /// A smaller variant of the same shape: conv 20, conv 52, dense 256, relu, dropout, 64
    /// maxout units of k=4 (240,470 parameters).
    SeedLenet,
    /// VGG16 for 224x224x3 input and 1000 classes (138,357,544 parameters).
    Vgg16,
    /// VGG16 with fc6 and fc7 as maxout layers of k=4 (1024 units each) over rectified pieces:
    /// torchvision's fc6 and fc7 are followed by a ReLU, so imported weights keep their meaning.
    Vgg16Maxout,
    /// torchvision's `vgg16_bn`: VGG16 with a batch norm after every conv, before its relu
    /// (138,365,992 parameters).
    Vgg16Bn,
    /// `vgg16-bn` with `vgg16-maxout`'s maxout fc6 and fc7.
    Vgg16MaxoutBn,
    /// A CIFAR-sized maxout network for 32x32x3 input: three blocks of conv 3x3 (96, 192, 384
    /// filters), batch norm, relu, maxout of k=2 over channel pairs and max pool 2, then global
    /// average pooling and a dense classifier (421,258 parameters, 90.6 MFLOP). Modelled on
    /// Goodfellow et al.'s maxout network for CIFAR-10 (conv maxout layers over pieces), with
    /// batch norm (Ioffe and Szegedy) and a global-average-pooling head (Lin et al.'s Network in
    /// Network) in place of the dense maxout layer.
    CifarMaxout,
}

fn conv(name: &str, filters: usize, kernel: usize, padding: usize) -> LayerSpec {
    LayerSpec::Conv2d(Conv2d {
        name: name.into(),
        filters,
        kernel,
        stride: 1,
        padding,
    })
}

fn dense(name: &str, outputs: usize) -> LayerSpec {
    LayerSpec::Dense(Dense {
        name: name.into(),
        outputs,
    })
}

fn maxout(units: usize, k: usize) -> LayerSpec {
    LayerSpec::Maxout(Maxout {
        pieces: Pieces::Uniform { units, k },
    })
}

const POOL2: LayerSpec = LayerSpec::MaxPool(MaxPool { kernel: 2, stride: 2 });

fn lenet(name: &str, conv2: usize, hidden: Vec<LayerSpec>) -> ArchSpec {
    let layers = vec![conv("conv1", 20, 5, 0), POOL2, conv("conv2", conv2, 5, 0), POOL2];
    lenet_with(name, layers, hidden)
}

/// LeNet's input, `features` (the conv part), a flatten and `hidden`.
fn lenet_with(name: &str, mut layers: Vec<LayerSpec>, hidden: Vec<LayerSpec>) -> ArchSpec {
    layers.push(LayerSpec::Flatten(Flatten {}));
    layers.extend(hidden);
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: name.into(),
        input: InputShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        layers,
        init: Init::Xavier,
    }
}

/// VGG16's conv part (with a batch norm `bn<b>_<c>` after every conv when `bn`) and `head`.
fn vgg16(name: &str, bn: bool, head: Vec<LayerSpec>) -> ArchSpec {
    let mut layers = Vec::new();
    for (block, (filters, convs)) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
        .into_iter()
        .enumerate()
    {
        for c in 0..convs {
            layers.push(conv(&format!("conv{}_{}", block + 1, c + 1), filters, 3, 1));
            if bn {
                layers.push(LayerSpec::batch_norm(&format!("bn{}_{}", block + 1, c + 1)));
            }
            layers.push(LayerSpec::Relu(Relu {}));
        }
        layers.push(POOL2);
    }
    layers.push(LayerSpec::Flatten(Flatten {}));
    layers.extend(head);
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: name.into(),
        input: InputShape {
            channels: 3,
            height: 224,
            width: 224,
        },
        layers,
        init: Init::He,
    }
}

impl Preset {
    /// The preset's architecture.
    pub fn spec(self) -> ArchSpec {
        let dropout = LayerSpec::Dropout(Dropout { p: 0.5 });
        match self {
            Preset::Lenet5 => lenet(
                "lenet5",
                50,
                vec![dense("fc1", 500), LayerSpec::Relu(Relu {}), dense("fc2", 10)],
            ),
            Preset::Lenet5Maxout => lenet(
                "lenet5-maxout",
                50,
                vec![
                    dense("fc1", 500),
                    LayerSpec::Relu(Relu {}),
                    dropout,
                    maxout(125, 4),
                    dense("fc2", 10),
                ],
            ),
            Preset::Lenet5MaxoutConv => lenet_with(
                "lenet5-maxout-conv",
                vec![
                    conv("conv1", 40, 5, 0),
                    LayerSpec::Relu(Relu {}),
                    maxout(20, 2),
                    POOL2,
                    conv("conv2", 100, 5, 0),
                    LayerSpec::Relu(Relu {}),
                    maxout(50, 2),
                    POOL2,
                ],
                vec![
                    dense("fc1", 500),
                    LayerSpec::Relu(Relu {}),
                    dropout.clone(),
                    maxout(125, 4),
                    dense("fc2", 10),
                ],
            ),
            Preset::SeedLenet => lenet(
                "seed-lenet",
                52,
                vec![
                    dense("fc1", 256),
                    LayerSpec::Relu(Relu {}),
                    dropout,
                    maxout(64, 4),
                    dense("fc2", 10),
                ],
            ),
            Preset::Vgg16 => vgg16("vgg16", false, vgg16_head(false)),
            Preset::Vgg16Maxout => vgg16("vgg16-maxout", false, vgg16_head(true)),
            Preset::Vgg16Bn => vgg16("vgg16-bn", true, vgg16_head(false)),
            Preset::Vgg16MaxoutBn => vgg16("vgg16-maxout-bn", true, vgg16_head(true)),
            Preset::CifarMaxout => cifar_maxout(),
        }
    }
}

/// VGG16's classifier: fc6, fc7 (each a relu, dropout and, with `maxout`, 1024 maxout units of
/// k=4 over the rectified pieces), fc8.
fn vgg16_head(maxout_units: bool) -> Vec<LayerSpec> {
    let mut head = Vec::new();
    for fc in ["fc6", "fc7"] {
        head.extend([
            dense(fc, 4096),
            LayerSpec::Relu(Relu {}),
            LayerSpec::Dropout(Dropout { p: 0.5 }),
        ]);
        if maxout_units {
            head.push(maxout(1024, 4));
        }
    }
    head.push(dense("fc8", 1000));
    head
}

/// See [`Preset::CifarMaxout`].
fn cifar_maxout() -> ArchSpec {
    let mut layers = Vec::new();
    for (i, filters) in [96, 192, 384].into_iter().enumerate() {
        layers.extend([
            conv(&format!("conv{}", i + 1), filters, 3, 1),
            LayerSpec::batch_norm(&format!("bn{}", i + 1)),
            LayerSpec::Relu(Relu {}),
            maxout(filters / 2, 2),
            POOL2,
        ]);
    }
    layers.extend([LayerSpec::global_avg_pool(), dense("fc", 10)]);
    ArchSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: "cifar-maxout".into(),
        input: InputShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        layers,
        init: Init::He,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::Kind;

    #[test]
    fn parameter_counts_match_the_paper_architectures() {
        assert_eq!(Preset::Lenet5.spec().num_params().unwrap(), 431_080);
        assert_eq!(Preset::Lenet5Maxout.spec().num_params().unwrap(), 427_330);
        assert_eq!(Preset::SeedLenet.spec().num_params().unwrap(), 240_470);
        let conv = Preset::Lenet5MaxoutConv.spec();
        assert_eq!(conv.num_params().unwrap(), 452_900);
        assert_eq!(conv.maxout_layers().len(), 3);
        assert!(conv.maxout_layers().into_iter().all(|m| conv.rectified_pieces(m)));
        assert_eq!(Preset::Vgg16.spec().num_params().unwrap(), 138_357_544);
        assert!(Preset::Vgg16Maxout.spec().validate().is_ok());
        // torchvision's vgg16_bn: batch norm weights and biases count, running statistics don't.
        assert_eq!(Preset::Vgg16Bn.spec().num_params().unwrap(), 138_365_992);
        assert!(Preset::Vgg16MaxoutBn.spec().validate().is_ok());
        let cifar = Preset::CifarMaxout.spec();
        assert_eq!(
            (cifar.num_params().unwrap(), cifar.flops().unwrap()),
            (421_258, 90_590_976)
        );
        assert_eq!(cifar.maxout_layers().len(), 3);
        assert!(cifar.maxout_layers().iter().all(|&m| cifar.rectified_pieces(m)));
    }

    #[test]
    fn scaled_vgg16_maxout() {
        let input = InputShape {
            channels: 3,
            height: 32,
            width: 32,
        };
        let s = Preset::Vgg16Maxout.spec().scaled(0.125, input, 10).unwrap();
        // Convs 8, 8 | 16, 16 | 32 x3 | 64 x3 | 64 x3 (3x3, padded), a 64-feature flatten after
        // five pools, fc6 64 -> 512 pieces = 128 units x 4, fc7 128 -> 512, fc8 128 -> 10.
        let convs = [
            (3, 8),
            (8, 8),
            (8, 16),
            (16, 16),
            (16, 32),
            (32, 32),
            (32, 32),
            (32, 64),
        ]
        .into_iter()
        .chain([(64, 64); 5])
        .map(|(i, o)| i * o * 9 + o)
        .sum::<usize>();
        let dense = (64 * 512 + 512) + (128 * 512 + 512) + (128 * 10 + 10);
        assert_eq!(s.num_params().unwrap(), convs + dense);
        assert_eq!(s.maxout_layers().len(), 2);
        for m in s.maxout_layers() {
            assert!(matches!(
                s.layers[m],
                LayerSpec::Maxout(Maxout {
                    pieces: Pieces::Uniform { units: 128, k: 4 }
                })
            ));
        }
        let lenet = Preset::Lenet5Maxout.spec();
        assert_eq!(lenet.scaled(1.0, lenet.input, 10).unwrap(), lenet);
        assert!(lenet.scaled(0.0, lenet.input, 10).is_err());
    }

    #[test]
    fn embedding_depths() {
        let s = Preset::Lenet5Maxout.spec();
        let fc2 = s.layers.iter().position(|l| l.name() == Some("fc2")).unwrap();
        assert_eq!(s.embedding_depth(None).unwrap(), fc2);
        assert_eq!(s.embedding_depth(Some("fc1")).unwrap(), fc2);
        assert_eq!(s.embedding_depth(Some("conv2")).unwrap(), 3);
        assert!(
            s.embedding_depth(Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("conv1, conv2, fc1, fc2")
        );
    }

    #[test]
    fn experiment_specs_are_lenet5_maxout_variants() {
        // The README's variant experiments read these files: each must still parse and differ
        // from lenet5-maxout only as its name says.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let load = |name: &str| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            ArchSpec::from_json(&text, name).unwrap()
        };
        // The linear variant is the preset less the relu on the pieces; the other variants
        // were made from the linear network.
        let rectified = Preset::Lenet5Maxout.spec();
        let base = load("lenet5-maxout-linear.json");
        let m = rectified.maxout_layers()[0];
        assert!(rectified.rectified_pieces(m) && !base.rectified_pieces(m));
        let mut unrectified = rectified.layers.clone();
        unrectified.remove(unrectified.iter().position(|l| *l == LayerSpec::Relu(Relu {})).unwrap());
        assert_eq!(unrectified, base.layers);
        assert_eq!(base.num_params().unwrap(), 427_330);
        let relu = load("lenet5-maxout-conv-relu.json");
        assert_eq!(relu.num_params().unwrap(), base.num_params().unwrap());
        let without_relu: Vec<_> = relu
            .layers
            .iter()
            .filter(|l| **l != LayerSpec::Relu(Relu {}))
            .cloned()
            .collect();
        assert_eq!(without_relu, base.layers);
        for (i, layer) in relu.layers.iter().enumerate() {
            let conv = matches!(layer, LayerSpec::Conv2d(Conv2d { .. }));
            assert_eq!(
                conv,
                relu.layers.get(i + 1) == Some(&LayerSpec::Relu(Relu {})),
                "layer {i}"
            );
        }
        let k1 = load("lenet5-maxout-k1.json");
        assert_eq!(k1.num_params().unwrap(), 126_955);
        for name in ["lenet5-maxout-dropout-after.json", "lenet5-maxout-no-dropout.json"] {
            assert_eq!(load(name).num_params().unwrap(), base.num_params().unwrap(), "{name}");
        }
    }

    #[test]
    fn lenet_flops() {
        // conv1 20*25*24*24, conv2 50*20*25*8*8, fc1 800*500, fc2 500*10 multiply-accumulates.
        let macs = 20 * 25 * 576 + 50 * 500 * 64 + 800 * 500 + 500 * 10;
        assert_eq!(Preset::Lenet5.spec().flops().unwrap(), 2 * macs);
    }
}
