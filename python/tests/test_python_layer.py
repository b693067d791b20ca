"""Python layers (type: "Python", caffe.Layer subclasses): in `import caffe`
scripts, through the solvers, and from the `caffe` binary (which runs
itself under Python for them). The layers are in pylayers/ and in the
example examples/python_layers/ (pyloss.py)."""
import re
import shutil
import sys

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2
from conftest import EXAMPLE, FIX, PYLAYERS, run_caffe_rc

sys.path[:0] = [str(PYLAYERS), str(EXAMPLE)]

LENET = FIX / "lenet"
SGD20 = LENET / "sgd20"


def write(path, text):
    path.write_text(text)
    return str(path)


def python_layer(name, bottoms, tops, module, cls, param_str=None, extra=""):
    bottoms = "".join(' bottom: "%s"' % b for b in bottoms)
    tops = "".join(' top: "%s"' % t for t in tops)
    ps = ' param_str: "%s"' % param_str if param_str is not None else ""
    return 'layer { name: "%s" type: "Python"%s%s python_param { module: "%s" layer: "%s"%s } %s}\n' % (
        name,
        bottoms,
        tops,
        module,
        cls,
        ps,
        extra,
    )


# ----- linear regression with a Python Euclidean loss -----

# The example's net: y = 0.5·(x0 + x1 + x2) + 0.25 from a fixed InnerProduct,
# which `pred` must learn, through the Python loss of pyloss.py.
LINREG = (EXAMPLE / "linreg.prototxt").read_text()
PY_LOSS = LINREG[LINREG.index("layer {\n  name: \"loss\""):]
LINREG = LINREG[: LINREG.index(PY_LOSS)]


def linreg_solver(tmp_path, loss_layer, name="linreg", max_iter=150):
    net = write(tmp_path / ("%s.prototxt" % name), LINREG + loss_layer)
    return write(
        tmp_path / ("%s_solver.prototxt" % name),
        'net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: %d\ndisplay: 50\nrandom_seed: 7\n'
        'snapshot_prefix: "%s/%s"\n' % (net, max_iter, tmp_path, name),
    )


NATIVE_LOSS = 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "target" top: "loss" }\n'


def test_python_euclidean_loss_trains_linear_regression_to_the_known_solution(tmp_path):
    # One solver after the other: DummyData draws from the one seeded generator.
    traces = {}
    for name, loss_layer in (("native", NATIVE_LOSS), ("linreg", PY_LOSS)):
        solver = caffe.SGDSolver(linreg_solver(tmp_path, loss_layer, name))
        traces[name] = []
        for _ in range(150):
            solver.step(1)
            traces[name].append(solver.net.blobs["loss"].data.item())
        if name == "native":
            native = solver
    losses = traces["linreg"]
    # The same data (seed) and gradients as Caffe's own EuclideanLoss.
    np.testing.assert_allclose(losses, traces["native"], rtol=1e-5, atol=1e-9)
    w, b = (p.data for p in solver.net.params["pred"])
    np.testing.assert_allclose(w, [[0.5, 0.5, 0.5]], atol=1e-4)
    np.testing.assert_allclose(b, [0.25], atol=1e-4)
    np.testing.assert_allclose(w, native.net.params["pred"][0].data, atol=1e-6)
    assert losses[-1] < 1e-8 < losses[0]
    # The loss layer is the Python object itself, as in pycaffe.
    layer = solver.net.layer_dict["loss"]
    assert isinstance(layer, caffe.Layer) and layer.type == "Python" and layer.residual.shape == (16, 1)


# ----- param_str, phase, and the Python objects -----


def test_param_str_phase_and_layer_objects(tmp_path):
    net_file = write(
        tmp_path / "scale.prototxt",
        'force_backward: true\nlayer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        + python_layer("s", ["x"], ["y"], "toys", "Scale", "{'factor': 2.5}"),
    )
    for phase in (caffe.TRAIN, caffe.TEST):
        net = caffe.Net(net_file, phase)
        layer = net.layers[1]
        assert layer.param_str == "{'factor': 2.5}" and layer.factor == 2.5
        assert layer.phase == phase == layer.seen_phase
        assert net.layer_dict["s"] is layer and isinstance(layer.layer_param, caffe_pb2.LayerParameter)
        assert layer.layer_param.python_param.layer == "Scale"
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    y = net.forward(x=x)["y"]
    np.testing.assert_array_equal(y, 2.5 * x)
    g = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(net.backward(y=g)["x"], 2.5 * g)
    assert "Python" in caffe.layer_type_list()


