#!/usr/bin/env bash
# The DropIn paper's central claim, reproduced: a grid of `caffe train` runs,
# each run's full glog in RESULTS/logs/<config>[_it<N>][_gpu]_seed<k>.log, then
# RESULTS/RESULTS.md and the figures (experiments/dropin/report.py).
#
#   experiments/dropin/run.sh [--grid required|full|regularization] [--configs "c1 c2"]
#                             [--seeds "1 2"] [--iters N] [--jobs J] [--gpu ID]
#                             [--results DIR] [--work DIR] [--test-interval N]
#                             [--snapshot-every N] [--dry-run] [--no-report]
#
# A config is a solver name without `_solver` (solvers/<config>_solver.prototxt).
# Runs are resumable: a run whose log ends with "Optimization Done." (or with the
# solver's stop at a non-finite loss: the run diverged, an outcome) is skipped;
# a run in progress writes <log>.partial and renames it when it finishes; a stopped
# run goes on from its newest snapshot (every --snapshot-every iterations, 1000).
# See experiments/dropin/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CAFFE=${CAFFE:-$ROOT/target/release/caffe}
CAFFE_REF_DIR=${CAFFE_REF_DIR:-$ROOT/../shared/caffe-ref}
REPORT="$ROOT/experiments/dropin/report.py"

GRID=required
CONFIGS=""
SEEDS="1 2"
ITERS=""
JOBS=1
GPU=""
RESULTS="docs/results"
WORK="snapshots/dropin"
TEST_INTERVAL=""
DRY_RUN=0
DO_REPORT=1
SNAPSHOT_EVERY=1000

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --grid) need "$@"; GRID=$2; shift 2 ;;
    --configs) need "$@"; CONFIGS=$2; shift 2 ;;
    --seeds) need "$@"; SEEDS=$2; shift 2 ;;
    --iters) need "$@"; ITERS=$2; shift 2 ;;
    --jobs) need "$@"; JOBS=$2; shift 2 ;;
    --gpu) need "$@"; GPU=$2; shift 2 ;;
    --results) need "$@"; RESULTS=$2; shift 2 ;;
    --work) need "$@"; WORK=$2; shift 2 ;;
    --test-interval) need "$@"; TEST_INTERVAL=$2; shift 2 ;;
    --snapshot-every) need "$@"; SNAPSHOT_EVERY=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --no-report) DO_REPORT=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
[[ -z $ITERS ]] || { is_uint "$ITERS" && (( ITERS > 0 )); } || die "--iters must be a positive integer"
[[ -z $TEST_INTERVAL ]] || { is_uint "$TEST_INTERVAL" && (( TEST_INTERVAL > 0 )); } \
  || die "--test-interval must be a positive integer"
