#!/usr/bin/env bash
# BVLC Caffe's own pycaffe tests (python/caffe/test/ of a Caffe checkout) run
# against caffe-tch's `import caffe`. They are BVLC's code, so they are not
# copied here: this takes them, with the checkout's models/ and examples/ that
# test_draw.py walks, from the checkout given (a work tree, or a git directory
# such as a bare clone), lays them out as in Caffe's tree in a temporary
# folder, and runs them with pytest.
#
#   scripts/bvlc_pycaffe_tests.sh /path/to/caffe            # a work tree
#   scripts/bvlc_pycaffe_tests.sh /path/to/caffe.git [REV]  # a git directory
#
# Needs `make` (the venv and the built module) and the `six` package the tests
# import (`.venv/bin/pip install six`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:?usage: scripts/bvlc_pycaffe_tests.sh CAFFE_CHECKOUT_OR_GIT_DIR [REV]}
rev=${2:-HEAD}
py=${CAFFE_TCH_PYTHON:-$here/.venv/bin/python}
"$py" -c "import six" 2>/dev/null || { echo "bvlc_pycaffe_tests: the tests import six: $py -m pip install six" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -d $src/python/caffe/test ]]; then
  mkdir -p "$work/python/caffe"
  cp -r "$src/python/caffe/test" "$work/python/caffe/"
  cp -r "$src/models" "$src/examples" "$work/"
else
  git --git-dir="$src" archive "$rev" python/caffe/test models examples | tar -x -C "$work"
fi
# The tests' folder only: `import caffe` must find caffe-tch's package, and the
# Python layers they name (module: 'test_python_layer') their own files.
cd "$work/python/caffe/test"
PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}" "$py" -m pytest -q -p no:cacheprovider --rootdir "$work/python/caffe/test" .