def test_in_place_python_layer(tmp_path):
    """A top named like its bottom is one blob, as in Caffe: the layer reads
    and writes it in place, and backward finds the top's diff in it."""
    base = (
        'force_backward: true\nlayer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "h" inner_product_param { num_output: 3 '
        'weight_filler { type: "gaussian" std: 0.5 } } }\n'
    )
    nets = []
    for in_place in (True, False):
        caffe.set_random_seed(5)
        top = "h" if in_place else "h2"
        nets.append(caffe.Net(write(tmp_path / ("ip%d.prototxt" % in_place), base + python_layer("s", ["h"], [top], "toys", "Scale", "{'factor': -3}")), caffe.TRAIN))
    x = np.random.RandomState(2).randn(2, 4).astype(np.float32)
    g = np.random.RandomState(3).randn(2, 3).astype(np.float32)
    a = nets[0].forward(x=x)["h"].copy()
    b = nets[1].forward(x=x)["h2"].copy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(nets[0].backward(h=g)["x"], nets[1].backward(h2=g)["x"])
    np.testing.assert_array_equal(nets[0].params["ip"][0].diff, nets[1].params["ip"][0].diff)


# ----- a Python data layer feeding LeNet -----


def lenet_with_python_data(tmp_path):
    """BVLC's LeNet (the fixture's TRAIN net) with its Input replaced by
    toys.NpyData serving Caffe's first LMDB batch."""
    net = caffe_pb2.NetParameter()
    text_format.Merge((LENET / "net.prototxt").read_text(), net)
    data = next(l for l in net.layer if l.type == "Input" and l.include[0].phase == caffe_pb2.TRAIN)
    data.type = "Python"
    data.ClearField("input_param")
    data.python_param.module = "toys"
    data.python_param.layer = "NpyData"
    data.python_param.param_str = "%s %s 64" % (SGD20 / "iter0_data.npy", SGD20 / "iter0_label.npy")
    return write(tmp_path / "lenet_pydata.prototxt", text_format.MessageToString(net))


def lenet_solver(tmp_path, net, name):
    return write(
        tmp_path / ("%s_solver.prototxt" % name),
        'train_net: "%s"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "inv"\ngamma: 0.0001\n'
        'power: 0.75\ndisplay: 1\nmax_iter: 4\nrandom_seed: 1\nweights: "%s"\nsnapshot_after_train: false\n'
        'snapshot_prefix: "%s/%s"\n' % (net, LENET / "weights.caffemodel", tmp_path, name),
    )


def test_python_data_layer_feeds_lenet(tmp_path):
    solver = caffe.SGDSolver(lenet_solver(tmp_path, lenet_with_python_data(tmp_path), "pydata"))
    native = caffe.SGDSolver(lenet_solver(tmp_path, LENET / "net.prototxt", "input"))
    batch, labels = np.load(SGD20 / "iter0_data.npy"), np.load(SGD20 / "iter0_label.npy")
    losses = []
    for _ in range(4):
        solver.step(1)
        native.net.blobs["data"].data[...] = batch
        native.net.blobs["label"].data[...] = labels
        native.step(1)
        losses.append(solver.net.blobs["loss"].data.item())
        assert losses[-1] == native.net.blobs["loss"].data.item()
    # BVLC Caffe's loss on this batch with these weights (fixtures/lenet/sgd20).
    assert abs(losses[0] - 2.37446404) < 1e-4
    assert losses[-1] < losses[0]
    assert solver.net.layers[0].served == 4
    np.testing.assert_array_equal(solver.net.blobs["data"].data, batch)
    for name in solver.net.params:
        for a, b in zip(solver.net.params[name], native.net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


# ----- gradients through Python layers, against the native layers -----


def middle_net(python, around=False):
    """conv → ReLU → InnerProduct → per-channel Scale → softmax loss; ReLU and
    Scale are Python layers or Caffe's own. `around`: conv's output also goes
    around the ReLU (an Eltwise sum after it)."""
    relu = (
        python_layer("relu", ["c1"], ["r1"], "toys", "ReLU")
        if python
        else 'layer { name: "relu" type: "ReLU" bottom: "c1" top: "r1" }\n'
    )
    scale = (
        python_layer("scale", ["f"], ["g"], "toys", "ChannelScale", "0.7")
        if python
        else 'layer { name: "scale" type: "Scale" bottom: "f" top: "g" scale_param { axis: 1 bias_term: false '
        'filler { type: "constant" value: 0.7 } } }\n'
    )
    return (
        'name: "middle"\nforce_backward: true\n'
        'layer { name: "x" type: "Input" top: "x" top: "label" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } shape { dim: 2 } } }\n'
        'layer { name: "conv1" type: "Convolution" bottom: "x" top: "c1" convolution_param { num_output: 4 kernel_size: 3 '
        'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }\n'
        + relu
        + (
            'layer { name: "sum" type: "Eltwise" bottom: "r1" bottom: "c1" top: "s1" }\n'
            if around
            else 'layer { name: "same" type: "Split" bottom: "r1" top: "s1" }\n'
        )
        + 'layer { name: "ip" type: "InnerProduct" bottom: "s1" top: "f" inner_product_param { num_output: 5 '
        'weight_filler { type: "gaussian" std: 0.2 } } }\n'
        + scale
        + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "g" bottom: "label" top: "loss" }\n'
    )


