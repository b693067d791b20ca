"""caffe's solvers: each type's first step against its rule, the LeNet loss
trace against `caffe train` (and BVLC's), and snapshots `caffe train` resumes."""
import re
import time

import numpy as np
import pytest

import caffe
from conftest import FIX, REF, lenet_lmdb_solver, run_caffe

TB = FIX / "lenet" / "train_backward"


def input_solver(tmp_path, solver_type):
    """A solver on the LeNet fixture net (Input layers, TRAIN), from BVLC's weights."""
    s = tmp_path / "solver.prototxt"
    s.write_text(
        'train_net: "%s"\nbase_lr: 0.01\nlr_policy: "fixed"\nmomentum: %g\nmomentum2: 0.999\n'
        'weight_decay: 0.0005\ndisplay: 0\nmax_iter: 10\nsnapshot_prefix: "%s/x"\nrandom_seed: 1\n'
        'weights: "%s"\ntype: "%s"\n'
        % (
            FIX / "lenet" / "net.prototxt",
            0.0 if solver_type in ("AdaGrad", "RMSProp") else 0.9,  # Caffe refuses momentum there
            tmp_path,
            FIX / "lenet" / "weights.caffemodel",
            solver_type,
        )
    )
    return s


def feed_train_backward(net):
    for name in net.inputs:
        x = np.load(TB / "blobs" / ("%s.npy" % name))
        net.blobs[name].reshape(*x.shape)
        net.blobs[name].data[...] = x
    net.reshape()


# Each rule's first update from zero history, given g' = grad + decay·w (lr 0.01).
FIRST_STEP = {
    "SGD": lambda g: 0.01 * g,
    "Nesterov": lambda g: 1.9 * 0.01 * g,
    "AdaGrad": lambda g: 0.01 * np.sign(g),
    "RMSProp": lambda g: 0.01 * g / np.sqrt(0.01 * g * g),
    "Adam": lambda g: 0.01 * np.sign(g),
    "AdaDelta": None,
}
CLASSES = {
    "SGD": caffe.SGDSolver,
    "Nesterov": caffe.NesterovSolver,
    "AdaGrad": caffe.AdaGradSolver,
    "RMSProp": caffe.RMSPropSolver,
    "AdaDelta": caffe.AdaDeltaSolver,
    "Adam": caffe.AdamSolver,
}


@pytest.mark.parametrize("kind", list(CLASSES))
def test_each_solver_step(kind, tmp_path):
    path = input_solver(tmp_path, kind)
    solver = CLASSES[kind](str(path))
    assert solver.type == kind and solver.iter == 0 and solver.test_nets == []
    # The class decides the rule whatever the file says, as in pycaffe.
    assert caffe.SGDSolver(str(path)).type == "SGD" 
    net = solver.net
    feed_train_backward(net)
    w0 = {n: [b.data.copy() for b in bs] for n, bs in net.params.items()}
    held = net.params["ip2"][0].data
    solver.step(1)
    assert solver.iter == 1
    assert abs(float(net.blobs["loss"].data) - 2.41044020652771) < 1e-3
    assert held is not None and not np.array_equal(held, w0["ip2"][0])  # updated in place
    rule = FIRST_STEP[kind]
    for n, bs in net.params.items():
        for j, b in enumerate(bs):
            g = np.load(TB / "params" / ("%s_%d_diff.npy" % (n, j))) + 0.0005 * w0[n][j]
            assert np.isfinite(b.data).all()
            if rule is None:
                assert not np.array_equal(b.data, w0[n][j])
                continue
            big = np.abs(g) > 1e-3  # away from the rules' δ
            lr_mult = 2.0 if j == 1 else 1.0  # LeNet's biases learn at twice the rate
            expect = w0[n][j] - lr_mult * rule(np.where(big, g, 1.0))
            np.testing.assert_allclose(b.data[big], expect[big], rtol=1e-3, atol=1e-5, err_msg="%s %s[%d]" % (kind, n, j))


def test_apply_update_and_get_solver(tmp_path):
    path = input_solver(tmp_path, "Adam")
    solver = caffe.get_solver(str(path))
    assert isinstance(solver, caffe.AdamSolver)
    sgd = caffe.SGDSolver(str(input_solver(tmp_path, "SGD")))
    net = sgd.net
    feed_train_backward(net)
    w0 = net.params["ip1"][0].data.copy()
    net.clear_param_diffs()
    net.forward()
    net.backward()
    g = net.params["ip1"][0].diff.copy()
    sgd.apply_update()
    assert sgd.iter == 0
    np.testing.assert_allclose(net.params["ip1"][0].data, w0 - 0.01 * (g + 0.0005 * w0), rtol=1e-5, atol=1e-7)
    # share_weights: another net on the train net's memory sees every update.
    other = caffe.Net(str(FIX / "lenet" / "net.prototxt"), caffe.TEST)
    sgd.share_weights(other)
    sgd.step(1)
    for n, bs in net.params.items():
        for j, b in enumerate(bs):
            np.testing.assert_array_equal(other.params[n][j].data, b.data, err_msg="%s[%d]" % (n, j))
    # A backward after the step (whose own backward spent its graph) runs the
    # forward it needs first: the gradient is that of a forward and backward.
    net.clear_param_diffs()
    net.backward()
    g = net.params["ip1"][0].diff.copy()
    assert np.abs(g).max() > 1e-3
    net.clear_param_diffs()
    net.forward()
    net.backward()
    np.testing.assert_array_equal(net.params["ip1"][0].diff, g)
    # After another step (its backward spends its graph), a blob written
    # before a forward from the next layer is read there, and the backward
    # over those layers runs.
    sgd.step(1)
    net.blobs["pool2"].data[...] *= 0.5
    net.forward(start="ip1")
    net.clear_param_diffs()
    net.backward(end="ip1")
    assert np.abs(net.params["ip1"][0].diff).max() > 0


