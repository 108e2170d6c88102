#!/usr/bin/env bash
# The full benchmark runs whose results are committed under benchmarks/results/.
# Reference codecs run in 2 worker processes, vqzip with 2 torch threads: run this on an otherwise
# idle machine (timings are wall clock; results.json records the 1-minute load average at start).
# Budget: the full CIFAR-10 test set (10,000 images) in under 20 minutes on 2 CPU cores.
#
#   VQZIP_DATA=/path/to/data bash benchmarks/run_bench.sh          # both runs
#   VQZIP_DATA=/path/to/data bash benchmarks/run_bench.sh cifar10  # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
export VQZIP_DATA="${VQZIP_DATA:-../shared/data}"   # holds cifar10/ (or cifar-10-batches-bin/) and kodak/
PY="${PYTHON:-python}"

run() {  # run NAME: every installed vqzip model, png, jpeg (4:2:0 and 4:4:4), webp, avif, jxl
  local name=$1
  echo "== vqzip bench $name -> benchmarks/results/$name"
  time "$PY" -m vqzip bench "$name" --out "benchmarks/results/$name"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cifar10 kodak)
for t in "${targets[@]}"; do run "$t"; done