@pytest.mark.parametrize("around", [False, True])
def test_gradients_through_python_layers_equal_the_native_layers(tmp_path, around):
    nets = []
    for python in (True, False):
        caffe.set_random_seed(3)
        nets.append(caffe.Net(write(tmp_path / ("m%d.prototxt" % python), middle_net(python, around)), caffe.TRAIN))
    py, native = nets
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 6, 6).astype(np.float32)
    label = np.array([1, 3], dtype=np.float32)
    for net in nets:
        net.forward(x=x, label=label)
        net.backward()
    # In a chain the numbers are the same. Around the ReLU, conv1's gradient
    # is the sum of two paths, which autograd adds before conv1's backward and
    # the staged backward after it: the same up to rounding.
    same = np.testing.assert_array_equal if not around else lambda a, b, err_msg: np.testing.assert_allclose(
        a, b, rtol=1e-5, atol=1e-7, err_msg=err_msg
    )
    assert py.blobs["loss"].data.item() == native.blobs["loss"].data.item()
    for b in ("x", "c1", "r1", "s1", "f", "g"):
        np.testing.assert_array_equal(py.blobs[b].data, native.blobs[b].data, err_msg=b)
        same(py.blobs[b].diff, native.blobs[b].diff, err_msg=b + " diff")
        assert np.abs(py.blobs[b].diff).max() > 0, b
    assert list(py.params) == list(native.params) == ["conv1", "ip", "scale"]
    for name in py.params:
        for j, (a, b) in enumerate(zip(py.params[name], native.params[name])):
            np.testing.assert_array_equal(a.data, b.data, err_msg="%s[%d]" % (name, j))
            same(a.diff, b.diff, err_msg="%s[%d] diff" % (name, j))
    # A backward over a range that ends inside the net, and the layer's blob as the object sees it.
    py.backward(start="scale", end="ip", g=np.ones((2, 5), np.float32))
    np.testing.assert_array_equal(py.layers[py._layer_names.index("scale")].blobs[0].data, np.full(5, 0.7, np.float32))


def test_python_layer_blobs_train_and_are_saved(tmp_path):
    net_file = write(tmp_path / "m.prototxt", middle_net(True, around=True))
    solver_file = write(
        tmp_path / "s.prototxt",
        'train_net: "%s"\nbase_lr: 0.5\nlr_policy: "fixed"\nmax_iter: 3\ndisplay: 0\nrandom_seed: 3\n'
        'snapshot_prefix: "%s/m"\n' % (net_file, tmp_path),
    )
    solver = caffe.SGDSolver(solver_file)
    rng = np.random.RandomState(1)
    solver.net.blobs["x"].data[...] = rng.randn(2, 3, 6, 6)
    solver.net.blobs["label"].data[...] = [0, 4]
    solver.step(3)
    w = solver.net.params["scale"][0].data.copy()
    assert not np.allclose(w, 0.7)
    # The layer object sees the trained values (views of the net's memory).
    np.testing.assert_array_equal(solver.net.layer_dict["scale"].blobs[0].data, w)
    model, _ = solver.snapshot()
    saved = caffe_pb2.NetParameter.FromString(open(model, "rb").read())
    blob = next(l for l in saved.layer if l.name == "scale").blobs[0]
    np.testing.assert_array_equal(np.array(blob.data, np.float32), w)
    again = caffe.Net(net_file, model, caffe.TEST)
    np.testing.assert_array_equal(again.params["scale"][0].data, w)


