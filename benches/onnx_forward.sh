#!/usr/bin/env bash
# Forward time of the exported ONNX model in onnxruntime (CPU), OpenVINO (CPU
# plugin, f32) and OpenCV 5's DNN (.venv/opencv5, where make installs it; a
# dash when a runtime is missing), and of the exported model.py in PyTorch
# eager (torch.inference_mode) beside
# `caffe time -phase TEST`'s Average Forward pass (no autograd, as `caffe test` runs
# it): the same deploy net, batch and thread
# count, ROUNDS interleaved rounds, medians, at each batch size in BATCHES
# (default "10 1"). Also times `caffe export -verify`. Nets with BatchNorm
# run on finite statistics (benches/finite_statistics.py), not the fillers' zeros.
# MODELS="name|deploy.prototxt|C,H,W;..." replaces the nets (e.g. the zoo's:
# MODELS="MobileNet v2|tests/fixtures/zoo/mobilenet_v2.prototxt|3,224,224").
# Usage: [BATCHES="10 1"] [MODELS=...] benches/onnx_forward.sh [ROUNDS]   (run on an otherwise idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
CAFFE=${CAFFE:-target/release/caffe}
PY=${CAFFE_TCH_PYTHON:-python3}
ROUNDS=${1:-3}
THREADS=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BATCHES=${BATCHES:-10 1}
# name | deploy prototxt (batch 10) | input shape after the batch axis
models=(
  "CaffeNet|tests/fixtures/bvlc/models/bvlc_reference_caffenet/deploy.prototxt|3,227,227"
  "GoogLeNet|tests/fixtures/bvlc/models/bvlc_googlenet/deploy.prototxt|3,224,224"
  "ResNet-50|$work/resnet50_deploy.prototxt|3,224,224"
)
if [ -n "${MODELS:-}" ]; then
  IFS=';' read -r -a models <<<"$MODELS"
fi
# ResNet-50 (BatchNorm + Scale + ReLU after each convolution) from its generator.
"$PY" benches/resnet50_deploy.py 10 >"$work/resnet50_deploy.prototxt"
# name at batch | prototxt | caffe time iterations | input shape
nets=()
for b in $BATCHES; do
  for m in "${models[@]}"; do
    IFS='|' read -r name model rest <<<"$m"
    sed "0,/dim: 10\b/s//dim: $b/" "$model" >"$work/${name}_b$b.prototxt"
    nets+=("$name, batch $b|$work/${name}_b$b.prototxt|$((b >= 10 ? 10 : 200))|$b,$rest")
  done
done
cat >"$work/ort_time.py" <<'PY'
import sys, time
WARMUP = 10  # first runs (memory arenas, thread pools) stay out of the average
import numpy as np
import onnxruntime as ort
path, threads, iters, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
o = ort.SessionOptions()
o.intra_op_num_threads = threads
o.inter_op_num_threads = 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.RandomState(0).rand(*[d if isinstance(d, int) else batch for d in i.shape]).astype(np.float32)
for _ in range(WARMUP):
    s.run(None, {i.name: x})
t = time.perf_counter()
for _ in range(iters):
    s.run(None, {i.name: x})
print("%.3f" % ((time.perf_counter() - t) * 1000 / iters))
PY
cat >"$work/eager_time.py" <<'PY'
import sys, time
WARMUP = 10  # first runs (memory arenas, thread pools) stay out of the average
import torch
sys.path.insert(0, sys.argv[1])
import model
threads, iters, shape = int(sys.argv[2]), int(sys.argv[3]), [int(d) for d in sys.argv[4].split(",")]
torch.set_num_threads(threads)
net = model.load()
x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    for _ in range(WARMUP):
        net(data=x)
    t = time.perf_counter()
    for _ in range(iters):
        net(data=x)
print("%.3f" % ((time.perf_counter() - t) * 1000 / iters))
PY
cat >"$work/ov_time.py" <<'PY'
import sys, time
WARMUP = 10  # first runs (memory arenas, thread pools) stay out of the average
import numpy as np
import openvino as ov
path, threads, iters, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
core = ov.Core()
model = core.read_model(path)
i = model.inputs[0]
shape = [d.get_length() if d.is_static else batch for d in i.get_partial_shape()]
c = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
x = np.random.RandomState(0).rand(*shape).astype(np.float32)
request = c.create_infer_request()
for _ in range(WARMUP):
    request.infer({0: x})
t = time.perf_counter()
for _ in range(iters):
    request.infer({0: x})
