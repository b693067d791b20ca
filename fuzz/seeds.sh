#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/<target>/, not committed) from
# the real files the project tests with: prototxts, caffemodels, solver
# states, mean files, logs; plus files made here by the caffe binary from
# fuzz/seed_net.prototxt (small snapshots in both formats, an HDF5 data file,
# a LevelDB, LMDBs) and Datum records built by fuzz/seeds_built.py. Each seed gets
# the first byte the target reads as its kind.
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
REF=../shared/caffe-ref
PY=${PYTHON:-python3}
mkdir -p $C/prototxt $C/binary_files $C/datum $C/net_build $C/parse_log $C/hdf5 $C/leveldb $C/lmdb
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

# Small files written by caffe-tch itself from the seed net (skipped until
# `cargo build --release` has made the binary).
CAFFE=$PWD/target/release/caffe
LEVELDBS=(tests/fixtures/leveldb/caffe_style_logonly_leveldb)
if [[ -x $CAFFE ]]; then
  W=$(mktemp -d)
  trap 'rm -rf "$W"' EXIT
  cp fuzz/seed_net.prototxt "$W/net.prototxt"
  echo 'net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 max_iter: 1 snapshot_prefix: "h5" snapshot_format: HDF5' >"$W/h5.prototxt"
  echo 'net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 max_iter: 1 snapshot_prefix: "bin"' >"$W/bin.prototxt"
  $PY -c 'import struct,sys; n,r,c=5,4,4; open(sys.argv[1],"wb").write(struct.pack(">iiii",0x803,n,r,c)+bytes(range(n*r*c))); open(sys.argv[2],"wb").write(struct.pack(">ii",0x801,n)+bytes([1,2,3,4,5]))' "$W/img" "$W/lbl"
  (cd "$W" && "$CAFFE" train -solver h5.prototxt && "$CAFFE" train -solver bin.prototxt \
    && "$CAFFE" test -model net.prototxt -weights bin_iter_1.caffemodel -iterations 1 \
    && "$CAFFE" convert_mnist_data -backend leveldb img lbl leveldb \
    && "$CAFFE" convert_mnist_data -backend lmdb img lbl lmdb) >/dev/null 2>&1
  seed binary_files 00 "$W/bin_iter_1.caffemodel"
  seed binary_files 01 "$W/bin_iter_1.solverstate"
  seed hdf5 00 "$W/out.h5"
  seed hdf5 01 "$W/h5_iter_1.solverstate.h5"
  seed hdf5 02 "$W/h5_iter_1.caffemodel.h5"
  LEVELDBS+=("$W/leveldb")
  seed lmdb - "$W/lmdb/data.mdb"
  # A tree of several levels, with values on overflow pages too.
  $PY -c 'import struct,sys; n,r,c=150,48,48; open(sys.argv[1],"wb").write(struct.pack(">iiii",0x803,n,r,c)+bytes(i % 251 for i in range(n*r*c))); open(sys.argv[2],"wb").write(struct.pack(">ii",0x801,n)+bytes(i % 10 for i in range(n)))' "$W/img2" "$W/lbl2"
  (cd "$W" && "$CAFFE" convert_mnist_data -backend lmdb img2 lbl2 lmdb2) >/dev/null 2>&1
  seed lmdb - "$W/lmdb2/data.mdb"
fi
$PY fuzz/seeds_built.py $C "${LEVELDBS[@]}"
echo "seeded: $(find $C -type f | wc -l) files"
