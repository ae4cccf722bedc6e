#!/bin/sh
# Where should dropout sit in lenet5-maxout for neuron pruning? Trains each variant (validation
# split of 5,000, seed 1, one thread each, two at a time) and runs the paper's schedule on it;
# compare the schedules' report.md (decisions on validation accuracy only).
#   cargo build --release && sh experiments/dropout_placement.sh
set -e
BIN=${MAXPRUNE_BIN:-target/release/maxprune}
for v in dropout-after no-dropout; do
  (
    $BIN -q --threads 1 train --spec experiments/lenet5-maxout-$v.json --dataset fashion-mnist \
      --epochs 10 --seed 1 --val 5000 --out runs/variant-$v
    $BIN --threads 1 relevance runs/variant-$v --out runs/variant-$v/relevance.json
    $BIN -q --threads 1 prune neurons runs/variant-$v --out runs/variant-$v-prune --until-k 1 \
      --retrain-epochs 5 --tolerance 0.3 --val 5000
  ) &
done
wait