print("%.3f" % ((time.perf_counter() - t) * 1000 / iters))
PY
cat >"$work/cv_time.py" <<'PY'
import sys, time
WARMUP = 10  # first runs (memory arenas, thread pools) stay out of the average
import cv2
import numpy as np
path, threads, iters, shape = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(d) for d in sys.argv[4].split(",")]
cv2.setNumThreads(threads)
net = cv2.dnn.readNetFromONNX(path)
x = np.random.RandomState(0).rand(*shape).astype(np.float32)
for _ in range(WARMUP):
    net.setInput(x)
    net.forward()
t = time.perf_counter()
for _ in range(iters):
    net.setInput(x)
    net.forward()
print("%.3f" % ((time.perf_counter() - t) * 1000 / iters))
PY
VENV_DIR=$(dirname "$(dirname "$(command -v "$PY")")")
other() { # folder ("" for the venv itself), script, args...: the time, or a dash when the runtime is not installed
  local folder=$1
  shift
  if [ -z "$folder" ]; then
    "$PY" "$@" 2>/dev/null || echo "—"
  elif [ -d "$folder" ]; then
    PYTHONPATH="$folder" "$PY" "$@" 2>/dev/null || echo "—"
  else
    echo "—"
  fi
}
declare -A caffe ort ovino cv5 eager verify
# Nets with BatchNorm run on finite statistics (benches/finite_statistics.py):
# on the fillers' zero statistics a deep net's activations become NaN.
declare -A weights
for n in "${nets[@]}"; do
  IFS='|' read -r name model _ <<<"$n"
  file="$work/${name//[^A-Za-z0-9]/_}.caffemodel"
  weights[$name]=""
  # It writes the file only where the net has a BatchNorm; it needs pycaffe (make).
  "$PY" benches/finite_statistics.py "$model" "$file" >/dev/null
  if [ -f "$file" ]; then
    weights[$name]="-weights $file"
  fi
  "$CAFFE" export -model "$model" ${weights[$name]} -out "$work/${name//[^A-Za-z0-9]/_}.onnx" -opset 18 >/dev/null 2>&1
  "$CAFFE" export -model "$model" ${weights[$name]} -format pytorch -out "$work/${name//[^A-Za-z0-9]/_}.torch" >/dev/null 2>&1
done
for ((r = 1; r <= ROUNDS; r++)); do
  for n in "${nets[@]}"; do
    IFS='|' read -r name model iters shape <<<"$n"
    ms=$("$CAFFE" time -model "$model" ${weights[$name]} -phase TEST -iterations "$iters" 2>&1 | sed -n 's/.*Average Forward pass: \([0-9.]*\) ms\./\1/p')
    caffe[$name]="${caffe[$name]:-} $ms"
    ms=$("$PY" "$work/ort_time.py" "$work/${name//[^A-Za-z0-9]/_}.onnx" "$THREADS" "$iters" "${shape%%,*}")
    ort[$name]="${ort[$name]:-} $ms"
    ms=$(other "" "$work/ov_time.py" "$work/${name//[^A-Za-z0-9]/_}.onnx" "$THREADS" "$iters" "${shape%%,*}")
    ovino[$name]="${ovino[$name]:-} $ms"
    ms=$(other "$VENV_DIR/opencv5" "$work/cv_time.py" "$work/${name//[^A-Za-z0-9]/_}.onnx" "$THREADS" "$iters" "$shape")
    cv5[$name]="${cv5[$name]:-} $ms"
    ms=$("$PY" "$work/eager_time.py" "$work/${name//[^A-Za-z0-9]/_}.torch" "$THREADS" "$iters" "$shape")
    eager[$name]="${eager[$name]:-} $ms"
    /usr/bin/time -f %e -o "$work/seconds" "$CAFFE" export -model "$model" ${weights[$name]} -out "$work/v.onnx" -verify >/dev/null 2>&1 || true
    s=$(tail -1 "$work/seconds")
    verify[$name]="${verify[$name]:-} $s"
  done
done
med() { echo "$@" | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "Threads: $THREADS; median of $ROUNDS interleaved rounds."
echo "| net | caffe time forward, ms | onnxruntime forward, ms | OpenVINO forward, ms | OpenCV 5 DNN forward, ms | PyTorch eager (model.py), ms | onnxruntime / caffe-tch | caffe export -verify, s |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${nets[@]}"; do
  IFS='|' read -r name _ _ <<<"$n"
  c=$(med ${caffe[$name]}); o=$(med ${ort[$name]}); e=$(med ${eager[$name]}); v=$(med ${verify[$name]})
  ovm=$(med ${ovino[$name]}); cvm=$(med ${cv5[$name]})
  echo "| $name | $c | $o | $ovm | $cvm | $e | $(awk -v a="$o" -v b="$c" 'BEGIN {printf "%.2f", a / b}') | $v |"
done
