"""caffe.NCCL: data-parallel training from Python, one process per solver
(scripts/train_parallel.py, in the way of Caffe's examples/pycaffe/train.py),
over Gloo on this CPU. Two Python ranks compute what `caffe train -ranks 2`
computes: the same logged losses and bit-identical weights."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import caffe
from conftest import ROOT, lenet_lmdb_solver, run_caffe

SCRIPT = ROOT / "python" / "tests" / "scripts" / "train_parallel.py"


def lenet_solver(tmp_path, name, batch=32, iters=12):
    d = tmp_path / name
    d.mkdir()
    return lenet_lmdb_solver(d, iters, batch)


def losses(log):
    return re.findall(r"Iteration (\d+) \(.*\), loss = (\S+)", log)


def params(path):
    net = caffe.proto.caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return {(l.name, j): np.array(b.data, np.float32) for l in net.layer for j, b in enumerate(l.blobs)}


@pytest.mark.parametrize("timing", [False, True])
def test_python_ranks_train_as_caffe_train_ranks(tmp_path, timing):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [str(lenet_solver(tmp_path, "py")), "12", "2"] + (["cpu", "timing"] if timing else [])
    py = subprocess.run([sys.executable, str(SCRIPT)] + args, capture_output=True, text=True, env=env, timeout=600)
    assert py.returncode == 0, py.stderr[-3000:]
    if timing:
        # Rank 0 timed each layer with net callbacks (its backward layer by layer), every display.
        net = caffe.Net(str(tmp_path / "py" / "net.prototxt"), caffe.TRAIN)
        for i, name in enumerate(net._layer_names):
            assert len(re.findall(r"forw +%d +%s : \d+\.\d\d" % (i, re.escape(name)), py.stderr)) == 12, name
            assert len(re.findall(r"back +%d +%s : \d+\.\d\d" % (i, re.escape(name)), py.stderr)) == 12, name
    cli = run_caffe("train", "-solver", lenet_solver(tmp_path, "cli"), "-ranks", "2")
    ours, theirs = losses(py.stderr), losses(cli)
    assert len(ours) == 12 and ours == theirs[:12], (ours, theirs)
    assert "Data-parallel over 2 ranks (Gloo)" in py.stderr
    # One log: rank 1's solver writes no info lines.
    assert py.stderr.count("Iteration 0 (") == 1
    a, b = params(tmp_path / "py" / "lenet_iter_12.caffemodel"), params(tmp_path / "cli" / "lenet_iter_12.caffemodel")
    assert a.keys() == b.keys() and len(a) == 8
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def test_group_api_and_errors(tmp_path):
    assert caffe.has_nccl() and caffe.solver_count() == 1 and caffe.solver_rank() == 0
    uid = caffe.NCCL.new_uid()
    assert isinstance(uid, bytes) and uid.startswith(b"caffe-tch-group:127.0.0.1:")  # bytes, as pycaffe's
    solver = caffe.SGDSolver(str(lenet_solver(tmp_path, "one")))
    with pytest.raises(ValueError, match="not a uid"):
        caffe.NCCL(solver, "12345")
    with pytest.raises(ValueError, match="set_solver_count"):
        caffe.set_solver_count(0)
    # A group of one on the CPU: joins, broadcasts and steps as the solver alone.
    nccl = caffe.NCCL(solver, uid.decode())  # the same text as a str also works
    assert (nccl.rank, nccl.world) == (0, 1)
    nccl.bcast()
    solver.add_callback(nccl)
    solver.net.after_backward(nccl)
    solver.step(2)
    assert solver.iter == 2
    # A rank whose peers never come: the rendezvous times out with the rank and address.
    caffe.set_solver_count(2)
    caffe.set_solver_rank(1)
    try:
        lonely = caffe.SGDSolver(str(lenet_solver(tmp_path, "lonely")))
        with pytest.raises(ValueError, match=r"rank 1 joins the rendezvous at 127\.0\.0\.1"):
            caffe.NCCL(lonely, caffe.NCCL.new_uid(), timeout=2)
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)
