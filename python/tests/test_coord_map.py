"""caffe.coord_map: the crop offsets of FCN's nets (VGG16 geometry: conv1_1 pad
100, five 2×2 poolings, fc6 as a 7×7 convolution), the offsets published in
FCN's own prototxts, and the nets they make run in caffe-tch with every
score map on the input's grid. A delta-kernel chain checks the alignment
pixel for pixel."""
import numpy as np
import pytest

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.coord_map import coord_map_from_to, crop


def conv(bottom, nout, ks=3, pad=1, stride=1):
    return L.Convolution(bottom, kernel_size=ks, stride=stride, pad=pad, num_output=nout,
                         weight_filler=dict(type="gaussian", std=0.01))


def conv_relu(bottom, nout, ks=3, pad=1):
    c = conv(bottom, nout, ks, pad)
    return c, L.ReLU(c, in_place=True)


def vgg16_fcn(n, width=2):
    """VGG16's layers as FCN builds them (narrow: `width` channels each)."""
    n.conv1_1, n.relu1_1 = conv_relu(n.data, width, pad=100)
    n.conv1_2, n.relu1_2 = conv_relu(n.relu1_1, width)
    n.pool1 = L.Pooling(n.relu1_2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    bottom = n.pool1
    for block, convs in ((2, 2), (3, 3), (4, 3), (5, 3)):
        for i in range(1, convs + 1):
            c, r = conv_relu(bottom, width)
            setattr(n, "conv%d_%d" % (block, i), c)
            setattr(n, "relu%d_%d" % (block, i), r)
            bottom = r
        setattr(n, "pool%d" % block, L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2))
        bottom = getattr(n, "pool%d" % block)
    n.fc6, n.relu6 = conv_relu(n.pool5, width, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = conv_relu(n.drop6, width, ks=1, pad=0)
    n.score_fr = conv(n.relu7, 3, ks=1, pad=0)


def upsample(bottom, ks, stride):
    return L.Deconvolution(bottom, convolution_param=dict(num_output=3, kernel_size=ks, stride=stride, bias_term=False))


def fcn8s(shape):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    vgg16_fcn(n)
    n.upscore2 = upsample(n.score_fr, 4, 2)
    n.score_pool4 = conv(n.pool4, 3, ks=1, pad=0)
    n.score_pool4c = crop(n.score_pool4, n.upscore2)
    n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
    n.upscore_pool4 = upsample(n.fuse_pool4, 4, 2)
    n.score_pool3 = conv(n.pool3, 3, ks=1, pad=0)
    n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
    n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
    n.upscore8 = upsample(n.fuse_pool3, 16, 8)
    n.score = crop(n.upscore8, n.data)
    return n


def offsets(proto):
    return {l.name: (l.crop_param.axis, list(l.crop_param.offset)) for l in proto.layer if l.type == "Crop"}


def test_fcn_offsets_are_fcns_own(tmp_path):
    n = fcn8s((1, 3, 60, 76))
    proto = n.to_proto()
    # voc-fcn8s/train.prototxt: offsets 5, 9 and 31.
    assert offsets(proto) == {"score_pool4c": (2, [5]), "score_pool3c": (2, [9]), "score": (2, [31])}
    # voc-fcn32s: one 64×64 stride-32 upsampling, offset 19.
    m = caffe.NetSpec()
    m.data = L.Input(shape=dict(dim=[1, 3, 40, 40]))
    vgg16_fcn(m)
    m.upscore = upsample(m.score_fr, 64, 32)
    m.score = crop(m.upscore, m.data)
    assert offsets(m.to_proto()) == {"score": (2, [19])}
    axis, scale, shift = coord_map_from_to(m.upscore, m.data)
    assert axis == 1 and scale.tolist() == [1.0] and shift.tolist() == [-19.0]

    # The nets run in caffe-tch, each crop on its reference's grid, for input
    # sizes that do and do not divide by 32.
    for h, w in ((60, 76), (64, 64), (33, 47)):
        path = tmp_path / ("fcn8s_%d_%d.prototxt" % (h, w))
        path.write_text(str(fcn8s((1, 3, h, w)).to_proto()))
        net = caffe.Net(str(path), caffe.TEST)
        net.blobs["data"].data[...] = np.random.RandomState(0).rand(1, 3, h, w)
        out = net.forward()
        assert out["score"].shape == (1, 3, h, w)
        assert net.blobs["score_pool4c"].data.shape[2:] == net.blobs["upscore2"].data.shape[2:]
        assert net.blobs["score_pool3c"].data.shape[2:] == net.blobs["upscore_pool4"].data.shape[2:]


def test_crop_aligns_pixels(tmp_path):
    """A chain whose layers move pixels without changing them (a delta
    kernel, padded; a 1×1 stride-2 subsampling and a 3×3 stride-2 delta
    deconvolution back): the crop brings every input pixel the chain kept
    back to where it was."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 12, 14]))
    n.padded = L.Convolution(n.data, kernel_size=5, pad=7, num_output=1, bias_term=False)
    n.sub = L.Convolution(n.padded, kernel_size=1, stride=2, num_output=1, bias_term=False)
    n.up = L.Deconvolution(n.sub, convolution_param=dict(num_output=1, kernel_size=3, stride=2, pad=1, bias_term=False))
    n.out = crop(n.up, n.data)
    (axis, offset), = offsets(n.to_proto()).values()
    assert axis == 2 and offset == [5]  # 7 of padding, less the 5×5 window's centre at 2
    path = tmp_path / "chain.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TEST)
    delta = np.zeros((1, 1, 5, 5), np.float32)
    delta[0, 0, 2, 2] = 1
    net.params["padded"][0].data[...] = delta
    net.params["sub"][0].data[...] = 1
    net.params["up"][0].data[...] = delta[:, :, 1:4, 1:4]  # each kept pixel back to its place, 0 between
    x = np.arange(12 * 14, dtype=np.float32).reshape(1, 1, 12, 14) + 1
    net.blobs["data"].data[...] = x
    out = net.forward()["out"]
    kept = out != 0
    rows, cols = np.mgrid[0:12, 0:14]
    np.testing.assert_array_equal(kept[0, 0], (rows % 2 == 1) & (cols % 2 == 1))  # what the subsampling kept
    np.testing.assert_array_equal(out[kept], x[kept])  # every pixel the chain kept is back on its own place


def test_bad_maps():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.ip = L.InnerProduct(n.data, num_output=4)
    n.other = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    with pytest.raises(RuntimeError, match="share no ancestor"):
        crop(n.ip, n.other)
    n.half = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    with pytest.raises(AssertionError, match="scale mismatch"):
        crop(n.half, n.data)
    n.grown = L.Convolution(n.data, kernel_size=3, pad=0, num_output=1)
    with pytest.raises(AssertionError, match="negative offset"):
        crop(n.grown, n.data)
    n.split_k = L.Convolution(n.data, kernel_h=3, kernel_w=1, num_output=1)
    with pytest.raises(AssertionError, match="kernel_h"):
        crop(n.split_k, n.data)
