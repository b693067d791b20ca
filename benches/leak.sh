#!/usr/bin/env bash
# Leak check: Caffe's LeNet recipe (solvers/lenet_solver.prototxt: 10,000
# iterations, a test pass of 100 batches every 500) through `caffe train`, its
# resident memory sampled every second. After the first test pass every
# allocation the run makes has been made once, so RSS must stay flat from
# there; the table gives RSS at each test pass and the growth after the first.
# Usage: benches/leak.sh [MAX_ITER]       (memory does not need an idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
CAFFE=${CAFFE:-target/release/caffe}
MAX_ITER=${1:-10000}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
[ -d data/mnist/train_lmdb ] || "$CAFFE" data mnist data/mnist >/dev/null 2>&1
sed -e "s|^max_iter: .*|max_iter: $MAX_ITER|" -e 's|^snapshot: .*|snapshot: 0|' \
  -e "s|^snapshot_prefix: .*|snapshot_prefix: \"$work/lenet\"|" solvers/lenet_solver.prototxt >"$work/solver.prototxt"
GLOG_logtostderr=1 "$CAFFE" train -solver "$work/solver.prototxt" 2>"$work/log" &
pid=$!
: >"$work/samples"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  iter=$(grep -o 'Iteration [0-9]*' "$work/log" | tail -1 | awk '{print $2}' || true)
  [ -z "$rss" ] || echo "${iter:-0} $rss" >>"$work/samples"
  sleep 1
done
wait "$pid" || { tail -5 "$work/log"; exit 1; }
# RSS at the end of each test pass: the last sample before the next iteration's line.
echo "| after test pass at iteration | RSS, MiB |"
echo "|---|---|"
{ grep -o 'Iteration [0-9]*, Testing net' "$work/log" || true; } | awk '{print $2}' | tr -d , | while read -r it; do
  awk -v it="$it" '$1 >= it && $1 < it + 500 {r = $2} END {if (r) printf "| %d | %.1f |\n", it, r / 1024}' "$work/samples"
done
awk '
  $1 >= 500 && $1 < 1000 {base = $2}
  $1 >= 1000 && $2 > max {max = $2}
  {last = $2}
  END {printf "\nRSS after the first test pass (iteration 500) %.1f MiB; highest from iteration 1000 on %.1f MiB (%+.1f); at the end %.1f MiB; %d samples\n",
       base / 1024, max / 1024, (max - base) / 1024, last / 1024, NR}' "$work/samples"
