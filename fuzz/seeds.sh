#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/<target>/, not committed) from
# the real files the project tests with: prototxts, caffemodels, solver
# states, mean files, LMDB records, logs. Each seed gets the first byte the
# target reads as its kind.
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
REF=../shared/caffe-ref
mkdir -p $C/prototxt $C/binary_files $C/datum $C/net_build $C/parse_log
k=0
seed() { # target, kind byte (or -), file
  local out=$C/$1/seed_$k; k=$((k + 1))
  if [[ $2 == - ]]; then head -c 1000000 "$3" >"$out"; else { printf "\\x$2"; head -c 1000000 "$3"; } >"$out"; fi
}
while IFS= read -r f; do seed prototxt 00 "$f"; seed prototxt 01 "$f"; done < <(find tests/fixtures models -name '*.prototxt' ! -name '*solver*' | head -80)
while IFS= read -r f; do seed prototxt 02 "$f"; seed prototxt 03 "$f"; done < <(find tests/fixtures solvers -name '*solver*.prototxt' | head -40)
while IFS= read -r f; do seed binary_files 00 "$f"; done < <(find tests/fixtures -name '*.caffemodel' -size -2M | head -10)
while IFS= read -r f; do seed binary_files 01 "$f"; done < <(find tests/fixtures $REF -name '*.solverstate' -size -2M 2>/dev/null | head -5)
while IFS= read -r f; do seed binary_files 02 "$f"; done < <(find tests/fixtures $REF -name '*.binaryproto' 2>/dev/null | head -5)
while IFS= read -r f; do seed binary_files 04 "$f"; done < <(find tests/fixtures -name '*.npy' -size -64k | head -20)
while IFS= read -r f; do seed parse_log - "$f"; done < <(find tests/fixtures docs/results/logs -name '*.log' -size -1M | head -20)
echo "seeded: $(find $C -type f | wc -l) files"
