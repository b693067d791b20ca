"""A fork's C++ layers as a shared library (tests/fixtures/cpp/layer_library.cpp:
Cube, y = a·x³ with a learnable a; HalfSquaredDiffLoss, Caffe's EuclideanLoss;
NonNegative, which throws on a negative input) in pycaffe:
caffe.load_layer_library, CAFFE_TCH_LAYER_LIBRARIES at import, and the caffe
binary's runs under Python (a net with both a Python layer and a C++ one)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import caffe

from conftest import ROOT, need, run_caffe_rc

LIB_DIR = ROOT / "target" / "release"

INPUTS = """layer { name: "data" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 } } }
"""
CUSTOM = INPUTS + """layer { name: "cube" type: "Cube" bottom: "data" top: "cube" scale_param { filler { value: 0.5 } } }
layer { name: "loss" type: "HalfSquaredDiffLoss" bottom: "cube" bottom: "target" top: "loss" }
"""
BUILTIN = INPUTS + """layer { name: "pow" type: "Power" bottom: "data" top: "pow" power_param { power: 3 } }
layer { name: "cube" type: "Scale" bottom: "pow" top: "cube" scale_param { axis: 0 num_axes: 0 filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "cube" bottom: "target" top: "loss" }
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    compiler = shutil.which("c++")
    need(compiler is not None, "a C++ compiler (c++)")
    need((LIB_DIR / "libcaffe.so").exists(), "libcaffe.so (run make)")
    out = tmp_path_factory.mktemp("layer_library") / "libcube_layers.so"
    subprocess.run(
        [compiler, "-std=c++17", "-O1", "-DCAFFE_TCH_NO_GLOG", "-shared", "-fPIC", "-o", str(out),
         str(ROOT / "tests" / "fixtures" / "cpp" / "layer_library.cpp"), "-I", str(ROOT / "cpp" / "include"),
         "-L", str(LIB_DIR), "-lcaffe", "-Wl,-rpath,%s" % LIB_DIR],
        check=True,
    )
    return out


def net_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_loaded_librarys_layers_compute_and_learn(library, tmp_path):
    types = caffe.load_layer_library(str(library))
    assert types == ["Cube", "HalfSquaredDiffLoss", "NonNegative", "Filled"]
    assert caffe.load_layer_library(str(library)) == types  # loaded once
    assert {"Cube", "HalfSquaredDiffLoss", "Python", "Convolution"} <= set(caffe.layer_type_list())

    net = caffe.Net(net_file(tmp_path, "custom.prototxt", "force_backward: true\n" + CUSTOM), caffe.TRAIN)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = rng.standard_normal((4, 3)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["target"].data[...] = t
    loss = net.forward()["loss"]
    cube = 0.5 * x.astype(np.float64) ** 3
    np.testing.assert_allclose(net.blobs["cube"].data, cube, rtol=1e-6)
    np.testing.assert_allclose(loss, ((cube - t) ** 2).sum() / 4 / 2, rtol=1e-5)
    net.backward()
    dcube = (cube - t) / 4
    np.testing.assert_allclose(net.blobs["data"].diff, 1.5 * x ** 2 * dcube, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.params["cube"][0].diff, [(x ** 3 * dcube).sum()], rtol=1e-5)

    # Five SGD steps with momentum: the same weights as Caffe's own layers give.
    weights = {}
    for name, text in (("custom", CUSTOM), ("builtin", BUILTIN)):
        net_path = net_file(tmp_path, name + ".prototxt", text)
        solver_path = net_file(
            tmp_path, name + "_solver.prototxt",
            'net: "%s" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" display: 0 solver_mode: CPU\n' % net_path,
        )
        solver = caffe.SGDSolver(solver_path)
        solver.net.blobs["data"].data[...] = x
        solver.net.blobs["target"].data[...] = t
        solver.step(5)
        weights[name] = solver.net.params["cube"][0].data.copy()
    assert weights["custom"][0] != 0.5
    np.testing.assert_allclose(weights["custom"], weights["builtin"], rtol=1e-5)


def test_the_variable_loads_libraries_at_import(library, tmp_path):
    script = "import caffe; print(sorted(t for t in caffe.layer_type_list() if t in ('Cube', 'NonNegative')))"
    env = dict(os.environ, CAFFE_TCH_LAYER_LIBRARIES=str(library))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['Cube', 'NonNegative']"
    env["CAFFE_TCH_LAYER_LIBRARIES"] = str(tmp_path / "missing.so")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "missing.so" in out.stderr and "CAFFE_TCH_LAYER_LIBRARIES" in out.stderr, out.stderr


def test_a_cpp_layer_beside_a_python_layer_in_the_caffe_binary(library, tmp_path):
    # A Python layer makes the binary run the command under Python, where the
    # library is loaded again from the same flag.
    net = net_file(
        tmp_path, "mixed.prototxt",
        INPUTS + 'layer { name: "ten" type: "Python" bottom: "data" top: "ten" python_param { module: "toys" layer: "TimesTen" } }\n'
        'layer { name: "cube" type: "Cube" bottom: "ten" top: "cube" scale_param { filler { value: 0.5 } } }\n'
        'layer { name: "loss" type: "HalfSquaredDiffLoss" bottom: "cube" bottom: "target" top: "loss" }\n',
    )
    rc, log = run_caffe_rc("time", "-model", net, "-iterations", "2", "-layer_library", library)
    assert rc == 0, log[-3000:]
    assert "Layer library" in log and "cube\tforward:" in log, log[-3000:]
    rc, log = run_caffe_rc("time", "-model", net, "-iterations", "1")
    assert rc != 0 and "Unknown layer type: Cube" in log, log[-3000:]


def test_a_layers_exception_names_the_layer(library, tmp_path):
    caffe.load_layer_library(str(library))
    net = caffe.Net(
        net_file(
            tmp_path, "guard.prototxt",
            'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 } } }\n'
            'layer { name: "guard" type: "NonNegative" bottom: "data" top: "out" }\n',
        ),
        caffe.TEST,
    )
    net.blobs["data"].data[...] = [1.0, 2.0]
    np.testing.assert_array_equal(net.forward()["out"], [1.0, 2.0])
    net.blobs["data"].data[...] = [1.0, -2.0]
    with pytest.raises(Exception, match="guard.*a negative input"):
        net.forward()


def filled(library, tmp_path, filler):
    """The learnable blob (4 x 3 x 5 x 5) that the library's Filled layer
    fills in LayerSetUp through caffe/filler.hpp's GetFiller."""
    caffe.load_layer_library(str(library))
    path = net_file(
        tmp_path, "filled.prototxt",
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } } }\n'
        'layer { name: "f" type: "Filled" bottom: "data" top: "out" convolution_param { weight_filler { %s } } }\n'
        % filler,
    )
    return caffe.Net(path, caffe.TEST).params["f"][0].data.astype(np.float64)


