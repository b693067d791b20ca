"""Classic pycaffe scripts, run unchanged (scripts/): classification in the
style of Caffe's 00-classification example, and net surgery (fully-connected
weights cast into a fully-convolutional net). Their numbers must be
`caffe forward`'s, bit for bit. And Caffe's siamese example from its
converter to its features, and the ImageNet mean its notebooks load."""
import gzip
import runpy
import sys
from pathlib import Path

import numpy as np

import caffe
from PIL import Image

from conftest import FIX, REF, ROOT, need, run_caffe

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


def test_siamese_example_from_converter_to_features(tmp_path, monkeypatch):
    # Caffe's siamese example end to end, as its scripts run it from Caffe's
    # root: convert_mnist_siamese_data (LevelDB), its V1 train/test net (whose
    # Data layers read LevelDB by default) under its solver, then the deploy
    # net's 2-D features of the test images (Fashion-MNIST stands in for MNIST).
    fm = Path("/usr/share/datasets/fashion-mnist")
    need((fm / "t10k-images-idx3-ubyte.gz").exists(), "Debian's Fashion-MNIST (make system-deps)")
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "examples" / "siamese"
    d.mkdir(parents=True)
    images, labels = fm / "t10k-images-idx3-ubyte.gz", fm / "t10k-labels-idx1-ubyte.gz"
    for split in ("train", "test"):
        log = run_caffe("convert_mnist_siamese_data", images, labels, d / ("mnist_siamese_%s_leveldb" % split))
        assert "A total of 10000 items." in log
    example = ROOT / "tests" / "fixtures" / "bvlc" / "examples" / "siamese"
    (d / "mnist_siamese_train_test.prototxt").write_text((example / "mnist_siamese_train_test.prototxt").read_text())
    solver_text = (example / "mnist_siamese_solver.prototxt").read_text()
    solver_text = solver_text.replace("solver_mode: GPU", "solver_mode: CPU").replace("test_iter: 100", "test_iter: 5")
    (d / "solver.prototxt").write_text(solver_text + "\nrandom_seed: 3\n")
    solver = caffe.SGDSolver("examples/siamese/solver.prototxt")
    losses = []
    for _ in range(300):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert np.mean(losses[-50:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-50:])
    solver.net.save(str(d / "mnist_siamese_iter_300.caffemodel"))

    net = caffe.Net(str(example / "mnist_siamese.prototxt"), str(d / "mnist_siamese_iter_300.caffemodel"), caffe.TEST)
    with gzip.open(images) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    with gzip.open(labels) as f:
        classes = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    feat = net.forward_all(data=raw.reshape(-1, 1, 28, 28) * 0.00390625)["feat"]
    assert feat.shape == (10000, 2) and np.isfinite(feat).all()
    # The features group the classes: a nearest neighbour among 2,000 others
    # names the class of most of 2,000 images (chance: 1 in 10).
    a, b = feat[:2000], feat[2000:4000]
    nearest = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1).argmin(1)
    accuracy = (classes[:2000][nearest] == classes[2000:4000]).mean()
    assert accuracy > 0.4, accuracy


def test_imagenet_mean_where_caffes_scripts_load_it():
    # 00-classification, net_surgery and classify.py read
    # python/caffe/imagenet/ilsvrc_2012_mean.npy: BGR, 256x256, whose
    # per-channel means the notebook prints.
    mean = np.load(Path(caffe.__file__).parent / "imagenet" / "ilsvrc_2012_mean.npy")
    assert mean.shape == (3, 256, 256) and mean.dtype == np.float64
    np.testing.assert_allclose(mean.mean(1).mean(1), [104.00698793, 116.66876762, 122.67891434], rtol=1e-9)
