"""Shared paths and helpers for the `import caffe` tests."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "tests" / "fixtures" / "caffe-ref"
FIX = REF / "fixtures"


def need(ok, what):
    """Skips a test whose prerequisite is missing (a failure under CI=true),
    and records it in the skip log `make test` prints."""
    if ok:
        return
    log = os.environ.get("CAFFE_TCH_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write("SKIPPED: pytest: %s\n" % what)
    if os.environ.get("CI") == "true":
        pytest.fail("missing prerequisite under CI=true: %s" % what)
    pytest.skip(what)


def caffe_bin():
    path = Path(os.environ.get("CAFFE", ROOT / "target" / "release" / "caffe"))
    need(path.exists(), "the caffe binary (%s; run make)" % path)
    return str(path)


def run_caffe(*args, cwd=None):
    """Runs the caffe binary; returns its stderr (the log)."""
    r = subprocess.run([caffe_bin(), *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


# The Python layers the tests use (python/tests/pylayers/), importable here and
# on the PYTHONPATH of the `caffe` binary's runs.
PYLAYERS = Path(__file__).resolve().parent / "pylayers"
EXAMPLE = ROOT / "examples" / "python_layers"


def pylayers_env(**extra):
    """The environment for a `caffe` run whose nets have Python layers: this
    checkout's `caffe` package, the test layers and the example on PYTHONPATH."""
    import caffe

    package_dir = str(Path(caffe.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_dir, str(PYLAYERS), str(EXAMPLE)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def run_caffe_rc(*args, cwd=None, **env):
    """Runs the caffe binary with Python layers available; returns (exit code, stderr)."""
    r = subprocess.run(
        [caffe_bin(), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=pylayers_env(**env)
    )
    return r.returncode, r.stderr


def tol(ref):
    return 1e-4 * (1 + float(np.abs(ref).max(initial=0)))


@pytest.fixture(autouse=True)
def _cpu():
    import caffe

    caffe.set_mode_cpu()


def lenet_lmdb_solver(d, max_iter, batch=64):
    """Caffe's LeNet (sgd20's net on the 2,000-record train LMDB, at `batch`)
    with its SGD solver from BVLC's weights, in folder `d`; snapshots there."""
    lmdb = REF / "lmdb" / "fmnist_train2k_lmdb"
    need(lmdb.exists(), "the LeNet training LMDB (%s)" % lmdb)
    net = (FIX / "lenet" / "sgd20" / "lenet_train_test.prototxt").read_text()
    net = net.replace('"lmdb/fmnist_train_lmdb"', '"%s"' % lmdb).replace("batch_size: 64", "batch_size: %d" % batch, 1)
    (d / "net.prototxt").write_text(net)
    s = d / "solver.prototxt"
    s.write_text(
        'train_net: "%s/net.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "inv"\n'
        'gamma: 0.0001\npower: 0.75\ndisplay: 1\nmax_iter: %d\nsnapshot_prefix: "%s/lenet"\nsolver_mode: CPU\n'
        'random_seed: 1\nweights: "%s"\n' % (d, max_iter, d, FIX / "lenet" / "weights.caffemodel")
    )
    return s