def test_solver_from_string_steps_as_from_file(tmp_path):
    """get_solver_from_string builds the solver its text names and trains as
    the same text read from a file does; solver.param reads the parameters."""
    path = input_solver(tmp_path, "Adam")
    text = path.read_text()
    from_text = caffe.get_solver_from_string(text)
    from_file = caffe.get_solver(str(path))
    assert isinstance(from_text, caffe.AdamSolver) and from_text.type == "Adam"
    for s in (from_text, from_file):
        feed_train_backward(s.net)
        s.step(2)
    assert from_text.iter == 2
    for n, bs in from_file.net.params.items():
        for j, b in enumerate(bs):
            np.testing.assert_array_equal(from_text.net.params[n][j].data, b.data, err_msg="%s[%d]" % (n, j))
    p = from_text.param
    assert isinstance(p, caffe.proto.caffe_pb2.SolverParameter)
    assert (p.max_iter, p.type, p.random_seed) == (10, "Adam", 1)
    assert (p.base_lr, p.momentum2) == (pytest.approx(0.01), pytest.approx(0.999))  # float fields
    # Caffe's legacy solver_type is upgraded in text as in files.
    legacy = caffe.get_solver_from_string(text.replace('type: "Adam"', "solver_type: NESTEROV"))
    assert isinstance(legacy, caffe.NesterovSolver)
    with pytest.raises(ValueError, match=r"<solver string>:1"):
        caffe.get_solver_from_string("base_lr: oops")


def test_timer_and_log(capfd):
    t = caffe.Timer()
    assert t.ms == 0.0
    t.start()
    time.sleep(0.02)
    ms = t.ms  # reading it while running stops it
    assert ms >= 18
    time.sleep(0.01)
    assert t.ms == ms
    caffe.init_log(0)
    caffe.log("hello from python")
    caffe.init_log(1)
    caffe.log("not written at level 1")
    caffe.init_log(0)
    err = capfd.readouterr().err
    assert re.search(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ _caffe\.cpp:1\] hello from python$", err, re.M), err
    assert "not written" not in err


def lmdb_solver(tmp_path, max_iter):
    return lenet_lmdb_solver(tmp_path, max_iter)


def log_losses(log):
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"Iteration (\d+) \(.*\), loss = (\S+)", log)}


def test_lenet_loss_trace_equals_caffe_train(tmp_path):
    path = lmdb_solver(tmp_path, 20)
    solver = caffe.SGDSolver(str(path))
    ours = []
    for _ in range(20):
        solver.step(1)
        ours.append(float(solver.net.blobs["loss"].data))
    log = run_caffe("train", "-solver", path)
    theirs = log_losses(log)
    assert sorted(theirs)[:20] == list(range(20))
    for i, v in enumerate(ours):
        assert "%g" % v == theirs[i], (i, v, theirs[i])
    bvlc = np.loadtxt(FIX / "lenet" / "sgd20" / "loss.txt")[:, 1]
    rel = np.abs(np.array(ours) - bvlc) / bvlc
    assert rel.max() < 1e-3, rel.max()


def test_snapshot_resumed_by_caffe_train(tmp_path):
    path = lmdb_solver(tmp_path, 12)
    solver = caffe.SGDSolver(str(path))
    solver.step(8)
    model, state = solver.snapshot()
    assert model.endswith("lenet_iter_8.caffemodel") and state.endswith("lenet_iter_8.solverstate")
    w8 = {n: [b.data.copy() for b in bs] for n, bs in solver.net.params.items()}
    # A resumed run restarts its data from the first record (Caffe's too), so
    # the reference is a Python solver restored from the same snapshot.
    again = caffe.SGDSolver(str(path))
    again.restore(state)
    assert again.iter == 8
    for n, bs in again.net.params.items():
        for j, b in enumerate(bs):
            np.testing.assert_array_equal(b.data, w8[n][j])
    ours = []
    for _ in range(4):
        again.step(1)
        ours.append(float(again.net.blobs["loss"].data))
    theirs = log_losses(run_caffe("train", "-solver", path, "-snapshot", state))
    assert [theirs[i] for i in range(8, 12)] == ["%g" % v for v in ours]