def test_caffes_fillers_in_a_librarys_layer(library, tmp_path):
    np.testing.assert_array_equal(filled(library, tmp_path, 'type: "constant" value: 2.5'), 2.5)
    w = filled(library, tmp_path, 'type: "uniform" min: -2 max: 3')
    assert w.min() >= -2 and w.max() <= 3 and abs(w.mean() - 0.5) < 0.4
    w = filled(library, tmp_path, 'type: "gaussian" mean: 1 std: 2')
    assert abs(w.mean() - 1) < 0.5 and abs(w.std() - 2) < 0.3
    # sparse 2 over a first axis of 4: each value kept with probability 1/2.
    w = filled(library, tmp_path, 'type: "gaussian" sparse: 2')
    assert 0.35 < (w == 0).mean() < 0.65
    w = filled(library, tmp_path, 'type: "positive_unitball"')
    assert w.min() >= 0
    np.testing.assert_allclose(w.reshape(4, -1).sum(axis=1), 1, rtol=1e-5)
    # Xavier: uniform within sqrt(3 / n); n = 75 inputs (3·5·5), 100 outputs, or their mean.
    for norm, n in (("", 75), ("variance_norm: FAN_OUT", 100), ("variance_norm: AVERAGE", 87.5)):
        w = filled(library, tmp_path, 'type: "xavier" ' + norm)
        bound = np.sqrt(3 / n)
        assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.9 * bound, (norm, np.abs(w).max(), bound)
    w = filled(library, tmp_path, 'type: "msra"')
    assert abs(w.std() - np.sqrt(2 / 75)) < 0.15 * np.sqrt(2 / 75) and abs(w.mean()) < 0.03
    # Bilinear kernels of side 5: f = 3, centre 2/3, the same kernel in every channel.
    w = filled(library, tmp_path, 'type: "bilinear"')
    ramp = 1 - np.abs(np.arange(5) / 3 - 2 / 3)
    np.testing.assert_allclose(w, np.broadcast_to(np.outer(ramp, ramp), w.shape), rtol=1e-6)

    with pytest.raises(Exception, match="layer 'f'.*Unknown filler name: nonesuch"):
        filled(library, tmp_path, 'type: "nonesuch"')
    with pytest.raises(Exception, match="constant filler does not take sparse"):
        filled(library, tmp_path, 'type: "constant" sparse: 3')


def test_the_random_seed_reaches_a_librarys_fillers(library, tmp_path):
    # caffe.set_random_seed seeds the library's Caffe generator too, as the
    # solver's random_seed does (Caffe's one generator).
    draws = []
    for seed in (5, 5, 6):
        caffe.set_random_seed(seed)
        draws.append(filled(library, tmp_path, 'type: "gaussian"'))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
