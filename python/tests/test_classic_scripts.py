"""Classic pycaffe scripts, run unchanged (scripts/): classification in the
style of Caffe's 00-classification example, and net surgery (fully-connected
weights cast into a fully-convolutional net). Their numbers must be
`caffe forward`'s, bit for bit."""
import runpy
import sys

import numpy as np
from PIL import Image

from conftest import FIX, REF, ROOT, run_caffe

SCRIPTS = ROOT / "python" / "tests" / "scripts"
BVLC = ROOT / "tests" / "fixtures" / "bvlc" / "examples"


def run_script(name, *args):
    """Runs scripts/<name> as `python <name> args...` would, in this process."""
    argv = sys.argv
    sys.argv = [str(SCRIPTS / name)] + [str(a) for a in args]
    try:
        runpy.run_path(str(SCRIPTS / name), run_name="__main__")
    finally:
        sys.argv = argv


def test_classification_script_matches_caffe_forward(tmp_path, capsys):
    # A colour picture (gradients and a disc), not square, so the resize matters.
    yy, xx = np.mgrid[0:48, 0:40]
    rgb = np.stack([xx * 6, yy * 5, 255 * ((yy - 24) ** 2 + (xx - 20) ** 2 < 150)], axis=-1).astype(np.uint8)
    image = tmp_path / "picture.png"
    Image.fromarray(rgb).save(image)
    deploy = BVLC / "cifar10" / "cifar10_quick.prototxt"
    weights = FIX / "cifar10_quick" / "weights.caffemodel"
    run_script("classify.py", deploy, weights, image, tmp_path)
    printed = capsys.readouterr().out
    assert "predicted class is:" in printed and "top 5:" in printed
    batch = np.load(tmp_path / "input.npy")
    assert batch.shape == (5, 3, 32, 32)
    # The Transformer's work, redone by hand: BGR, 0-255, mean removed, C x H x W.
    pixel = rgb[0, 0].astype(np.float64)[::-1] - [113.9, 123.0, 125.3]
    np.testing.assert_allclose(batch[0, :, 0, 0], pixel, atol=2.0)
    run_caffe("forward", "-model", deploy, "-weights", weights, "-input", "data=%s" % (tmp_path / "input.npy"), "-out", tmp_path / "cli")
    prob = np.load(tmp_path / "prob.npy")
    np.testing.assert_array_equal(prob, np.load(tmp_path / "cli" / "prob.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "top5.npy"), prob[0].argsort()[::-1][:5])
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)


FULL_CONV = """name: "LeNetFullConv"
input: "data"
input_shape { dim: 1 dim: 1 dim: 36 dim: 36 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 20 kernel_size: 5 stride: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 50 kernel_size: 5 stride: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1-conv" type: "Convolution" bottom: "pool2" top: "ip1-conv" convolution_param { num_output: 500 kernel_size: 4 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1-conv" top: "ip1-conv" }
layer { name: "ip2-conv" type: "Convolution" bottom: "ip1-conv" top: "ip2-conv" convolution_param { num_output: 10 kernel_size: 1 } }
layer { name: "prob" type: "Softmax" bottom: "ip2-conv" top: "prob" }
"""


def test_net_surgery_script_matches_caffe_forward(tmp_path, capsys):
    conv_def = tmp_path / "lenet_full_conv.prototxt"
    conv_def.write_text(FULL_CONV)
    # A Fashion-MNIST training image (Caffe's first LMDB batch) in a larger field.
    batch = np.load(FIX / "lenet" / "sgd20" / "iter0_data.npy")
    image = np.zeros((1, 1, 36, 36), np.float32)
    image[0, 0, :28, :28] = batch[0, 0]
    image[0, 0, 8:, 8:] = np.maximum(image[0, 0, 8:, 8:], batch[1, 0])
    np.save(tmp_path / "image.npy", image)
    weights = REF / "lenet_run" / "lenet_iter_5000.caffemodel"
    run_script("net_surgery.py", BVLC / "mnist" / "lenet.prototxt", conv_def, weights, tmp_path / "image.npy", tmp_path)
    assert "ip1-conv weights are (500, 50, 4, 4) dimensional" in capsys.readouterr().out
    prob = np.load(tmp_path / "full_conv_prob.npy")
    assert prob.shape == (1, 10, 3, 3)
    run_caffe(
        "forward", "-model", conv_def, "-weights", tmp_path / "full_conv.caffemodel",
        "-input", "data=%s" % (tmp_path / "image.npy"), "-out", tmp_path / "cli",
    )
    np.testing.assert_array_equal(prob, np.load(tmp_path / "cli" / "prob.npy"))
    # The surgery is right: the map's corners are the FC net on those windows.
    fc = np.load(tmp_path / "fc_prob.npy")[0]
    np.testing.assert_allclose(prob[0, :, 0, 0], fc, atol=1e-5)
    labels = np.load(FIX / "lenet" / "sgd20" / "iter0_label.npy")
    assert prob[0, :, 0, 0].argmax() == fc.argmax() == int(labels[0])
