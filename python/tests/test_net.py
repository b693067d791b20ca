"""caffe.Net: construction, parity with BVLC Caffe and with `caffe forward`,
views that write through, forward/backward ranges, weights I/O, bad input."""
import json

import numpy as np
import pytest

import caffe
from conftest import FIX, REF, run_caffe, tol

NETS = ["lenet", "cifar10_quick", "resnet_small"]


def fixture_net(name, phase=caffe.TEST):
    d = FIX / name
    return caffe.Net(str(d / "net.prototxt"), str(d / "weights.caffemodel"), phase)


def feed(net, d):
    for name in net.inputs:
        x = np.load(d / "blobs" / ("%s.npy" % name))
        if tuple(net.blobs[name].shape) != x.shape:
            net.blobs[name].reshape(*x.shape)
        net.blobs[name].data[...] = x


@pytest.mark.parametrize("name", NETS)
def test_forward_matches_bvlc_and_caffe_forward(name, tmp_path):
    d = FIX / name
    net = fixture_net(name)
    feed(net, d)
    out = net.forward()
    assert set(out) == set(net.outputs)
    worst = 0.0
    for b in net.blobs:
        f = d / "blobs" / ("%s.npy" % b)
        if not f.exists():
            continue
        ref = np.load(f)
        got = net.blobs[b].data
        # BVLC's files hold a scalar (0-axis) blob as shape (1,)
        assert got.shape == ref.shape or (got.ndim == 0 and ref.size == 1), b
        got = got.reshape(ref.shape)
        err = float(np.abs(got - ref).max(initial=0))
        worst = max(worst, err / tol(ref) * 1e-4)
        assert err <= tol(ref), "%s: max |Δ| %g" % (b, err)
    print("%s: max |Δ| / (1+max|ref|) vs BVLC = %.3g" % (name, worst))
    # caffe forward on the same inputs: bit for bit, every blob.
    args = ["forward", "-model", d / "net.prototxt", "-weights", d / "weights.caffemodel", "-blobs", "all", "-out", tmp_path]
    for i in net.inputs:
        args += ["-input", "%s=%s" % (i, d / "blobs" / ("%s.npy" % i))]
    run_caffe(*args)
    for b in net.blobs:
        ref = np.load(tmp_path / ("%s.npy" % b.replace("/", "_")))
        np.testing.assert_array_equal(net.blobs[b].data, ref, err_msg=b)


def test_structure_lenet():
    net = fixture_net("lenet")
    assert net.inputs == ["data", "label"]
    assert net.outputs == ["accuracy", "loss"]
    assert net._layer_names[:3] == ["data", "label_data_1_split", "conv1"]
    assert list(net.params) == ["conv1", "conv2", "ip1", "ip2"]
    assert [p.shape for p in net.params["ip1"]] == [(500, 800), (500,)]
    assert net.layer_dict["conv1"].type == "Convolution"
    assert len(net.layer_dict["conv1"].blobs) == 2
    assert net.top_names["conv1"] == ["conv1"] and net.bottom_names["conv1"] == ["data"]
    assert net.blob_loss_weights["loss"] == 1.0 and net.blob_loss_weights["ip2"] == 0.0
    # pycaffe's index forms: blob indices per layer, in-place tops sharing their bottom's.
    relu = net._layer_names.index("relu1")
    assert net._bottom_ids(relu) == net._top_ids(relu) == [net._blob_names.index("ip1")]
    assert [net._blob_names[k] for k in net._top_ids(0)] == ["data", "label"]
    assert net._blob_loss_weights == list(net.blob_loss_weights.values())
    assert [b.shape for b in net._blobs] == [b.shape for b in net.blobs.values()]
    b = net.blobs["data"]
    assert (b.num, b.channels, b.height, b.width, b.count) == (100, 1, 28, 28, 78400)
    assert net.blobs["label"].shape == (100,)
    assert "Convolution" in caffe.layer_type_list() and "Input" in caffe.layer_type_list()


