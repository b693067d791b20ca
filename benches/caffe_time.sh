#!/usr/bin/env bash
# `caffe time` on the nets BVLC Caffe was timed on (../shared/caffe-ref/timing or
# benches/nets), ROUNDS interleaved rounds, median Average Forward-Backward per net.
# Usage: benches/caffe_time.sh [ROUNDS]   (run on an otherwise idle machine)
# BASE=path/to/previous/caffe adds that binary, interleaved with CAFFE in every
# round, and the ratio of the medians; BASE_ENV="VAR=value ..." sets the
# environment of the BASE runs only (e.g. BASE=$CAFFE
# BASE_ENV=CAFFE_TCH_CPU_ALLOCATOR=system weighs the allocator alone).
set -euo pipefail
cd "$(dirname "$0")/.."
CAFFE=${CAFFE:-target/release/caffe}
ROUNDS=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The LeNet timing nets read lmdb/fmnist_{train,test}_lmdb (Fashion-MNIST, as Caffe's run did).
[ -d data/mnist/train_lmdb ] || "$CAFFE" data mnist data/mnist >/dev/null 2>&1
mkdir -p "$work/lmdb"
ln -s "$PWD/data/mnist/train_lmdb" "$work/lmdb/fmnist_train_lmdb"
ln -s "$PWD/data/mnist/test_lmdb" "$work/lmdb/fmnist_test_lmdb"
nets=(
  "LeNet|lenet_train_test.prototxt|100|TRAIN"
  "LeNet(10)|lenet10_train_test.prototxt|50|TRAIN"
  "cifar10_quick|cifar10_quick_train_test_input.prototxt|30|TRAIN"
  "cifar10_full|cifar10_full_train_test_input.prototxt|30|TRAIN"
  "CaffeNet fb|bvlc_reference_caffenet_deploy_fb.prototxt|10|TEST"
  "GoogLeNet fb|bvlc_googlenet_deploy_fb.prototxt|5|TEST"
  "VGG16 fb|vgg16_deploy_b2_fb.prototxt|5|TEST"
)
for f in lenet_train_test.prototxt lenet10_train_test.prototxt; do
  cp "benches/nets/timing_$f" "$work/$f"
done
for n in "${nets[@]}"; do
  IFS='|' read -r _ file _ _ <<<"$n"
  [ -f "$work/$file" ] || cp "benches/nets/$file" "$work/$file"
done
caffe=$(realpath "$CAFFE")
base=""
[ -z "${BASE:-}" ] || base=$(realpath "$BASE")
step_ms() { # binary, file, iterations, phase, env...
  local bin=$1 file=$2 iters=$3 phase=$4
  shift 4
  (cd "$work" && env "$@" "$bin" time -model "$file" -iterations "$iters" -phase "$phase" 2>&1 |
    sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p')
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A results base_results
for ((r = 1; r <= ROUNDS; r++)); do
  for n in "${nets[@]}"; do
    IFS='|' read -r name file iters phase <<<"$n"
    results[$name]="${results[$name]:-} $(step_ms "$caffe" "$file" "$iters" "$phase")"
    if [ -n "$base" ]; then
      # shellcheck disable=SC2086
      base_results[$name]="${base_results[$name]:-} $(step_ms "$base" "$file" "$iters" "$phase" ${BASE_ENV:-})"
    fi
  done
done
if [ -z "$base" ]; then
  echo "| net | caffe time forward+backward, ms (median of $ROUNDS) | runs |"
  echo "|---|---|---|"
else
  echo "| net | caffe time forward+backward, ms (median of $ROUNDS) | runs | BASE, ms | BASE runs | CAFFE / BASE |"
  echo "|---|---|---|---|---|---|"
fi
for n in "${nets[@]}"; do
  IFS='|' read -r name _ _ _ <<<"$n"
  med=$(echo ${results[$name]} | median)
  if [ -z "$base" ]; then
    echo "| $name | $med | ${results[$name]} |"
  else
    bmed=$(echo ${base_results[$name]} | median)
    echo "| $name | $med | ${results[$name]} | $bmed | ${base_results[$name]} | $(awk -v a="$med" -v b="$bmed" 'BEGIN {printf "%.3f", a / b}') |"
  fi
done