# ----- errors -----


def one_layer_net(tmp_path, cls, param_str=None, module=None):
    module = module or ("toys" if cls != "Missing" else "no_such_layer_module")
    return write(
        tmp_path / ("%s_%s.prototxt" % (module, cls)),
        'force_backward: true\nlayer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        + python_layer("bad", ["x"], ["y"], module, cls, param_str),
    )


def notes(raised):
    """The notes caffe-tch added to an exception a Python layer raised."""
    return "\n".join(getattr(raised.value, "__notes__", []))


def test_python_layer_errors_name_layer_module_and_traceback(tmp_path):
    # An exception from Python (the import, the layer's code) is the
    # script's, as in pycaffe, with the net's one-line error (file, line,
    # layer, traceback) as a note.
    with pytest.raises(ModuleNotFoundError) as e:
        caffe.Net(one_layer_net(tmp_path, "Missing"), caffe.TEST)
    assert re.search(r"layer 'bad' \(type Python\).*module 'no_such_layer_module' not found.*PYTHONPATH", notes(e)), notes(e)
    with pytest.raises(ModuleNotFoundError) as e:
        caffe.Net(one_layer_net(tmp_path, "Layer", module="imports_missing"), caffe.TEST)
    assert re.search(r"imports_missing.Layer: import raised ModuleNotFoundError: No module named 'no_such_dependency_module' \(traceback.*imports_missing.py", notes(e)), notes(e)
    with pytest.raises(AttributeError) as e:
        caffe.Net(one_layer_net(tmp_path, "NoSuchClass"), caffe.TEST)
    assert "toys.py) has no 'NoSuchClass'" in notes(e), notes(e)
    with pytest.raises(RuntimeError, match="setup refused: p1") as e:
        caffe.Net(one_layer_net(tmp_path, "RaiseInSetup", "p1"), caffe.TEST)
    msg = notes(e)
    assert "layer 'bad' (type Python)" in msg and "toys.RaiseInSetup: setup raised RuntimeError: setup refused: p1" in msg
    assert re.search(r'traceback.*toys\.py", line \d+, in setup', msg), msg
    net = caffe.Net(one_layer_net(tmp_path, "RaiseInForward"), caffe.TEST)
    with pytest.raises(ValueError, match="forward refused") as e:
        net.forward()
    assert re.search(r"toys.RaiseInForward: forward raised ValueError: forward refused \(traceback.*in forward", notes(e))
    net = caffe.Net(one_layer_net(tmp_path, "RaiseInBackward"), caffe.TRAIN)
    net.forward()
    with pytest.raises(ZeroDivisionError) as e:
        net.backward(y=np.ones((2, 3), np.float32))
    assert "RaiseInBackward: backward raised ZeroDivisionError: backward refused" in notes(e)
    with pytest.raises(KeyboardInterrupt):
        caffe.Net(one_layer_net(tmp_path, "Interrupted"), caffe.TEST).forward()
    # The net is still usable after a layer's error.
    np.testing.assert_array_equal(net.forward(x=-np.ones((2, 3), np.float32))["y"], np.zeros((2, 3)))


# ----- the caffe binary -----