def test_keyword_and_positional_forms_agree():
    d = FIX / "lenet"
    a = caffe.Net(str(d / "net.prototxt"), str(d / "weights.caffemodel"), caffe.TEST)
    b = caffe.Net(str(d / "net.prototxt"), caffe.TEST, weights=str(d / "weights.caffemodel"), level=0, stages=[])
    c = caffe.Net(d / "net.prototxt", caffe.TEST)
    c.copy_from(str(d / "weights.caffemodel"))
    for n in a.params:
        for x, y, z in zip(a.params[n], b.params[n], c.params[n]):
            np.testing.assert_array_equal(x.data, y.data)
            np.testing.assert_array_equal(x.data, z.data)


def test_views_write_through():
    d = FIX / "lenet"
    net = fixture_net("lenet")
    feed(net, d)
    held = net.blobs["ip2"].data  # held across forwards: updated in place
    net.forward()
    first = held.copy()
    np.testing.assert_array_equal(first, np.load(d / "blobs" / "ip2.npy").astype(np.float32) * 0 + net.blobs["ip2"].data)
    # A param written through numpy changes the next forward.
    w = net.params["ip2"][1].data
    w += 1.0
    net.forward()
    np.testing.assert_allclose(held, first + 1.0, rtol=0, atol=1e-5)
    assert net.params["ip2"][1].data[0] == w[0]
    # The input's array is the Input layer's memory.
    net.blobs["data"].data[...] = 0
    net.forward()
    np.testing.assert_allclose(held, np.broadcast_to(net.params["ip2"][1].data, held.shape), atol=1e-5)


def test_forward_start_end():
    d = FIX / "lenet"
    net = fixture_net("lenet")
    feed(net, d)
    out = net.forward(end="pool1")
    assert list(out) == ["pool1"]
    np.testing.assert_allclose(out["pool1"], np.load(d / "blobs" / "pool1.npy"), atol=1e-5)
    full = net.forward()["loss"].copy()
    # Halve pool1 and run from conv2: the same as a full net whose conv1 is halved.
    net.blobs["pool1"].data[...] *= 0.5
    half = net.forward(start="conv2")["loss"].copy()
    ref = fixture_net("lenet")
    feed(ref, d)
    ref.params["conv1"][0].data[...] *= 0.5
    ref.params["conv1"][1].data[...] *= 0.5
    np.testing.assert_allclose(half, ref.forward()["loss"], rtol=1e-5)
    assert abs(float(half) - float(full)) > 1e-3
    with pytest.raises(KeyError, match="no layer named"):
        net.forward(start="nope")


TRAIN_BACKWARD = FIX / "lenet" / "train_backward"


def train_backward_net():
    """LeNet in TRAIN phase on the inputs of BVLC's train_backward fixture, and its manifest."""
    m = json.loads((TRAIN_BACKWARD / "manifest.json").read_text())
    net = fixture_net("lenet", caffe.TRAIN)
    for name in net.inputs:
        x = np.load(TRAIN_BACKWARD / "blobs" / ("%s.npy" % name))
        net.blobs[name].reshape(*x.shape)
        net.blobs[name].data[...] = x
    net.reshape()
    return net, m


def assert_param_diffs_are_caffes(net, m, what=""):
    for p in m["params"]:
        for j, f in enumerate(p["diff_files"]):
            ref = np.load(TRAIN_BACKWARD / f)
            assert np.abs(net.params[p["layer"]][j].diff - ref).max() <= tol(ref), (what, p["layer"], j)


def test_backward_matches_bvlc_train_pass():
    d = TRAIN_BACKWARD
    net, m = train_backward_net()
    assert net.blobs["conv1"].shape == (64, 20, 24, 24)
    out = net.forward()
    assert abs(float(out["loss"]) - m["loss"]) <= 1e-4 * (1 + m["loss"])
    net.clear_param_diffs()
    diffs = net.backward(diffs=["conv1", "ip1"])
    assert set(diffs) == {"data", "label", "conv1", "ip1"}
    for b in m["blobs"]:
        if b["name"] in ("data", "label"):
            continue  # no force_backward: Caffe leaves the inputs' diffs alone
        ref = np.load(d / b["diff_file"])
        got = net.blobs[b["name"]].diff
        assert np.abs(got - ref).max() <= tol(ref), b["name"]
    assert_param_diffs_are_caffes(net, m)
    # Diffs accumulate over backward passes, and clear_param_diffs zeroes them.
    g = net.params["ip2"][0].diff.copy()
    held = net.params["ip2"][0].diff
    net.backward()
    np.testing.assert_allclose(held, 2 * g, rtol=1e-5, atol=1e-7)
    net.clear_param_diffs()
    assert not held.any()


