#!/usr/bin/env bash
# The GPU check: Caffe parity fixtures on CUDA (tolerance 1e-3, TF32 off), every
# layer type on CUDA against the CPU (tests/layers_devices.rs, 1e-4), NCCL
# (a group of one on cuda:0 in the test binary; `caffe train -gpu 0` as rank 0
# of an NCCL group of one against the plain single-device run), and
# `caffe time -gpu 0` (with and without -cuda_graph) for LeNet, CaffeNet and GoogLeNet, written as markdown to
# OUT_DIR/gpu_check.md (OUT_DIR: first argument, else $OUT, else gpu-check/).
#
#   scripts/gpu_check.sh [OUT_DIR]
#
# Needs an NVIDIA GPU, and target/release/caffe plus the test binary (the
# `suite` target: tests/suite.rs) built against a CUDA libtorch (`make build`,
# then `cargo test --release --no-run`). Where cargo is missing (a bare GPU
# machine), the prebuilt suite binary in target/release/deps is run directly.
# Either way only the parity::, parity_nets::, layers_devices::, cuda_graph::
# (LeNet trained with and without -cuda_graph) and
# distributed::nccl_group_needs_a_gpu tests run.
# scripts/gpu_device_run.sh sets CAFFE, PARITY_BIN_DIR (the prebuilt suite
# binary's folder) and GPU_CHECK_BUILD (what was built) for a bundle made by
# scripts/gpu_bundle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu-check}}
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/gpu_check.md"
CAFFE=${CAFFE:-target/release/caffe}
[[ -x $CAFFE ]] || { echo "gpu_check: $CAFFE not built" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: not a GPU machine" >&2; exit 2; }

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
{
  echo "# GPU check: $gpu"
  echo
  echo "Build: ${GPU_CHECK_BUILD:-commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)}; run $(date -u +%Y-%m-%dT%H:%MZ)."
  echo
  echo '```'
  "$CAFFE" device_query -gpu 0 2>&1 | sed 's/^.*\] //'
  echo '```'
} > "$REPORT"

# 1. Parity on CUDA: every blob and gradient of the reference nets, and every
# layer type against the CPU (tests/layers_devices.rs): the parity::,
# parity_nets:: and layers_devices:: tests of the suite binary.
GPU_TESTS=(parity:: parity_nets:: layers_devices:: distributed::nccl_group_needs_a_gpu cuda_graph::)
echo "## Parity on CUDA (reference nets against Caffe: max |Δ| ≤ 1e-3·(1 + max|ref|); every layer type against the CPU: 1e-4)" >> "$REPORT"
echo >> "$REPORT"
parity_rc=0
if [[ -z ${PARITY_BIN_DIR:-} ]] && command -v cargo >/dev/null; then
  CAFFE_TCH_TEST_DEVICE=cuda cargo test --release --test suite -- --nocapture "${GPU_TESTS[@]}" \
    > "$OUT_DIR/parity.log" 2>&1 || parity_rc=$?
else
  : > "$OUT_DIR/parity.log"
  bin=$(ls -t "${PARITY_BIN_DIR:-target/release/deps}"/suite-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
  if [[ -n $bin ]]; then
    CAFFE_TCH_TEST_DEVICE=cuda "$bin" --nocapture "${GPU_TESTS[@]}" >> "$OUT_DIR/parity.log" 2>&1 || parity_rc=$?
  else
    echo "no prebuilt suite test binary" >> "$OUT_DIR/parity.log"
    parity_rc=1
  fi
fi
{
  echo '```'
  grep -E '^test |test result|tensors, max|cases, |panicked' "$OUT_DIR/parity.log" || true
  echo '```'
  echo
  [[ $parity_rc == 0 ]] && echo "Parity: **pass**." || echo "Parity: **FAIL** (exit $parity_rc; parity.log)."
  echo
} >> "$REPORT"

# 2. NCCL: 20 LeNet SGD steps from Caffe's weights on cuda:0, once on its own
# and once as rank 0 of an NCCL group of one (a launcher's environment, as
# torchrun sets it): the same losses (relative 1e-5, as the CPU tests hold
# 2 ranks over Gloo to; cuDNN's backward may add its own non-determinism).
# Two ranks on one GPU need NCCL >= 2.30 with NCCL_MULTI_RANK_GPU_ENABLE=1;
# they are run only where the NCCL that torch loads is that new.
echo "## NCCL (caffe train -gpu 0 as rank 0 of a group of one, against the single-device run)" >> "$REPORT"
echo >> "$REPORT"
nccl_rc=0
FIX=tests/fixtures/caffe-ref
if [[ -f $FIX/fixtures/lenet/sgd20/lenet_train_test.prototxt && -d $FIX/lmdb/fmnist_train2k_lmdb ]]; then
  N=$(mktemp -d)
  sed -e "s#source: \"lmdb/fmnist_train_lmdb\"#source: \"$PWD/$FIX/lmdb/fmnist_train2k_lmdb\"#" \
    "$FIX/fixtures/lenet/sgd20/lenet_train_test.prototxt" > "$N/net.prototxt"
  solver() {
    printf 'net: "%s"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "inv"\ngamma: 0.0001\npower: 0.75\n' "$N/net.prototxt"
    printf 'max_iter: 20\ndisplay: 1\nsolver_mode: GPU\nsnapshot_prefix: "%s/%s"\n' "$N" "$1"
  }
  solver alone > "$N/alone.prototxt"
  solver nccl > "$N/nccl.prototxt"
  W=$FIX/fixtures/lenet/weights.caffemodel
  timeout 120 "$CAFFE" train -solver "$N/alone.prototxt" -weights "$W" -gpu 0 > "$OUT_DIR/nccl_alone.log" 2>&1 || nccl_rc=$?
  WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=${NCCL_CHECK_PORT:-29531} \
    timeout 120 "$CAFFE" train -solver "$N/nccl.prototxt" -weights "$W" -gpu 0 > "$OUT_DIR/nccl_rank0.log" 2>&1 || nccl_rc=$?
  losses() { sed -n 's/.*\] Iteration \([0-9]*\) (.*loss = \(.*\)$/\1 \2/p' "$1"; }
  gap=$(paste <(losses "$OUT_DIR/nccl_alone.log") <(losses "$OUT_DIR/nccl_rank0.log") \
    | awk 'BEGIN { m = 0; n = 0 } { n++; d = ($2 - $4) / $2; if (d < 0) d = -d; if (d > m) m = d } END { printf "%d %.3g", n, m }')
  read -r steps worst <<< "$gap"
  {
    echo '```'
    { grep -hE 'Data-parallel over|All-reduce:|caffe: error' "$OUT_DIR/nccl_rank0.log" || true; } | sed 's/^.*\] //'
    echo "single-device run and NCCL rank 0: $steps logged losses each, max relative gap $worst"
    echo '```'
  } >> "$REPORT"
  if [[ $nccl_rc != 0 || $steps != 20 ]] || ! grep -q 'Data-parallel over 1 ranks (NCCL)' "$OUT_DIR/nccl_rank0.log" \
     || awk -v w="$worst" 'BEGIN { exit !(w > 1e-5) }'; then
    [[ $nccl_rc == 0 ]] && nccl_rc=1
    echo "NCCL: **FAIL** (nccl_alone.log, nccl_rank0.log)." >> "$REPORT"
  else
    echo "NCCL: **pass**." >> "$REPORT"
  fi
  nccl_version=$(python3 -c 'import torch; print(".".join(map(str, torch.cuda.nccl.version())))' 2>/dev/null || echo unknown)
  echo >> "$REPORT"
  if [[ $nccl_version != unknown ]] && printf '2.30\n%s\n' "$nccl_version" | sort -V -C; then
    NCCL_MULTI_RANK_GPU_ENABLE=1 timeout 180 "$CAFFE" train -solver "$N/nccl.prototxt" -weights "$W" -gpu 0,0 \
      > "$OUT_DIR/nccl_two_ranks_one_gpu.log" 2>&1 && r=pass || r="FAIL (exit $?)"
    echo "Two ranks on one GPU (-gpu 0,0, NCCL $nccl_version): $r; nccl_two_ranks_one_gpu.log." >> "$REPORT"
  else
    echo "Two ranks on one GPU: not run (NCCL $nccl_version; it needs 2.30 or later)." >> "$REPORT"
  fi
  rm -rf "$N"
else
  echo "NCCL: not run (no $FIX LeNet fixtures here)." >> "$REPORT"
fi
echo >> "$REPORT"

# 3. caffe time on the GPU, median of 3 rounds, beside the CPU.
echo "## caffe time -gpu 0 (forward+backward ms, median of 3)" >> "$REPORT"
echo >> "$REPORT"
echo "| net | GPU ms | GPU ms, -cuda_graph | CPU ms (this machine) |" >> "$REPORT"
echo "|---|---|---|---|" >> "$REPORT"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "n/a")}'; }
avg_fb() { "$CAFFE" time "$@" 2>&1 | sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p'; }
for n in "LeNet (64)|benches/nets/lenet_input.prototxt|100|TRAIN" \
         "CaffeNet fb (10)|benches/nets/bvlc_reference_caffenet_deploy_fb.prototxt|20|TEST" \
         "GoogLeNet fb (10)|benches/nets/bvlc_googlenet_deploy_fb.prototxt|10|TEST"; do
  IFS='|' read -r name model iters phase <<< "$n"
  gpu_ms="" graph_ms="" cpu_ms=""
  for _ in 1 2 3; do
    gpu_ms+=" $(avg_fb -model "$model" -iterations "$iters" -phase "$phase" -gpu 0)"
    graph_ms+=" $(avg_fb -model "$model" -iterations "$iters" -phase "$phase" -gpu 0 -cuda_graph)"
    cpu_ms+=" $(avg_fb -model "$model" -iterations 3 -phase "$phase")"
  done
  echo "| $name | $(echo "$gpu_ms" | median) | $(echo "$graph_ms" | median) | $(echo "$cpu_ms" | median) |" >> "$REPORT"
done
cat "$REPORT"
[[ $parity_rc != 0 ]] && exit "$parity_rc"
exit "$nccl_rc"
