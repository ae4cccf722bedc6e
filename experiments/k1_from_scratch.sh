#!/bin/sh
# Is the accuracy lost at the schedule's last step (k=2 -> 1) the pruning's or the architecture's?
# At k=1 every maxout unit is the identity, and lenet5-maxout (Caffe's LeNet: no ReLU on the
# conv layers) has no nonlinearity left after conv2's pooling. This trains that k=1 network
# from scratch (fc1 125 -> dropout -> maxout 125 x 1 -> fc2; seed 1, 10 epochs, 5,000
# validation examples, the default recipe) to compare its validation accuracy with the pruned
# one's (`runs/prune-argmax/step-03` of the README's neuron-pruning table).
#   cargo build --release && sh experiments/k1_from_scratch.sh
set -e
BIN=${MAXPRUNE_BIN:-target/release/maxprune}
$BIN -q --threads 1 train --spec experiments/lenet5-maxout-k1.json --dataset fashion-mnist \
  --epochs 10 --seed 1 --val 5000 --out runs/variant-k1-scratch
$BIN eval runs/variant-k1-scratch