def test_a_layer_by_layer_forward_then_backward_matches_bvlc():
    # forward(start=l, end=l) for each layer, holding nothing Python could
    # write, then one backward (and then one backward per layer): every
    # weight's gradient is Caffe's, through all the layers.
    net, m = train_backward_net()
    outs = [net.forward(start=name, end=name) for name in net._layer_names]
    assert abs(float(outs[-1]["loss"]) - m["loss"]) <= 1e-4 * (1 + m["loss"])
    for backward in ("whole", "per layer"):
        net.clear_param_diffs()
        if backward == "whole":
            net.backward()
        else:
            for name in reversed(net._layer_names):
                net.backward(start=name, end=name)
        assert_param_diffs_are_caffes(net, m, backward)


def test_a_blob_written_between_forwards_passes_its_diff_to_the_layers_below():
    # Caffe's backward does not care who wrote a blob: the diff later layers
    # give pool2 (at the values Python wrote) reaches conv1 and conv2 through
    # their own backward, on what their forward saw.
    net = fixture_net("lenet", caffe.TRAIN)
    feed(net, FIX / "lenet")
    net.forward(end="pool2")
    net.blobs["pool2"].data[...] *= 0.5
    net.forward(start="ip1")
    net.clear_param_diffs()
    net.backward()
    d = net.blobs["pool2"].diff.copy()
    got = {n: net.params[n][0].diff.copy() for n in ("conv1", "conv2", "ip1")}
    # The same diff seeded at pool2 on a forward left as it was.
    ref = fixture_net("lenet", caffe.TRAIN)
    feed(ref, FIX / "lenet")
    ref.forward()
    ref.clear_param_diffs()
    ref.blobs["pool2"].diff[...] = d
    ref.backward(start="pool2")
    for n in ("conv1", "conv2"):
        assert np.abs(got[n]).max() > 1e-4, n
        np.testing.assert_allclose(got[n], ref.params[n][0].diff, rtol=1e-4, atol=1e-6, err_msg=n)
    # ip1 read the written values: its weight gradient is ip1's diff times them.
    np.testing.assert_allclose(
        got["ip1"], net.blobs["ip1"].diff.T @ net.blobs["pool2"].data.reshape(len(d), -1), rtol=1e-4, atol=1e-5
    )


def test_backward_with_top_diff_and_range():
    # A deploy-style net with force_backward: the gradient of Σ ip2·g w.r.t. ip1.
    d = FIX / "lenet"
    net = fixture_net("lenet", caffe.TRAIN)
    feed(net, d)
    net.forward()
    g = np.random.RandomState(0).randn(*net.blobs["ip2"].shape).astype(np.float32)
    net.blobs["ip2"].diff[...] = g
    net.backward(start="ip2", end="relu1")
    w = net.params["ip2"][0].data
    relu_mask = net.blobs["ip1"].data > 0  # ip1 holds relu1's output (in place)
    np.testing.assert_allclose(net.blobs["ip1"].diff, (g @ w) * relu_mask, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["ip2"][0].diff, g.T @ net.blobs["ip1"].data, rtol=1e-4, atol=1e-4)
    # Layers below `end` were not run: conv1's weights got no gradient.
    assert not net.params["conv1"][0].diff.any()


def small_net(tmp_path, text):
    path = tmp_path / "net.prototxt"
    path.write_text("name: 'n' force_backward: true\n" + text)
    return caffe.Net(str(path), caffe.TRAIN)


