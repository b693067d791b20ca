#!/usr/bin/env bash
# Builds caffe-tch for a GPU machine that has its own PyTorch but no Rust, and
# packs what that machine needs into one folder (default .gpu/, git-ignored):
#
#   scripts/gpu_bundle.sh VENV [OUT_DIR]
#
# VENV is a Python virtualenv holding the PyTorch the GPU machine has (same
# version, CUDA build), e.g. `python3 -m venv v && v/bin/pip install torch==2.11.0`.
# tch 0.26 is written for PyTorch 2.13. For another version the build vendors
# torch-sys and turns each of its C++ wrappers that the other libtorch lacks
# into one that returns an error ("X is not in the libtorch this was built
# against"); caffe-tch calls none of them. The build is of HEAD, in a git
# worktree under target/gpu-build/ (the test binary finds its fixtures there).
#
# With DROPIN=1 the bundle also carries Fashion-MNIST's IDX files (about 30 MB,
# already compressed), and gpu_device_run.sh then runs the DropIn configs that
# this CPU cannot finish (see there).
#
# OUT_DIR then holds bundle.tar.xz (caffe and its CUDA shim; the test binary, tests/suite.rs, whose
# parity and layer tests run there; the shared libraries they need beyond glibc
# and libtorch; a LeNet LMDB), the parity fixtures, and
# scripts/gpu_device_run.sh runs it all on the GPU machine:
#   bash scripts/gpu_device_run.sh OUT_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:?usage: scripts/gpu_bundle.sh VENV [OUT_DIR]}
OUT_DIR=${2:-$ROOT/.gpu}
VENV=$(cd "$VENV" && pwd)
[[ -x $VENV/bin/python ]] || { echo "gpu_bundle: $VENV/bin/python not found" >&2; exit 2; }
TORCH_VERSION=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
BUILD=$ROOT/target/gpu-build
TREE=$BUILD/tree
export CARGO_TARGET_DIR=$BUILD/target LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
# The NCCL shim's CUDA headers (`make cuda-headers`), for a CUDA 13 torch; without them
# the bundle has no NCCL support and gpu_check.sh's NCCL section says so.
if [[ -d $ROOT/.venv-build-cuda/nvidia/cu13/include ]]; then
  export CAFFE_TCH_CUDA_HEADERS=$ROOT/.venv-build-cuda/nvidia/cu13/include
fi
export PATH=$VENV/bin:$PATH
echo "gpu_bundle: building $(git -C "$ROOT" rev-parse --short HEAD) against PyTorch $TORCH_VERSION"

# A fresh worktree of HEAD, with torch-sys vendored and patched in.
git -C "$ROOT" worktree remove --force "$TREE" 2>/dev/null || rm -rf "$TREE"
git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add --quiet --detach "$TREE" HEAD
TORCH_SYS_VERSION=$(awk '/^name = "torch-sys"/ { getline; gsub(/[^0-9.]/, ""); print }' "$ROOT/Cargo.lock")
torch_sys_src() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/torch-sys-"$TORCH_SYS_VERSION" 2>/dev/null | head -n 1; }
SRC=$(torch_sys_src)
if [[ -z $SRC ]]; then (cd "$ROOT" && cargo fetch -q) && SRC=$(torch_sys_src); fi
[[ -n $SRC ]] || { echo "gpu_bundle: torch-sys $TORCH_SYS_VERSION source not found" >&2; exit 1; }
mkdir -p "$TREE/vendor" && cp -r "$SRC" "$TREE/vendor/torch-sys"
printf '\n[patch.crates-io]\ntorch-sys = { path = "vendor/torch-sys" }\n' >> "$TREE/Cargo.toml"

# Stub the wrappers the compiler rejects, until torch-sys builds (a few rounds at most).
for round in 1 2 3 4; do
  if (cd "$TREE" && cargo build --release -p torch-sys > "$BUILD/torch-sys.log" 2>&1); then break; fi
  lines=$(sed -n 's/.*torch_api_generated\.cpp:\([0-9]*\):[0-9]*: error:.*/\1/p' "$BUILD/torch-sys.log" | sort -un)
  [[ -n $lines && $round -lt 4 ]] || { tail -n 30 "$BUILD/torch-sys.log" >&2; echo "gpu_bundle: torch-sys does not build" >&2; exit 1; }
  python3 - "$TREE/vendor/torch-sys/libtch/torch_api_generated.cpp" $lines <<'EOF'
