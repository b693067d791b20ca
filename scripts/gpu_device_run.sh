#!/usr/bin/env bash
# Runs a bundle made by scripts/gpu_bundle.sh on a GPU machine that has
# PyTorch (the version the bundle was built against) but no Rust:
# scripts/gpu_check.sh (parity on CUDA, NCCL with one rank against the
# single-device run, `caffe time` for LeNet, CaffeNet and GoogLeNet), `caffe
# time -gpu 0` for four more nets, and a 3,000-iteration LeNet training on the
# GPU. Everything goes to OUT_DIR (run.log, gpu_check.md, parity.log,
# nccl_*.log, train_lenet.log).
#
# A bundle made with DROPIN=1 (it carries Fashion-MNIST) then runs the DropIn
# configs in DROPIN_CONFIGS (default: plain LeNet(50) with gaussian convs, whose
# subnormal activations slow some CPUs down, about a day per seed on an Intel
# host; its CPU runs are in RESULTS.md, so on the GPU it is a check against
# them), seeds DROPIN_SEEDS (default "1 2"),
# through experiments/dropin/run.sh --gpu 0; the logs go to OUT_DIR/dropin/logs,
# named *_gpu_seed<N>.log, to be copied into docs/results/logs.
#
#   bash scripts/gpu_device_run.sh [BUNDLE_DIR] [OUT_DIR]
#
# BUNDLE_DIR defaults to .gpu; OUT_DIR to $OUT, else gpu-check/.
# STEP_VS_EAGER=1 runs only benches/step_vs_eager.sh (caffe-tch's forward +
# backward beside PyTorch eager's, with and without a CUDA graph, four nets at
# two batch sizes) into OUT_DIR/step_vs_eager.md, as a separate command.
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-.gpu}
OUT_DIR=${2:-${OUT:-gpu-check}}
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/run.log") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
U=$(mktemp -d)
tar -xJf "$BUNDLE/bundle.tar.xz" -C "$U" || { echo "gpu_device_run: cannot unpack $BUNDLE/bundle.tar.xz"; exit 3; }
echo "bundle: $(cat "$U/build")"
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') \
  || { echo "gpu_device_run: python3 has no torch"; exit 3; }
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())'
# The carried libraries stand in only for those this machine lacks.
mkdir -p "$U/extra"
for f in "$U"/libs/*; do
  n=$(basename "$f")
  ldconfig -p | awk '{ print $1 }' | grep -qx "$n" || { ln -s "$f" "$U/extra/$n"; echo "carried library used: $n"; }
done
export LD_LIBRARY_PATH=$TORCH_LIB:$U/extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ldd "$U/caffe" | grep 'not found'; then exit 1; fi
# CUDA is opened on demand (src/util/cuda.rs): device_query says which library it loaded.
"$U/caffe" device_query
if [[ ${STEP_VS_EAGER:-0} == 1 ]]; then
  # A second command of its own (the checks below fill one command's time):
  # #17's training-step table, caffe-tch beside PyTorch eager with and without
  # a CUDA graph.
  echo "## Forward+backward on the GPU: caffe-tch beside PyTorch eager (benches/step_vs_eager.sh)"
  CAFFE=$U/caffe PYTHON=python3 timeout 560 bash benches/step_vs_eager.sh cuda | tee "$OUT_DIR/step_vs_eager.md"
  exit "${PIPESTATUS[0]}"
fi
# The test binary reads its fixtures under the folder it was built in: that
# folder points at this checkout's (tracked) fixtures, which cuda_graph:: needs
# whole (LeNet's solver fixtures and the 2,000-image LMDB), or else holds the
# bundle's copy of the parity fixtures.
MANIFEST_DIR=$(cat "$U/manifest_dir")
if [[ ! -e $MANIFEST_DIR/tests/fixtures ]]; then
  mkdir -p "$MANIFEST_DIR/tests"
  if [[ -d $PWD/tests/fixtures/caffe-ref/fixtures/lenet/sgd20 && -d $PWD/tests/fixtures/caffe-ref/lmdb/fmnist_train2k_lmdb ]]; then
    ln -s "$PWD/tests/fixtures" "$MANIFEST_DIR/tests/fixtures"
  else
    mkdir -p "$MANIFEST_DIR/tests/fixtures/caffe-ref"
    cp -r "$BUNDLE/fixtures" "$MANIFEST_DIR/tests/fixtures/caffe-ref/fixtures"
  fi
fi

CAFFE=$U/caffe PARITY_BIN_DIR=$U GPU_CHECK_BUILD="$(cat "$U/build")" timeout 600 bash scripts/gpu_check.sh "$OUT_DIR"
check_rc=$?
echo "gpu_check exit $check_rc"

echo "## caffe time -gpu 0, one round (forward+backward ms)"
for n in "lenet10_input|20|TRAIN" "cifar10_quick_train_test_input|20|TRAIN" \
         "cifar10_full_train_test_input|20|TRAIN" "vgg16_deploy_b2_fb|10|TEST"; do
  IFS='|' read -r net iters phase <<< "$n"
  echo "$net: $(timeout 120 "$U/caffe" time -model "benches/nets/$net.prototxt" -iterations "$iters" -phase "$phase" -gpu 0 2>&1 \
    | sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p')"
done

echo "## caffe train -gpu 0: LeNet, Caffe's solver, 3,000 iterations on 2,000 Fashion-MNIST images"
sed "s#data/mnist/[a-z]*_lmdb#$U/data/train2k_lmdb#" models/lenet/train_val.prototxt > "$U/lenet.prototxt"
sed -e "s#^net: .*#net: \"$U/lenet.prototxt\"#" -e 's/^test_iter: .*/test_iter: 20/' -e 's/^test_interval: .*/test_interval: 1000/' \
    -e 's/^display: .*/display: 500/' -e 's/^max_iter: .*/max_iter: 3000/' -e '/^snapshot/d' -e 's/^solver_mode: .*/solver_mode: GPU/' \
    solvers/lenet_solver.prototxt > "$U/lenet_solver.prototxt"