CONV_RELU_IP = """input: 'data' input_shape { dim: 2 dim: 3 dim: 5 dim: 5 }
layer { type: 'Convolution' name: 'conv1' bottom: 'data' top: 'conv1'
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'gaussian' std: 1 } } }
layer { type: 'ReLU' name: 'relu1' bottom: 'conv1' top: 'conv1' }
layer { type: 'InnerProduct' name: 'ip' bottom: 'conv1' top: 'ip'
  inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 1 } } }
"""


def test_backward_without_a_forward_reads_the_blobs_as_they_are(tmp_path):
    # Caffe's backward reads the blobs as they stand, so a script may set a
    # top's diff and go backward with no forward before (BVLC's pycaffe tests
    # do): here over one InnerProduct, whose bottom diff is the diff times W.
    net = small_net(tmp_path, CONV_RELU_IP)
    d = np.random.RandomState(1).randn(2, 3).astype(np.float32)
    net.blobs["ip"].diff[...] = d
    net.backward(start="ip", end="ip")
    np.testing.assert_allclose(net.blobs["conv1"].diff.reshape(2, -1), d @ net.params["ip"][0].data, rtol=1e-5, atol=1e-5)
    # The weights' gradient is d·bottomᵀ with the bottom at zero, as Caffe
    # allocates blobs, and the bias's the sum of d.
    assert not net.params["ip"][0].diff.any()
    np.testing.assert_allclose(net.params["ip"][1].diff, d.sum(0), rtol=1e-6)


def test_a_backward_with_no_forward_reads_no_batch(tmp_path):
    # The forward a backward runs first (none was recorded) leaves the Data
    # layer alone, as Caffe's backward reads no data: the next forward still
    # gets the LMDB's first batch.
    lmdb = REF / "lmdb" / "fmnist_train2k_lmdb"
    text = (FIX / "lenet" / "sgd20" / "lenet_train_test.prototxt").read_text()
    text = text.replace('"lmdb/fmnist_train_lmdb"', '"%s"' % lmdb)
    (tmp_path / "lenet.prototxt").write_text(text)
    fresh = caffe.Net(str(tmp_path / "lenet.prototxt"), caffe.TRAIN)
    fresh.forward()
    first = fresh.blobs["data"].data.copy()
    net = caffe.Net(str(tmp_path / "lenet.prototxt"), caffe.TRAIN)
    net.backward()
    assert not net.blobs["data"].data.any()
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, first)


def test_a_forward_from_an_in_place_layer_reads_what_python_wrote(tmp_path):
    net = small_net(tmp_path, CONV_RELU_IP)
    net.blobs["data"].data[...] = np.random.RandomState(2).randn(2, 3, 5, 5)
    net.forward()
    c = net.blobs["conv1"].data.copy()
    # relu1 runs in place on conv1: starting there, it reads conv1 as written.
    net.blobs["conv1"].data[...] = c - 0.5
    out = net.forward(start="relu1")
    w, b = net.params["ip"][0].data, net.params["ip"][1].data
    relu = np.maximum(c - 0.5, 0).reshape(2, -1)
    np.testing.assert_allclose(out["ip"], relu @ w.T + b, rtol=1e-5, atol=1e-5)
    # conv1's diff is the one below the ReLU, as Caffe's in-place backward leaves it.
    net.blobs["ip"].diff[...] = 1
    net.backward(start="ip")
    np.testing.assert_allclose(net.blobs["conv1"].diff.reshape(2, -1), (np.ones((2, 3)) @ w) * (relu > 0), rtol=1e-5, atol=1e-6)


