#!/usr/bin/env bash
# `caffe time` on the nets BVLC Caffe was timed on (../shared/caffe-ref/timing or
# benches/nets), ROUNDS interleaved rounds, median Average Forward-Backward per net.
# Usage: benches/caffe_time.sh [ROUNDS]   (run on an otherwise idle machine)
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
declare -A results
for ((r = 1; r <= ROUNDS; r++)); do
  for n in "${nets[@]}"; do
    IFS='|' read -r name file iters phase <<<"$n"
    ms=$(cd "$work" && "$OLDPWD/$CAFFE" time -model "$file" -iterations "$iters" -phase "$phase" 2>&1 |
      sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p')
    results[$name]="${results[$name]:-} $ms"
  done
done
echo "| net | caffe time forward+backward, ms (median of $ROUNDS) | runs |"
echo "|---|---|---|"
for n in "${nets[@]}"; do
  IFS='|' read -r name _ _ _ <<<"$n"
  med=$(echo ${results[$name]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "| $name | $med | ${results[$name]} |"
done