printf 'snapshot_after_train: false\nrandom_seed: 1\n' >> "$U/lenet_solver.prototxt"
start=$(date +%s)
timeout 300 "$U/caffe" train -solver "$U/lenet_solver.prototxt" -gpu 0 > "$OUT_DIR/train_lenet.log" 2>&1
echo "exit $?, $(( $(date +%s) - start )) s wall"
grep -E 'Test net output #0|iter/s' "$OUT_DIR/train_lenet.log" | sed 's/.*\] //'
echo "libtorch warnings in the log: $(grep -c '^\[W' "$OUT_DIR/train_lenet.log")"
echo "## the same with -cuda_graph (the training pass recorded once and replayed)"
start=$(date +%s)
timeout 300 "$U/caffe" train -solver "$U/lenet_solver.prototxt" -gpu 0 -cuda_graph > "$OUT_DIR/train_lenet_graph.log" 2>&1
echo "exit $?, $(( $(date +%s) - start )) s wall"
grep -E 'CUDA graph|Test net output #0|iter/s' "$OUT_DIR/train_lenet_graph.log" | sed 's/.*\] //'
if [[ -d $BUNDLE/fashion-mnist ]]; then
  echo "## DropIn on the GPU: ${DROPIN_CONFIGS:-lenet50_gauss}, seeds ${DROPIN_SEEDS:-1 2}"
  CAFFE=$U/caffe CAFFE_FASHION_MNIST_DIR=$(cd "$BUNDLE/fashion-mnist" && pwd) \
    timeout "${DROPIN_SECONDS:-420}" bash experiments/dropin/run.sh --configs "${DROPIN_CONFIGS:-lenet50_gauss}" \
    --seeds "${DROPIN_SEEDS:-1 2}" --gpu 0 --results "$OUT_DIR/dropin" --work "$U/dropin" --no-report
  echo "dropin exit $?"
  ls -l "$OUT_DIR/dropin/logs"
fi
date -u
exit "$check_rc"
