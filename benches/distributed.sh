#!/usr/bin/env bash
# Data-parallel speed on this machine: 2 ranks × 1 thread (`caffe train -ranks
# 2`, Gloo over loopback) against 1 rank × 2 threads, at the same global
# batch; whole `caffe train` runs, ROUNDS interleaved rounds, the median of
# each figure. Per net and set-up: wall seconds of the run, iterations/s in
# the training loop (from the first to the last display line, so start-up is
# left out), and rank 0's all-reduce time a step ("All-reduce:" line).
#
#   LeNet          global batch 64 on the repo's 2,000-image Fashion-MNIST LMDB
#   cifar10_quick  global batch 100 on DummyData (Gaussian images: no CIFAR-10 here)
#   reduce only    LeNet's gradient size (431k floats) in one InnerProduct on a
#                  1-sample DummyData input: next to no compute, so its all-reduce
#                  time is what moving the gradients costs when the ranks are in
#                  step; the rest of LeNet's all-reduce time is waiting for the
#                  slower rank. It bounds what overlapping the reduction with
#                  backward (Caffe's layer_wise_reduce) could save.
#
# Usage: benches/distributed.sh [ROUNDS]   (on an otherwise idle machine: it
# prints the load average before and after; above 0.5 the figures are noisy)
set -euo pipefail
cd "$(dirname "$0")/.."
CAFFE=${CAFFE:-target/release/caffe}
ROUNDS=${1:-3}
[[ -x $CAFFE ]] || { echo "distributed.sh: $CAFFE not built (cargo build --release)" >&2; exit 2; }
FIX=tests/fixtures/caffe-ref
work=$(mktemp -d)
# KEEP_LOGS=1 keeps the runs' logs (their folder is printed).
if [[ ${KEEP_LOGS:-} == 1 ]]; then echo "logs: $work"; else trap 'rm -rf "$work"' EXIT; fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# The nets, at a batch per rank.
lenet() {  # $1: batch
  sed -e "s#source: \"lmdb/fmnist_train_lmdb\"#source: \"$PWD/$FIX/lmdb/fmnist_train2k_lmdb\"#" \
      -e "0,/batch_size: 64/s//batch_size: $1/" "$FIX/fixtures/lenet/sgd20/lenet_train_test.prototxt"
}
dummy() {  # $1: batch, $2: data dims after the batch; a Gaussian data top and a constant label top
  local dims="" d
  for d in $2; do dims+=" dim: $d"; done
  cat <<EOF
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 3 }
    shape { dim: $1$dims } shape { dim: $1 } } }
EOF
}
cifar() {  # $1: batch
  echo 'name: "CIFAR10_quick"'
  dummy "$1" "3 32 32"
  # The Input net's layers after its Input layer.
  awk '/^layer \{/ { n++ } n >= 2 { print }' benches/nets/cifar10_quick_train_test_input.prototxt
}
reduce_only() {  # $1: batch (1 per rank)
  echo 'name: "reduce_only"'
  dummy "$1" "1000"
  echo 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 431 weight_filler { type: "xavier" } } }'
  echo 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }'
}
solver() {  # $1: net file, $2: iterations, $3: display
  printf 'net: "%s"\nbase_lr: 0.001\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "fixed"\n' "$1"
  printf 'max_iter: %s\ndisplay: %s\nsnapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\n' "$2" "$3"
}
# name|net function|global batch|iterations|display
nets=("LeNet|lenet|64|300|50" "cifar10_quick|cifar|100|60|10" "reduce only|reduce_only|2|300|50")
for n in "${nets[@]}"; do
  IFS='|' read -r name fn batch iters display <<<"$n"
  "$fn" "$batch" > "$work/$fn.1.prototxt"
  "$fn" $((batch / 2)) > "$work/$fn.2.prototxt"
  solver "$work/$fn.1.prototxt" "$iters" "$display" > "$work/$fn.1.solver"
  solver "$work/$fn.2.prototxt" "$iters" "$display" > "$work/$fn.2.solver"
done

# Seconds from the first to the last display line, and the iterations between.
loop_rate() {
  awk '/\] Iteration [0-9]+ \(/ {
         split($2, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]
         it = $0; sub(/.*\] Iteration /, "", it); sub(/ .*/, "", it)
         if (first == "") { first = s; i0 = it } last = s; i1 = it }
       END { if (last > first) printf "%.2f", (i1 - i0) / (last - first); else print "n/a" }' "$1"
}
reduce_ms() { sed -n 's/.*All-reduce: .* (\([0-9.e-]*\) ms each).*/\1/p' "$1" | tail -n 1; }
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : "n/a") }'; }

declare -A wall rate red
for ((r = 1; r <= ROUNDS; r++)); do
  for n in "${nets[@]}"; do
    IFS='|' read -r name fn _ _ _ <<<"$n"
    for setup in "1x2" "2x1"; do
      log=$work/$fn.$setup.$r.log
      start=$(date +%s.%N)
      if [[ $setup == 1x2 ]]; then
        OMP_NUM_THREADS=2 "$CAFFE" train -solver "$work/$fn.1.solver" > "$log" 2>&1
      else
        env -u OMP_NUM_THREADS "$CAFFE" train -solver "$work/$fn.2.solver" -ranks 2 > "$log" 2>&1
      fi
      end=$(date +%s.%N)
      k="$name|$setup"
      wall[$k]+=" $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
      rate[$k]+=" $(loop_rate "$log")"
      red[$k]+=" $(reduce_ms "$log")"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| net | set-up | wall s | iterations/s in the loop | all-reduce ms a step |"
echo "|---|---|---|---|---|"
for n in "${nets[@]}"; do
  IFS='|' read -r name _ batch iters _ <<<"$n"
  for setup in "1x2" "2x1"; do
    k="$name|$setup"
    label=$([[ $setup == 1x2 ]] && echo "1 rank × 2 threads" || echo "2 ranks × 1 thread")
    r=$(echo "${red[$k]}" | median)
    [[ $setup == 1x2 ]] && r="—"
    echo "| $name ($iters its, batch $batch) | $label | $(printf %.2f "$(echo "${wall[$k]}" | median)") | $(echo "${rate[$k]}" | median) | $r |"
  done
done