def test_a_deepdream_step_reshapes_only_through_its_end(tmp_path):
    # google/deepdream's make_step: a new input size, forward(end), the
    # objective's diff on `end`, backward(start=end), the input's diff. As in
    # Caffe, only the layers run are reshaped: the pooling after `end` does
    # not fit the small input and is not touched.
    import torch

    net = small_net(tmp_path, """input: 'data' input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { type: 'Convolution' name: 'conv' bottom: 'data' top: 'conv'
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.5 } } }
layer { type: 'Pooling' name: 'pool' bottom: 'conv' top: 'pool' pooling_param { pool: AVE kernel_size: 12 } }
""")
    src, dst = net.blobs["data"], net.blobs["conv"]
    src.reshape(1, 3, 9, 11)
    x = np.random.RandomState(3).randn(1, 3, 9, 11).astype(np.float32)
    src.data[0] = x
    net.forward(end="conv")
    assert dst.data.shape == (1, 4, 7, 9)
    dst.diff[:] = dst.data  # the L2 objective
    net.backward(start="conv")
    xt = torch.tensor(x, requires_grad=True)
    w, b = (torch.tensor(p.data) for p in net.params["conv"])
    y = torch.nn.functional.conv2d(xt, w, b)
    (0.5 * (y * y).sum()).backward()
    np.testing.assert_allclose(src.diff, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="layer 'pool'"):
        net.forward()


def test_a_style_transfer_backward_chain_equals_one_gradient(tmp_path):
    # fzliu/style-transfer's loop: after one forward, go down layer by layer,
    # adding each layer's own gradient to its blob's diff, then
    # backward(start=layer, end=next_layer); in-place ReLUs between. The
    # input's diff must be the gradient of the summed objective.
    import torch
    import torch.nn.functional as F

    def conv(name, bottom, n):
        return (
            "layer { type: 'Convolution' name: '%s' bottom: '%s' top: '%s' convolution_param { num_output: %d "
            "kernel_size: 3 pad: 1 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
            "layer { type: 'ReLU' name: 'relu_%s' bottom: '%s' top: '%s' }\n" % (name, bottom, name, n, name, name, name)
        )

    net = small_net(tmp_path, "input: 'data' input_shape { dim: 1 dim: 3 dim: 12 dim: 12 }\n"
        + conv("conv1_1", "data", 4)
        + "layer { type: 'Pooling' name: 'pool1' bottom: 'conv1_1' top: 'pool1' pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
        + conv("conv2_1", "pool1", 5) + conv("conv3_1", "conv2_1", 6))
    rs = np.random.RandomState(0)
    x = rs.randn(1, 3, 12, 12).astype(np.float32)
    layers = ["conv1_1", "conv2_1", "conv3_1"]
    targets = {l: rs.randn(*net.blobs[l].data.shape[1:]).astype(np.float32) for l in layers}
    weight = {"conv1_1": 0.5, "conv2_1": 1.0, "conv3_1": 2.0}
    net.blobs["data"].data[0] = x[0]
    net.forward()
    net.blobs[layers[-1]].diff[:] = 0
    for i, layer in enumerate(reversed(layers)):
        next_layer = None if i == len(layers) - 1 else layers[-i - 2]
        grad = net.blobs[layer].diff[0]
        f = net.blobs[layer].data[0]
        grad += weight[layer] * (f - targets[layer]) * (f > 0)
        net.backward(start=layer, end=next_layer)
    xt = torch.tensor(x, requires_grad=True)
    p = {k: [torch.tensor(b.data) for b in v] for k, v in net.params.items()}
    c1 = F.relu(F.conv2d(xt, *p["conv1_1"], padding=1))
    c2 = F.relu(F.conv2d(F.max_pool2d(c1, 2, 2), *p["conv2_1"], padding=1))
    c3 = F.relu(F.conv2d(c2, *p["conv3_1"], padding=1))
    sum(weight[k] / 2 * ((c[0] - torch.tensor(targets[k])) ** 2).sum() for k, c in zip(layers, [c1, c2, c3])).backward()
    np.testing.assert_allclose(net.blobs["data"].diff, xt.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_a_backward_from_a_layer_seeds_its_own_output_not_what_in_place_layers_made_of_it(tmp_path):
    # conv1's top is rewritten in place by a Scale (×3) after it. After a
    # full forward, backward(start='conv1') with a diff on blob conv1 runs
    # conv1's backward on that diff alone, as Caffe's does: the Scale, past
    # the start, does not come in between.
    import torch

    net = small_net(tmp_path, """input: 'data' input_shape { dim: 1 dim: 2 dim: 6 dim: 6 }
layer { type: 'Convolution' name: 'conv1' bottom: 'data' top: 'conv1'
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.5 } } }
layer { type: 'Scale' name: 'scale1' bottom: 'conv1' top: 'conv1' scale_param { filler { type: 'constant' value: 3 } } }
layer { type: 'ReLU' name: 'relu1' bottom: 'conv1' top: 'conv1' }
layer { type: 'Convolution' name: 'conv2' bottom: 'conv1' top: 'conv2'
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.5 } } }
""")
    x = np.random.RandomState(0).randn(1, 2, 6, 6).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    d = np.random.RandomState(1).randn(*net.blobs["conv1"].data.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.conv2d(xt, *(torch.tensor(p.data) for p in net.params["conv1"]))
    for start, seed_of in [("conv1", lambda y: y), ("scale1", lambda y: 3 * y)]:
        net.blobs["conv1"].diff[...] = d
        net.backward(start=start)
        xt.grad = None
        (seed_of(y) * torch.tensor(d)).sum().backward(retain_graph=True)
        np.testing.assert_allclose(net.blobs["data"].diff, xt.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=start)


def test_save_and_load(tmp_path):
    d = FIX / "lenet"
    net = fixture_net("lenet")
    for n, blobs in net.params.items():  # BVLC's weights, as BVLC saved them
        for j, b in enumerate(blobs):
            np.testing.assert_array_equal(b.data, np.load(d / "params" / ("%s_%d.npy" % (n, j))))
    for b in net.params["ip1"]:
        b.data[...] *= 2
    net.save(str(tmp_path / "w.caffemodel"))
    net.save_hdf5(str(tmp_path / "w.caffemodel.h5"))
    for path, load in [("w.caffemodel", "copy_from"), ("w.caffemodel.h5", "load_hdf5")]:
        other = caffe.Net(str(d / "net.prototxt"), caffe.TEST)
        getattr(other, load)(str(tmp_path / path))
        for n in net.params:
            for x, y in zip(net.params[n], other.params[n]):
                np.testing.assert_array_equal(x.data, y.data, err_msg=(path, n))
    # The saved .caffemodel runs in the caffe binary with the same outputs.
    feed(net, d)
    out = net.forward()
    args = ["forward", "-model", d / "net.prototxt", "-weights", tmp_path / "w.caffemodel", "-out", tmp_path / "o"]
    for i in net.inputs:
        args += ["-input", "%s=%s" % (i, d / "blobs" / ("%s.npy" % i))]
    run_caffe(*args)
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "loss.npy"), out["loss"])