import sys
path, bad = sys.argv[1], [int(x) for x in sys.argv[2:]]
lines = open(path).read().split("\n")
done = set()
for n in bad:
    i = n - 1
    while not lines[i].startswith("void atg_"):
        i -= 1
    if i in done:
        continue
    done.add(i)
    name = lines[i].split("(")[0].split()[-1]
    j = i + 2  # body: "  PROTECT(" ... "  )"
    while lines[j] != "  )":
        j += 1
    # Same line count, so the other error line numbers stay valid.
    body = ['    throw std::runtime_error("%s is not in the libtorch this was built against");' % name]
    lines[i + 2:j] = body + [""] * (j - i - 3)
    print("gpu_bundle: stubbed", name)
open(path, "w").write("\n".join(lines))
EOF
done
(cd "$TREE" && cargo build --release --bin caffe --bin caffe-engine --test suite 2>&1 \
  | grep -E '^(error|warning: unused)|Finished' || true)
BIN=$CARGO_TARGET_DIR/release
newest() { ls -t "$BIN"/deps/"$1"-* | grep -v '\.d$' | head -n 1; }
[[ -x $BIN/caffe && -x $BIN/caffe-engine ]] || { echo "gpu_bundle: build failed" >&2; exit 1; }

# The bundle.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/libs" "$STAGE/data"
cp "$BIN/caffe" "$BIN/caffe-engine" "$(newest suite)" "$STAGE/"
# The CUDA shim (NCCL, CUDA graphs) is opened from beside the binary (src/util/cuda.rs).
if [[ -f $BIN/libcaffe_tch_cuda.so ]]; then cp "$BIN/libcaffe_tch_cuda.so" "$STAGE/"; fi
echo "$TREE" > "$STAGE/manifest_dir"
echo "$(git -C "$ROOT" rev-parse --short HEAD), PyTorch $TORCH_VERSION" > "$STAGE/build"
# Every shared library beyond glibc, the C++ runtime, libtorch and CUDA: the GPU
# machine's own copies are used where it has them (gpu_device_run.sh checks).
ldd "$BIN/caffe-engine" | awk '/=> \// { print $1, $3 }' \
  | grep -vE '^(libc|libm|libdl|librt|libpthread|libutil|libresolv|ld-linux|libstdc\+\+|libgcc_s|libgomp)\.|torch|c10|nvidia|cu13|libcu|libnccl|libnv' \
  | while read -r name path; do cp -L "$path" "$STAGE/libs/$name"; done
cp -r "$ROOT/tests/fixtures/caffe-ref/lmdb/fmnist_train2k_lmdb" "$STAGE/data/train2k_lmdb"
rm -f "$STAGE"/data/*/lock.mdb
rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR"
tar -C "$STAGE" -cJf "$OUT_DIR/bundle.tar.xz" .
# The parity fixtures (the solver traces in lenet/sgd20 are not needed).
mkdir -p "$OUT_DIR/fixtures"
for d in lenet cifar10_quick cifar10_full resnet_small; do
  cp -r "$ROOT/tests/fixtures/caffe-ref/fixtures/$d" "$OUT_DIR/fixtures/"
done
rm -rf "$OUT_DIR/fixtures/lenet/sgd20"
if [[ ${DROPIN:-0} == 1 ]]; then
  fashion=${CAFFE_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  [[ -f $fashion/train-images-idx3-ubyte.gz ]] || { echo "gpu_bundle: DROPIN=1 needs Fashion-MNIST in $fashion" >&2; exit 2; }
  mkdir -p "$OUT_DIR/fashion-mnist"
  cp "$fashion"/*-ubyte.gz "$OUT_DIR/fashion-mnist/"
fi
echo "gpu_bundle: $(du -sh "$OUT_DIR" | cut -f1) in $OUT_DIR; on the GPU machine: bash scripts/gpu_device_run.sh ${OUT_DIR#"$ROOT"/}"
