#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time -f %M) of `caffe time -iterations 2` beside
# BVLC Caffe's figures for the same runs (../shared/caffe-ref/README), and the
# start-up of `caffe --version`. PRELOADS="lib1.so lib2.so" adds one row per
# net with that allocator preloaded (e.g. jemalloc), to weigh allocator
# policies against each other; speed is benches/caffe_time.sh's business.
# Usage: benches/memory.sh            (memory does not need an idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
CAFFE=${CAFFE:-target/release/caffe}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d data/mnist/train_lmdb ] || "$CAFFE" data mnist data/mnist >/dev/null 2>&1
mkdir -p "$work/lmdb"
ln -s "$PWD/data/mnist/train_lmdb" "$work/lmdb/fmnist_train_lmdb"
ln -s "$PWD/data/mnist/test_lmdb" "$work/lmdb/fmnist_test_lmdb"
cp benches/nets/timing_lenet_train_test.prototxt "$work/lenet_train_test.prototxt"
cp benches/nets/bvlc_reference_caffenet_deploy_fb.prototxt benches/nets/bvlc_googlenet_deploy_fb.prototxt "$work/"
# name | prototxt | BVLC Caffe's peak, MiB
nets=(
  "LeNet|lenet_train_test.prototxt|38"
  "CaffeNet fb|bvlc_reference_caffenet_deploy_fb.prototxt|592"
  "GoogLeNet fb|bvlc_googlenet_deploy_fb.prototxt|870"
)
caffe=$(realpath "$CAFFE")
peak() { # preload, args...
  local pre=$1
  shift
  (cd "$work" && LD_PRELOAD=$pre /usr/bin/time -f %M -o "$work/rss" "$caffe" "$@" >/dev/null 2>&1)
  echo $(($(tail -1 "$work/rss") / 1024))
}
echo "| run | allocator | caffe-tch peak RSS, MiB | BVLC Caffe, MiB | ratio |"
echo "|---|---|---|---|---|"
for n in "${nets[@]}"; do
  IFS='|' read -r name file ref <<<"$n"
  for pre in "" ${PRELOADS:-}; do
    m=$(peak "$pre" time -model "$file" -iterations 2)
    alloc=glibc
    [ -z "$pre" ] || alloc=$(basename "$pre")
    echo "| $name, caffe time -iterations 2 | $alloc | $m | $ref | $(awk -v a="$m" -v b="$ref" 'BEGIN {printf "%.2f", a / b}') |"
  done
done
best=""
for _ in 1 2 3 4 5; do
  /usr/bin/time -f "%e %M" -o "$work/v" "$caffe" --version >/dev/null
  best="$best$(tail -1 "$work/v")\n"
done
printf "$best" | sort -n | head -1 | awk '{printf "| caffe --version | glibc | %d | | | (fastest of 5: %s s) |\n", $2 / 1024, $1}'