is_uint "$JOBS" && (( JOBS > 0 )) || die "--jobs must be a positive integer"
is_uint "$SNAPSHOT_EVERY" && (( SNAPSHOT_EVERY > 0 )) || die "--snapshot-every must be a positive integer"
[[ -z $GPU ]] || is_uint "$GPU" || die "--gpu takes one device id"
for s in $SEEDS; do is_uint "$s" || die "seeds must be non-negative integers, got '$s'"; done
[[ -n ${SEEDS// /} ]] || die "--seeds is empty"

if [[ -z $CONFIGS ]]; then
  CONFIGS=$(python3 "$REPORT" --grid "$GRID" 2>/dev/null) || die "unknown grid '$GRID' (required, full, regularization)"
fi
for c in $CONFIGS; do
  [[ -f solvers/${c}_solver.prototxt ]] || die "no solver solvers/${c}_solver.prototxt for config '$c'"
done
[[ -x $CAFFE ]] || die "$CAFFE not found: build it first (cargo build --release, or make build)"

# One libtorch intra-op pool per run, sized so that the parallel runs share the
# cores. libtorch reads OMP_NUM_THREADS (MKL_NUM_THREADS for MKL) at start-up.
CORES=$(nproc)
THREADS=$(( CORES / JOBS ))
(( THREADS >= 1 )) || THREADS=1

solver_snapshot() { sed -n 's/^snapshot: *\([0-9]*\).*/\1/p' "solvers/$1_solver.prototxt" | head -n 1; }
# Snapshots every SNAPSHOT_EVERY iterations at most, so a stopped run loses little.
snapshot_every() {
  local every=$SNAPSHOT_EVERY own
  own=$(solver_snapshot "$1")
  if [[ -n $own ]] && (( own > 0 && own < every )); then every=$own; fi
  echo "$every"
}

solver_max_iter() { sed -n 's/^max_iter: *\([0-9]*\).*/\1/p' "solvers/$1_solver.prototxt" | head -n 1; }

# <config>[_it<N>][_gpu]_seed<k>: _it<N> only when N differs from the solver's max_iter.
run_name() {
  local config=$1 seed=$2 name=$1
  if [[ -n $ITERS && $ITERS != "$(solver_max_iter "$config")" ]]; then name+="_it$ITERS"; fi
  [[ -z $GPU ]] || name+="_gpu"
  echo "${name}_seed$seed"
}

# Finished: the last line says "Optimization Done." and SIGINT/SIGHUP did not stop it early.
is_complete() {
  { [[ -f $1 ]] && tail -n 1 "$1" | grep -q 'Optimization Done\.$' \
    && ! grep -q 'Optimization stopped early\.' "$1"; } || is_diverged "$1"
}
# Diverged: the solver stopped at a loss that was NaN or infinite (caffe-tch's
# `caffe train` does that instead of training on with NaN weights, as Caffe would).
is_diverged() {
  [[ -f $1 ]] && tail -n 1 "$1" | grep -q '(not finite); training stopped'
}

# The newest snapshot of a run's unfinished log: "<iter> <solverstate>", or nothing.
# Only a snapshot whose "Snapshotting solver state" line is in the log counts, so
# the log can be cut back to the moment the state was written.
latest_snapshot() {
  local log=$1 dir=$2 best=-1 state="" f n
  [[ -f $log ]] || return 0
  for f in "$dir"/snapshots/*_iter_*.solverstate; do
    [[ -f $f ]] || continue
    n=${f##*_iter_}; n=${n%.solverstate}
    is_uint "$n" || continue
    grep -qF "Snapshotting solver state to binary proto file $f" "$log" || continue
    if (( n > best )); then best=$n; state=$f; fi
  done
  [[ -z $state ]] || echo "$best $state"
}

LOGS="$RESULTS/logs"
PLAN=()
for seed in $SEEDS; do
  for config in $CONFIGS; do
    PLAN+=("$config $seed $(run_name "$config" "$seed")")
  done
done

echo "run.sh: ${#PLAN[@]} runs, $JOBS at a time, $THREADS threads each ($CORES cores); logs in $LOGS"
if [[ $DRY_RUN == 1 ]]; then
  for p in "${PLAN[@]}"; do
    read -r config seed name <<< "$p"
    if [[ -n $ITERS && $config =~ _d([0-9]+)$ ]] && (( ITERS <= BASH_REMATCH[1] )); then
      echo "  note  $name: $ITERS iterations do not complete the DropIn ramp (d = ${BASH_REMATCH[1]})"
    fi
    if is_complete "$LOGS/$name.log"; then echo "  done  $name"
    elif snap=$(latest_snapshot "$LOGS/$name.log.partial" "$WORK/$name") && [[ -n $snap ]]; then
      echo "  todo  $name (goes on from iteration ${snap%% *})"
    else echo "  todo  $name"; fi
  done
  exit 0
fi

mkdir -p "$LOGS" "$WORK"
STATUS=$(mktemp -d "${TMPDIR:-/tmp}/dropin-status.XXXXXX")
trap 'rm -rf "$STATUS"' EXIT

# BVLC Caffe's own LeNet(10) runs, for the report's comparison.
for v in plain gauss; do
  src="$CAFFE_REF_DIR/lenet10_runs/lenet10_$v/train.log"
  if [[ ! -f $LOGS/caffe_lenet10_$v.log && -f $src ]]; then cp "$src" "$LOGS/caffe_lenet10_$v.log" && chmod 644 "$LOGS/caffe_lenet10_$v.log"; fi
done

# The data the LeNet models read (MNIST, or Fashion-MNIST offline).
if ! [[ -f data/mnist/DATASET && -d data/mnist/train_lmdb && -d data/mnist/test_lmdb ]]; then
  "$CAFFE" data mnist data/mnist
fi
DATASET=$(head -n 1 data/mnist/DATASET 2>/dev/null || echo unknown)
# CAFFE_TCH_COMMIT names the build when the tree is not a git checkout (a copy on a GPU machine).
if [[ -n ${CAFFE_TCH_COMMIT:-} ]]; then COMMIT=$CAFFE_TCH_COMMIT
else
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then COMMIT+="+dirty"; fi
fi
GPU_NAME=""
if [[ -n $GPU ]] && command -v nvidia-smi >/dev/null; then
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$GPU" 2>/dev/null | head -n 1)
fi
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)

run_one() {
  local config=$1 seed=$2 name=$3
  local log="$LOGS/$name.log" dir="$WORK/$name"
  local solver="$dir/solver.prototxt"
  local resume_args=() resumed_from=""
  local snap
  snap=$(latest_snapshot "$log.partial" "$dir")
  if [[ -n $snap ]]; then
    # Resume: keep the log up to the snapshot's line and go on from the state, as
    # `caffe train -snapshot` would (the data cursor starts again at the DB's first
    # record, as in Caffe; the .meta file records each resume).
    read -r resumed_from state <<< "$snap"
    local line
    line=$(grep -nF "Snapshotting solver state to binary proto file $state" "$log.partial" | tail -n 1 | cut -d: -f1)
    head -n "$line" "$log.partial" > "$log.partial.cut" && mv "$log.partial.cut" "$log.partial"
    resume_args=(-snapshot "$state")
    echo "$resumed_from" >> "$dir/resumed"
  else
    rm -rf "$dir" && mkdir -p "$dir/snapshots"
    : > "$log.partial"
  fi
  local replaced='max_iter|random_seed|snapshot_prefix|snapshot'
  [[ -z $TEST_INTERVAL ]] || replaced+='|test_interval'
  {
    grep -Ev "^($replaced):" "solvers/${config}_solver.prototxt"
    echo "# run.sh: $name"
    echo "max_iter: ${ITERS:-$(solver_max_iter "$config")}"
    [[ -z $TEST_INTERVAL ]] || echo "test_interval: $TEST_INTERVAL"
    echo "random_seed: $seed"
    echo "snapshot: $(snapshot_every "$config")"
    echo "snapshot_prefix: \"$dir/snapshots/$config\""
  } > "$solver"
  local gpu_args=()
  [[ -z $GPU ]] || gpu_args=(-gpu "$GPU")
  local start rc=0
  start=$(date +%s)
  echo "[start] $name ($THREADS threads)"
  GLOG_logtostderr=1 OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS \
    "$CAFFE" train -solver "$solver" "${resume_args[@]}" "${gpu_args[@]}" >> "$dir/stdout" 2>> "$log.partial" &
  local pid=$!
  trap 'kill "$pid" 2>/dev/null; exit 143' TERM INT
  wait "$pid" || rc=$?
  trap - TERM INT
  local wall=$(( $(date +%s) - start ))
  echo "$wall" >> "$dir/wall"
  wall=$(awk '{ s += $1 } END { print s + 0 }' "$dir/wall")
  if { [[ $rc == 0 ]] && is_complete "$log.partial"; } || is_diverged "$log.partial"; then
    cat > "$LOGS/$name.meta" <<EOF
config=$config
seed=$seed
solver=solvers/${config}_solver.prototxt
max_iter=${ITERS:-$(solver_max_iter "$config")}
reduced=$([[ $name == *_it* ]] && echo yes || echo no)
test_interval=${TEST_INTERVAL:-solver}
device=$([[ -n $GPU ]] && echo "GPU" || echo "CPU")
gpu=$GPU_NAME
threads=$THREADS
jobs=$JOBS
cores=$CORES
cpu=$CPU_MODEL
dataset=$DATASET
commit=$COMMIT
finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)
wall_s=$wall
resumed_from=$(paste -sd, "$dir/resumed" 2>/dev/null || true)
outcome=$(is_diverged "$log.partial" && echo diverged || echo finished)
EOF
    mv "$log.partial" "$log"
    local acc
    acc=$(grep -o 'accuracy = [0-9.naife-]*' "$log" | tail -n 1 | cut -d' ' -f3)
    if is_diverged "$log"; then
      echo "[diverged] $name: $(grep -o 'Iteration [0-9]*: the loss is [^ ]*' "$log" | tail -n 1) (${wall}s)"
    else
      echo "[done] $name: final test accuracy ${acc:-?} (${wall}s)"
    fi
  else
    touch "$STATUS/$name.failed"
    echo "[FAILED] $name (exit $rc): see $log.partial" >&2
  fi
}

trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$STATUS"; exit 130' INT TERM
for p in "${PLAN[@]}"; do
  read -r config seed name <<< "$p"
  if is_complete "$LOGS/$name.log"; then
    echo "[skip] $name: finished before"
    continue
  fi
  while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
  run_one "$config" "$seed" "$name" &
done
wait

failed=$(find "$STATUS" -name '*.failed' | wc -l)
if [[ $DO_REPORT == 1 ]]; then
  python3 "$REPORT" --results "$RESULTS"
fi
if (( failed > 0 )); then
  echo "run.sh: $failed run(s) failed" >&2
  exit 1
fi
