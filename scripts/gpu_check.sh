#!/usr/bin/env bash
# The GPU check: Caffe parity fixtures on CUDA (tolerance 1e-3, TF32 off), every
# layer type on CUDA against the CPU (tests/layers_devices.rs, 1e-4), and
# `caffe time -gpu 0` for LeNet, CaffeNet and GoogLeNet, written as markdown to
# OUT_DIR/gpu_check.md (OUT_DIR: first argument, else $OUT, else gpu-check/).
#
#   scripts/gpu_check.sh [OUT_DIR]
#
# Needs an NVIDIA GPU, and target/release/caffe plus the test binary (the
# `suite` target: tests/suite.rs) built against a CUDA libtorch (`make build`,
# then `cargo test --release --no-run`). Where cargo is missing (a bare GPU
# machine), the prebuilt suite binary in target/release/deps is run directly.
# Either way only the parity::, parity_nets:: and layers_devices:: tests run.
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
GPU_TESTS=(parity:: parity_nets:: layers_devices::)
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

# 2. caffe time on the GPU, median of 3 rounds, beside the CPU.
echo "## caffe time -gpu 0 (forward+backward ms, median of 3)" >> "$REPORT"
echo >> "$REPORT"
echo "| net | GPU ms | CPU ms (this machine) |" >> "$REPORT"
echo "|---|---|---|" >> "$REPORT"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "n/a")}'; }
avg_fb() { "$CAFFE" time "$@" 2>&1 | sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p'; }
for n in "LeNet (64)|benches/nets/lenet_input.prototxt|100|TRAIN" \
         "CaffeNet fb (10)|benches/nets/bvlc_reference_caffenet_deploy_fb.prototxt|20|TEST" \
         "GoogLeNet fb (10)|benches/nets/bvlc_googlenet_deploy_fb.prototxt|10|TEST"; do
  IFS='|' read -r name model iters phase <<< "$n"
  gpu_ms="" cpu_ms=""
  for _ in 1 2 3; do
    gpu_ms+=" $(avg_fb -model "$model" -iterations "$iters" -phase "$phase" -gpu 0)"
    cpu_ms+=" $(avg_fb -model "$model" -iterations 3 -phase "$phase")"
  done
  echo "| $name | $(echo "$gpu_ms" | median) | $(echo "$cpu_ms" | median) |" >> "$REPORT"
done
cat "$REPORT"
exit "$parity_rc"
