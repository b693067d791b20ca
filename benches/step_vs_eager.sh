#!/usr/bin/env bash
# caffe-tch's forward + backward (`caffe time -phase TEST`'s Forward-Backward)
# beside PyTorch eager's on the same net exported by `caffe export -format
# pytorch` (benches/torch_eager_step.py), and on a GPU both captured in a CUDA
# graph (`caffe time -cuda_graph`, torch.cuda.graph): LeNet, cifar10_quick, CaffeNet and GoogLeNet at two batch
# sizes each, one markdown row per net and batch. Run by
# scripts/gpu_device_run.sh on a lent GPU; runs on the CPU too.
#
#   [CAFFE=target/release/caffe] [PYTHON=python3] [ITERATIONS=20] benches/step_vs_eager.sh [cuda|cpu]
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cuda}
CAFFE=${CAFFE:-target/release/caffe}
PY=${PYTHON:-python3}
ITERATIONS=${ITERATIONS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gpu=()
graph=()
if [[ $DEVICE == cuda ]]; then
  gpu=(-gpu 0)
  graph=(--graph)
fi
# name | prototxt in benches/nets | batch sizes | Input tops and shapes (B: the batch)
nets=(
  "LeNet|lenet_input|64 256|data=B,1,28,28 label=B"
  "cifar10_quick|cifar10_quick_train_test_input|100 256|data=B,3,32,32 label=B"
  "CaffeNet|bvlc_reference_caffenet_deploy_fb|10 128|data=B,3,227,227"
  "GoogLeNet|bvlc_googlenet_deploy_fb|10 64|data=B,3,224,224"
)
echo "| net | batch | caffe-tch ($DEVICE), ms | caffe-tch -cuda_graph, ms | PyTorch eager, ms | PyTorch eager in a CUDA graph, ms |"
echo "|---|---|---|---|---|---|"
for n in "${nets[@]}"; do
  IFS='|' read -r name file batches shapes <<<"$n"
  for b in $batches; do
    p="$work/${file}_b$b.prototxt"
    # Every Input shape's first axis is the batch.
    "$PY" -c 'import re, sys; sys.stdout.write(re.sub(r"(shape:?\s*\{\s*dim:\s*)\d+", r"\g<1>" + sys.argv[2], open(sys.argv[1]).read()))' \
      "benches/nets/$file.prototxt" "$b" >"$p"
    ours=$(timeout 600 "$CAFFE" time -model "$p" -phase TEST -iterations "$ITERATIONS" "${gpu[@]}" 2>&1 |
      sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p')
    ours_graph=""
    if [[ $DEVICE == cuda ]]; then
      ours_graph=$(timeout 600 "$CAFFE" time -model "$p" -phase TEST -iterations "$ITERATIONS" "${gpu[@]}" -cuda_graph 2>&1 |
        sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms\./\1/p')
    fi
    eager="" graphed=""
    if timeout 300 "$CAFFE" export -model "$p" -format pytorch -out "$work/${file}_b$b" >/dev/null 2>&1; then
      args=()
      for s in ${shapes//B/$b}; do args+=(--input "$s"); done
      out=$(timeout 600 "$PY" benches/torch_eager_step.py "$work/${file}_b$b" "${args[@]}" --device "$DEVICE" \
        --iterations "$ITERATIONS" "${graph[@]}" 2>&1)
      eager=$(sed -n 's/^eager: \([0-9.]*\) ms/\1/p' <<<"$out")
      graphed=$(sed -n 's/^cuda graph: \([0-9.]*\) ms/\1/p' <<<"$out")
      [[ -n $eager ]] || echo "$name batch $b: torch_eager_step.py: $(tail -1 <<<"$out")" >&2
    fi
    echo "| $name | $b | ${ours:-failed} | ${ours_graph:-—} | ${eager:-failed} | ${graphed:-—} |"
  done
done
