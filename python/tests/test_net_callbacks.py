"""pycaffe's per-layer net callbacks (net.before_forward, after_forward,
before_backward, after_backward): Caffe's order, the layer's work between its
two calls, the same numbers as without them, through the solver, and errors."""
import re
import json
import sys

import numpy as np
import pytest

import caffe
from conftest import FIX, PYLAYERS, lenet_lmdb_solver, tol
from test_python_layer import middle_net, write

sys.path[:0] = [str(PYLAYERS)]

BACKWARD = FIX / "lenet" / "train_backward"


def lenet_train():
    d = FIX / "lenet"
    net = caffe.Net(str(d / "net.prototxt"), str(d / "weights.caffemodel"), caffe.TRAIN)
    for name in net.inputs:
        x = np.load(BACKWARD / "blobs" / ("%s.npy" % name))
        net.blobs[name].reshape(*x.shape)
        net.blobs[name].data[...] = x
    return net


def record(net, events):
    for kind in ("before_forward", "after_forward", "before_backward", "after_backward"):
        getattr(net, kind)(lambda i, kind=kind: events.append((kind, i)))


def test_callbacks_run_in_caffes_order_and_time_layers_as_caffes_train_py():
    plain = lenet_train()
    plain.forward()
    plain.backward()
    net = lenet_train()
    events = []
    record(net, events)
    # Caffe's examples/pycaffe/train.py times each layer this way.
    n = len(net.layers)
    fprop = [caffe.Timer() for _ in range(n)]
    bprop = [caffe.Timer() for _ in range(n)]
    net.before_forward(lambda layer: fprop[layer].start())
    net.after_forward(lambda layer: fprop[layer].stop())
    net.before_backward(lambda layer: bprop[layer].start())
    net.after_backward(lambda layer: bprop[layer].stop())
    out = net.forward()
    net.backward()
    want = [(k, i) for i in range(n) for k in ("before_forward", "after_forward")]
    want += [(k, i) for i in reversed(range(n)) for k in ("before_backward", "after_backward")]
    assert events == want
    assert all(t.ms > 0 for t in fprop + bprop)
    # The same numbers as one autograd pass (each layer runs the same kernels), and as BVLC Caffe's.
    m = json.loads((BACKWARD / "manifest.json").read_text())
    assert abs(float(out["loss"]) - m["loss"]) <= 1e-4 * (1 + m["loss"])
    assert float(out["loss"]) == float(plain.blobs["loss"].data)
    for name in net.params:
        for j, (a, b) in enumerate(zip(net.params[name], plain.params[name])):
            np.testing.assert_array_equal(a.diff, b.diff, err_msg="%s[%d]" % (name, j))
    for p in m["params"]:
        for j, f in enumerate(p["diff_files"]):
            ref = np.load(BACKWARD / f)
            assert np.abs(net.params[p["layer"]][j].diff - ref).max() <= tol(ref), (p["layer"], j)
    for b in ("conv1", "pool1", "ip1", "ip2"):
        np.testing.assert_array_equal(net.blobs[b].diff, plain.blobs[b].diff, err_msg=b)
    # Ranges call the callbacks of their layers only.
    events.clear()
    net.forward(start="conv2", end="pool2")
    first = list(net._layer_names).index("conv2")
    assert events == [(k, i) for i in (first, first + 1) for k in ("before_forward", "after_forward")]


def test_a_python_layers_backward_runs_between_its_callbacks(tmp_path):
    caffe.set_random_seed(3)
    net = caffe.Net(write(tmp_path / "m.prototxt", middle_net(True)), caffe.TRAIN)
    events = []
    record(net, events)
    for name in ("relu", "scale"):
        i = list(net._layer_names).index(name)
        obj = net.layers[i]
        plain_backward = obj.backward

        def backward(top, propagate_down, bottom, i=i, plain_backward=plain_backward):
            events.append(("backward", i))
            plain_backward(top, propagate_down, bottom)

        obj.backward = backward
    rng = np.random.RandomState(0)
    net.forward(x=rng.randn(2, 3, 6, 6).astype(np.float32), label=np.array([1, 3], np.float32))
    events.clear()
    net.backward()
    for name in ("relu", "scale"):
        i = list(net._layer_names).index(name)
        k = events.index(("backward", i))
        assert events[k - 1] == ("before_backward", i) and events[k + 1] == ("after_backward", i), events


def test_callbacks_fire_in_the_solvers_steps_without_changing_them(tmp_path):
    losses = []
    for with_callbacks in (False, True):
        d = tmp_path / ("cb%d" % with_callbacks)
        d.mkdir()
        solver = caffe.SGDSolver(str(lenet_lmdb_solver(d, 3)))
        events = []
        if with_callbacks:
            record(solver.net, events)
        run = []
        for _ in range(3):
            solver.step(1)
            run.append(float(solver.net.blobs["loss"].data))
        losses.append(run)
        if with_callbacks:
            n = len(solver.net.layers)
            assert len(events) == 3 * 4 * n
            assert events[: 2 * n : 2] == [("before_forward", i) for i in range(n)]
    assert losses[1] == losses[0]


def test_a_raising_callback_stops_the_pass_naming_layer_and_event():
    net = lenet_train()

    def boom(i):
        if net_names[i] == "ip1":
            raise ArithmeticError("callback gave up")

    net_names = list(net._layer_names)
    net.after_forward(boom)
    # The callback's own exception, as in pycaffe, noting the layer and event.
    with pytest.raises(ArithmeticError, match="callback gave up") as e:
        net.forward()
    assert any(re.search(r"layer 'ip1'.*after_forward", n) for n in e.value.__notes__), e.value.__notes__
    with pytest.raises(ValueError, match="callable"):
        net.before_forward(3)


def test_nccl_after_backward_adds_nothing_and_other_callbacks_still_run(tmp_path):
    solver = caffe.SGDSolver(str(lenet_lmdb_solver(tmp_path, 1)))
    nccl = caffe.NCCL(solver, caffe.NCCL.new_uid())
    calls = []
    solver.net.after_backward(nccl)
    solver.net.after_backward(calls.append)
    solver.step(1)
    assert calls == list(reversed(range(len(solver.net.layers))))