CONV_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4
        kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 } } }
"""


CONV_BN_NET = CONV_NET + """
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
"""


def test_folded_batch_norm_follows_numpy_writes_to_its_blobs(tmp_path):
    # An inference forward folds BatchNorm, Scale and ReLU into the
    # convolution's packed weights; numpy writes to any of their blobs must
    # reach the next forward, as each layer computed on its own would.
    (tmp_path / "bn.prototxt").write_text(CONV_BN_NET)
    net = caffe.Net(str(tmp_path / "bn.prototxt"), caffe.TEST)
    x = np.random.RandomState(1).rand(2, 3, 9, 9)
    net.blobs["data"].data[...] = x
    net.forward(end="conv")
    conv = net.blobs["conv"].data.copy()

    def expect(what):
        mean, var, factor = (b.data for b in net.params["bn"])
        f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
        gamma, beta = (b.data.reshape(1, -1, 1, 1) for b in net.params["scale"])
        y = (conv - mean.reshape(1, -1, 1, 1) * f) / np.sqrt(var.reshape(1, -1, 1, 1) * f + 1e-5)
        expected = np.maximum(gamma * y + beta, 0)
        net.forward()
        np.testing.assert_allclose(net.blobs["conv"].data, expected, rtol=0, atol=1e-5 * (1 + np.abs(expected).max()),
                                   err_msg=what)

    net.params["bn"][0].data[...] = [0.5, -0.25, 1.0, 0.0]
    net.params["bn"][1].data[...] = [2.0, 0.5, 1.0, 4.0]
    net.params["bn"][2].data[...] = 2.0
    expect("statistics set")
    net.params["scale"][0].data[...] = [1.5, -1.0, 0.5, 2.0]
    net.params["scale"][1].data[...] = [0.1, 0.2, -0.3, 0.4]
    expect("scale and bias set")
    held = net.params["bn"][1].data
    held *= 4.0
    expect("variance scaled through a held array")


def test_conv_weights_written_through_numpy_reach_the_next_forward(tmp_path):
    # A forward that autograd does not record (no loss, no force_backward)
    # convolves on weights packed once while libtorch sees them unchanged;
    # numpy writes bypass libtorch, and must still reach the next forward of
    # every net that uses the weights: held arrays, temporary ones, a net
    # sharing them.
    (tmp_path / "conv.prototxt").write_text(CONV_NET)
    net = caffe.Net(str(tmp_path / "conv.prototxt"), caffe.TEST)
    other = caffe.Net(str(tmp_path / "conv.prototxt"), caffe.TEST)
    other.share_with(net)
    x = np.random.RandomState(0).rand(2, 3, 9, 9)
    net.blobs["data"].data[...] = x
    other.blobs["data"].data[...] = x
    net.forward()
    other.forward()
    net.forward()
    before = net.blobs["conv"].data.copy()
    bias = net.params["conv"][1].data.reshape(1, -1, 1, 1).copy()

    def expect(n, scale):
        expected = scale * (before - bias) + bias
        np.testing.assert_allclose(n.blobs["conv"].data, expected, rtol=0, atol=1e-5 * (1 + np.abs(expected).max()))

    net.params["conv"][0].data[...] *= -2.0  # a temporary array
    net.forward()
    expect(net, -2.0)
    other.forward()
    expect(other, -2.0)
    held = net.params["conv"][0].data
    net.forward()
    held *= 0.5  # an array held across forwards
    net.forward()
    expect(net, -1.0)
    other.forward()
    expect(other, -1.0)
    del held
    net.forward()
    net.params["conv"][0].data[...] *= 3.0
    other.forward()
    expect(other, -3.0)


def test_share_with():
    d = FIX / "lenet"
    a = fixture_net("lenet")
    b = caffe.Net(str(d / "net.prototxt"), caffe.TEST)
    b.share_with(a)
    np.testing.assert_array_equal(a.params["ip2"][0].data, b.params["ip2"][0].data)
    a.params["ip2"][0].data[0, 0] = 42.0
    assert b.params["ip2"][0].data[0, 0] == 42.0


def test_forward_all_batches():
    d = FIX / "cifar10_quick"
    net = fixture_net("cifar10_quick")
    x = np.load(d / "blobs" / "data.npy")
    n = len(x)
    bs = net.blobs["data"].shape[0]
    y = np.load(d / "blobs" / "label.npy")
    xs = np.concatenate([x, x[:3]])  # not a multiple of the batch: padded, then cut
    ys = np.concatenate([y, y[:3]])
    outs = net.forward_all(data=xs, label=ys, blobs=["ip2"])
    name = "ip2"
    assert outs[name].shape[0] == n + 3
    ref = net.forward(data=x, label=y)[name] if False else (net.forward(data=x, label=y), net.blobs[name].data)[1]
    np.testing.assert_array_equal(outs[name][:bs], ref)
    np.testing.assert_array_equal(outs[name][n:], ref[:3])


def test_bad_input(tmp_path):
    d = FIX / "lenet"
    with pytest.raises(FileNotFoundError, match="nope.prototxt"):
        caffe.Net(str(tmp_path / "nope.prototxt"), caffe.TEST)
    with pytest.raises(IOError, match="missing.caffemodel"):
        caffe.Net(str(d / "net.prototxt"), str(tmp_path / "missing.caffemodel"), caffe.TEST)
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "x" type: "NoSuchLayer" top: "x" }\n')
    with pytest.raises(ValueError, match="NoSuchLayer"):
        caffe.Net(str(bad), caffe.TEST)
    with pytest.raises(ValueError, match="phase"):
        caffe.Net(str(d / "net.prototxt"), 7)
    net = fixture_net("lenet")
    with pytest.raises(KeyError):
        net.blobs["no_such_blob"]
    with pytest.raises(ValueError, match="broadcast"):
        net.blobs["data"].data[...] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="do not match net inputs"):
        net.forward(nope=np.zeros(3))
    with pytest.raises(ValueError, match="batch sized"):
        net.forward(data=np.zeros((5, 1, 28, 28)), label=np.zeros(5))
    with pytest.raises(KeyError, match="no blob named"):
        net.forward(blobs=["no_such_blob"])
    with pytest.raises(ValueError, match="only input blobs"):
        net.blobs["conv1"].reshape(1, 2, 3, 4)
    # A range that ends before it starts, and more axes than Caffe's blobs
    # have (numpy's limit too): errors, not a panic from inside the module.
    with pytest.raises(IndexError, match="start must not come after end"):
        net.forward(start="ip1", end="conv1")
    with pytest.raises(ValueError, match="33 axes; a blob has at most 32"):
        net.blobs["data"].reshape(*([1] * 33))
    with pytest.raises(ValueError, match="MemoryData"):
        net.set_input_arrays(np.zeros((1, 1, 28, 28), np.float32), np.zeros(1, np.float32))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if not has_cuda:
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            caffe.set_mode_gpu()


MEMORY_NET = """
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }
layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
"""


def test_set_input_arrays_reads_the_arrays_in_place(tmp_path):
    # As Caffe's MemoryData does: no copy, so a write to the arrays shows in
    # the next batches read; the net holds them, so dropping Python's
    # references is safe.
    (tmp_path / "memory.prototxt").write_text(MEMORY_NET)
    net = caffe.Net(str(tmp_path / "memory.prototxt"), caffe.TEST)
    data = np.arange(24, dtype=np.float32).reshape(4, 1, 2, 3)
    labels = np.array([10, 11, 12, 13], np.float32)
    net.set_input_arrays(data, labels)
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[0:2])
    np.testing.assert_array_equal(net.blobs["label"].data, labels[0:2])
    data[2] += 100.0
    labels[3] = -1.0
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[2:4])
    np.testing.assert_array_equal(net.blobs["label"].data, [12, -1])
    expected = data[0:2].copy()
    del data, labels
    import gc

    gc.collect()
    net.forward()  # wraps around to the first batch
    np.testing.assert_array_equal(net.blobs["flat"].data, expected.reshape(2, 6))
    # Caffe's requirements, as errors.
    with pytest.raises(ValueError, match="C contiguous"):
        net.set_input_arrays(np.zeros((4, 1, 3, 2), np.float32).transpose(0, 1, 3, 2), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="float32"):
        net.set_input_arrays(np.zeros((4, 1, 2, 3)), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="multiple of batch_size"):
        net.set_input_arrays(np.zeros((3, 1, 2, 3), np.float32), np.zeros(3, np.float32))


def test_a_top_shaped_by_the_forward_shows_the_forwards_shape(tmp_path):
    # Filter's top (like DetectionOutput's) has as many items as the selector
    # keeps: after a forward, net.blobs shows that shape and those values, as
    # pycaffe's blob reshaped by the layer does.
    proto = tmp_path / "filter.prototxt"
    proto.write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 2 } } }\n'
        'layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 4 } } }\n'
        'layer { name: "f" type: "Filter" bottom: "x" bottom: "s" top: "y" }\n')
    net = caffe.Net(str(proto), caffe.TEST)
    net.blobs["x"].data[...] = np.arange(8, dtype=np.float32).reshape(4, 2)
    for keep in ([1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]):
        net.blobs["s"].data[...] = keep
        out = net.forward()
        want = np.arange(8, dtype=np.float32).reshape(4, 2)[np.array(keep, dtype=bool)]
        assert net.blobs["y"].shape == want.shape
        np.testing.assert_array_equal(net.blobs["y"].data, want)
        np.testing.assert_array_equal(out["y"], want)