def test_caffe_train_and_time_run_python_layers(tmp_path, monkeypatch):
    # The example as README runs it, from a copy of the folder.
    shutil.copytree(EXAMPLE, tmp_path / "examples" / "python_layers", ignore=shutil.ignore_patterns("*.caffemodel", "*.solverstate", "__pycache__"))
    solver_file = "examples/python_layers/linreg_solver.prototxt"
    rc, log = run_caffe_rc("train", "-solver", solver_file, cwd=tmp_path)
    assert rc == 0, log[-3000:]
    assert "Optimization Done." in log and "Train net output #0: loss" in log
    # The same run in this process (same seed, same data) ends on the same weights.
    monkeypatch.chdir(tmp_path)
    solver = caffe.SGDSolver(solver_file)
    solver.step(150)
    prefix = tmp_path / "examples" / "python_layers"
    trained = caffe.Net(str(prefix / "linreg.prototxt"), str(prefix / "linreg_iter_150.caffemodel"), caffe.TEST)
    for a, b in zip(trained.params["pred"], solver.net.params["pred"]):
        np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(trained.params["pred"][0].data, [[0.5, 0.5, 0.5]], atol=1e-4)
    rc, log = run_caffe_rc("time", "-model", prefix / "linreg.prototxt", "-iterations", "2")
    assert rc == 0, log[-3000:]
    assert re.search(r"loss\tbackward: [\d.e-]+ ms", log) and "Average Forward-Backward" in log


ERRORS = [
    ("Missing", r"layer 'bad' \(type Python\): Python layer no_such_layer_module.Missing: module 'no_such_layer_module' not found"),
    ("RaiseInSetup", r"layer 'bad' \(type Python\): Python layer toys.RaiseInSetup: setup raised RuntimeError: setup refused:  \(traceback, innermost first: \".*toys.py\", line \d+, in setup"),
    ("RaiseInForward", r"layer 'bad' \(type Python\): Python layer toys.RaiseInForward: forward raised ValueError: forward refused \(traceback, innermost first: \".*toys.py\", line \d+, in forward"),
]


def check_error_run(rc, log, net_file, says):
    lines = log.strip().splitlines()
    assert rc == 1 and lines[-1].startswith("caffe: error: %s:3:1: " % net_file), log
    assert re.search(says, lines[-1]), lines[-1]
    assert "panicked" not in log and "Traceback" not in log


def test_caffe_binary_python_layer_errors(tmp_path):
    # The binary, run under Python for the net: one error line, exit code 1.
    cls, says = ERRORS[0]
    net_file = one_layer_net(tmp_path, cls)
    rc, log = run_caffe_rc("forward", "-model", net_file, "-out", tmp_path / "out")
    check_error_run(rc, log, net_file, says)
    rc, log = run_caffe_rc(
        "forward", "-model", one_layer_net(tmp_path, "Scale"), "-out", tmp_path / "out", CAFFE_TCH_PYTHON="/nonexistent/python3"
    )
    assert rc == 1 and log.strip().splitlines()[-1].startswith("caffe: error: "), log
    assert "layer 'bad' is a Python layer (toys.Scale)" in log and "/nonexistent/python3" in log


@pytest.mark.parametrize("cls,says", ERRORS)
def test_command_line_under_python_python_layer_errors(tmp_path, capfd, cls, says):
    """What the binary runs under Python (caffe._cli's entry), in this process."""
    net_file = one_layer_net(tmp_path, cls)
    capfd.readouterr()
    rc = caffe._caffe.cli_main(["caffe", "forward", "-model", net_file, "-out", str(tmp_path / "out")], sys.executable)
    check_error_run(rc, capfd.readouterr().err, net_file, says)


def test_every_python_layer_runs_its_backward_as_in_caffe(tmp_path):
    # Caffe's Net::Backward calls each layer's Backward whatever reaches it.
    # A chain of Python layers, backward with no forward before: the diff a
    # script gave the last top comes through them all.
    net = caffe.Net(write(tmp_path / "chain.prototxt", "force_backward: true\n"
        "layer { name: 'x' type: 'Input' top: 'x' input_param { shape { dim: 4 dim: 3 } } }\n"
        + python_layer("one", ["x"], ["y1"], "toys", "TimesTen")
        + python_layer("two", ["y1"], ["y2"], "toys", "TimesTen")), caffe.TRAIN)
    net.blobs["y2"].diff[...] = 7
    net.backward()
    np.testing.assert_array_equal(net.blobs["x"].diff, np.full((4, 3), 700, np.float32))
    # A layer whose forward leaves its top alone and whose backward writes its
    # blob's diff: its backward runs though no diff was given.
    net = caffe.Net(one_layer_net(tmp_path, "OwnDiffOnBackward"), caffe.TRAIN)
    net.forward()
    net.backward()
    assert net.layers[list(net._layer_names).index("bad")].blobs[0].diff[0] == 1