def test_callbacks_run_in_caffes_order(tmp_path):
    """add_callback: on_start at each iteration's start, on_gradients with the
    iteration's gradients before the update; watching changes nothing, and a
    diff written in on_gradients is the one the update applies."""
    path = lmdb_solver(tmp_path, 4)
    plain, watched = caffe.SGDSolver(str(path)), caffe.SGDSolver(str(path))
    seen = []

    def on_gradients():
        d = watched.net.params["ip2"][0].diff
        seen.append(("gradients", watched.iter, float(np.abs(d).sum())))

    watched.add_callback(lambda: seen.append(("start", watched.iter)), on_gradients)
    plain.step(3)
    watched.step(3)
    assert [e[:2] for e in seen] == [(k, i) for i in range(3) for k in ("start", "gradients")]
    assert all(e[2] > 0 for e in seen if e[0] == "gradients")
    for n, bs in plain.net.params.items():
        for j, b in enumerate(bs):
            np.testing.assert_array_equal(watched.net.params[n][j].data, b.data, err_msg="%s[%d]" % (n, j))

    class ZeroGradients:
        calls = 0

        def on_start(self):
            pass

        def on_gradients(self):
            ZeroGradients.calls += 1
            for bs in zeroed.net.params.values():
                for b in bs:
                    b.diff[...] = 0

    zeroed = caffe.SGDSolver(str(path))
    zeroed.add_callback(ZeroGradients())
    w0 = {n: [b.data.copy() for b in bs] for n, bs in zeroed.net.params.items()}
    zeroed.solve()  # max_iter 4, through the callbacks too
    assert zeroed.iter == 4 and ZeroGradients.calls == 4
    # Only weight decay moved the weights (lr from the "inv" policy, times the
    # net's lr_mult: 1 for weights, 2 for biases; momentum carries earlier steps).
    for n, bs in zeroed.net.params.items():
        for j, b in enumerate(bs):
            w, v = w0[n][j].astype(np.float64), np.zeros_like(w0[n][j], dtype=np.float64)
            for it in range(4):
                lr = 0.01 * (1 + 0.0001 * it) ** -0.75 * (1, 2)[j]
                v = 0.9 * v + lr * 0.0005 * w
                w = w - v
            np.testing.assert_allclose(b.data, w, rtol=2e-6, atol=1e-9, err_msg="%s[%d]" % (n, j))
    with pytest.raises(TypeError, match="two callables"):
        zeroed.add_callback(1, 2)


def test_bad_solver_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        caffe.SGDSolver(str(tmp_path / "missing_solver.prototxt"))
    bad = tmp_path / "s.prototxt"
    bad.write_text('train_net: "%s/none.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n' % tmp_path)
    with pytest.raises((IOError, ValueError), match="none.prototxt"):
        caffe.SGDSolver(str(bad))


def test_test_net_follows_training_as_in_the_lenet_tutorial(tmp_path):
    # Caffe's 01-learning-lenet loop: step the solver, forward
    # solver.test_nets[0] by hand. After the solver's first test pass (at
    # iteration 0) the test net uses the train net's weight memory, so it sees
    # every update, as in Caffe (ShareTrainedLayersWith).
    lmdb = REF / "lmdb" / "fmnist_train2k_lmdb"
    net = (FIX / "lenet" / "sgd20" / "lenet_train_test.prototxt").read_text()
    net = net.replace('"lmdb/fmnist_train_lmdb"', '"%s"' % lmdb).replace('"lmdb/fmnist_test_lmdb"', '"%s"' % lmdb)
    (tmp_path / "net.prototxt").write_text(net)
    path = tmp_path / "solver.prototxt"
    path.write_text(
        'net: "%s/net.prototxt"\ntest_iter: 1\ntest_interval: 500\nbase_lr: 0.01\nmomentum: 0.9\n'
        'lr_policy: "fixed"\ndisplay: 0\nmax_iter: 100\nsnapshot_prefix: "%s/x"\nrandom_seed: 1\n' % (tmp_path, tmp_path)
    )
    solver = caffe.SGDSolver(str(path))
    test = solver.test_nets[0]
    accuracies = []
    for it in range(30):
        solver.step(1)
        if it == 0:  # the solver's own test pass, on the initial weights
            initial = float(test.blobs["accuracy"].data)
        for name, blobs in solver.net.params.items():
            for j, b in enumerate(blobs):
                np.testing.assert_array_equal(test.params[name][j].data, b.data, err_msg="%s %d at %d" % (name, j, it))
        if it % 10 == 9:
            test.forward()
            accuracies.append(float(test.blobs["accuracy"].data))
    assert accuracies[-1] > initial + 0.3, (initial, accuracies)
    # The same memory: a write to the train net's weights is the test net's.
    before = test.blobs["ip2"].data.copy()
    bias = solver.net.params["ip2"][1].data.copy()
    solver.net.params["ip2"][1].data[...] = 7
    np.testing.assert_array_equal(test.params["ip2"][1].data, 7)
    test.forward(start="ip2")
    np.testing.assert_allclose(test.blobs["ip2"].data - before, np.broadcast_to(7 - bias, before.shape), atol=1e-4)
