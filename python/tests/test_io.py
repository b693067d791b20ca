"""caffe.io: protobuf <-> numpy conversions on BVLC Caffe's own files,
Transformer, image loading, resizing and oversampling, with their numbers."""
import os

import numpy as np
import pytest

import pure_helpers as h
import caffe.io
from caffe.proto import caffe_pb2


# ---------------------------------------------------------------- blobs and datums

def test_blobproto_round_trip_keeps_shape_values_and_diff():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8.0
    diff = -arr
    blob = caffe.io.array_to_blobproto(arr, diff)
    assert list(blob.shape.dim) == [2, 3, 4] and not blob.HasField('num')
    back = caffe.io.blobproto_to_array(caffe_pb2.BlobProto.FromString(blob.SerializeToString()))
    assert back.dtype == np.float64 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(blob, return_diff=True), diff)


def test_blobproto_legacy_4d_shape_and_scalar():
    blob = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=5)
    blob.data.extend(range(10))
    assert caffe.io.blobproto_to_array(blob).shape == (1, 1, 2, 5)
    scalar = caffe_pb2.BlobProto()
    scalar.data.append(123)
    assert caffe.io.blobproto_to_array(scalar) == 123  # no shape: a 0-d array, as pycaffe
    bad = caffe_pb2.BlobProto()
    bad.data.extend([0.0] * 100)
    with pytest.raises(ValueError, match='do not fit its shape'):
        caffe.io.blobproto_to_array(bad)
    with pytest.raises(ValueError, match='diff has shape'):
        caffe.io.array_to_blobproto(np.zeros((2, 2)), np.zeros(3))


def test_blobproto_reads_nvidia_caffe_raw_data():
    arr = (np.arange(12, dtype=np.float32) - 5.5) / 3.0
    for raw_type, dtype in ((caffe_pb2.FLOAT16, '<f2'), (caffe_pb2.FLOAT, '<f4'), (caffe_pb2.DOUBLE, '<f8')):
        blob = caffe_pb2.BlobProto(raw_data=arr.astype(dtype).tobytes(), raw_data_type=raw_type)
        blob.shape.dim.extend([3, 4])
        back = caffe.io.blobproto_to_array(blob)
        np.testing.assert_array_equal(back, arr.astype(dtype).astype(np.float64).reshape(3, 4))


def test_blobproto_reads_bvlc_compute_image_mean_output():
    with open(h.caffe_ref('extra', 'mean', 'fmnist_train_mean.binaryproto'), 'rb') as f:
        blob = caffe_pb2.BlobProto.FromString(f.read())
    mean = caffe.io.blobproto_to_array(blob)
    assert mean.shape == (1, 1, 28, 28)
    ref = np.load(h.caffe_ref('extra', 'mean', 'fmnist_train_mean.npy'))
    np.testing.assert_array_equal(mean, ref.astype(np.float64))
    # compute_image_mean.log: "mean_value channel [0]: 72.9403"
    assert mean.mean() == pytest.approx(72.9403, abs=1e-4)
    # and written back, Caffe's reader sees the same values
    again = caffe.io.blobproto_to_array(caffe.io.array_to_blobproto(mean))
    np.testing.assert_array_equal(again, mean)


def test_blobprotovector_round_trip():
    arrays = [np.arange(6.0).reshape(2, 3), np.full((1, 2, 1, 1), 0.5)]
    s = caffe.io.arraylist_to_blobprotovector_str(arrays)
    vec = caffe_pb2.BlobProtoVector.FromString(s)
    assert [list(b.shape.dim) for b in vec.blobs] == [[2, 3], [1, 2, 1, 1]]
    back = caffe.io.blobprotovector_str_to_arraylist(s)
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)
    assert caffe.io.arraylist_to_blobprotovecor_str is caffe.io.arraylist_to_blobprotovector_str


def test_datum_round_trip_uint8_and_float():
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    d = caffe.io.array_to_datum(img, label=7)
    assert (d.channels, d.height, d.width, d.label) == (2, 3, 4, 7)
    assert d.data == bytes(range(24)) and len(d.float_data) == 0
    back = caffe.io.datum_to_array(caffe_pb2.Datum.FromString(d.SerializeToString()))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, img)
    f = caffe.io.array_to_datum(img.astype(np.float32) / 4)
    assert not f.HasField('label') and len(f.data) == 0
    assert list(f.float_data)[:3] == [0.0, 0.25, 0.5]
    np.testing.assert_array_equal(caffe.io.datum_to_array(f), img / 4.0)
    # An unset label makes a smaller message (pycaffe's own test).
    assert len(caffe.io.array_to_datum(img, label=1).SerializeToString()) > len(
        caffe.io.array_to_datum(img).SerializeToString())
    with pytest.raises(ValueError, match='3-D'):
        caffe.io.array_to_datum(np.zeros((2, 2)))
    enc = caffe_pb2.Datum(channels=3, height=2, width=2, data=b'\xff\xd8\xff', encoded=True)
    with pytest.raises(ValueError, match='encoded'):
        caffe.io.datum_to_array(enc)


def test_datum_reads_a_record_of_bvlc_convert_mnist_data():
    # The LMDB values are serialized Datums; find the first whole record in
    # the file (channels 1, height 28, width 28, 784 bytes of data, then the
    # label) and check it is one of the images pycaffe fed to the SGD run.
    with open(h.caffe_ref('lmdb', 'fmnist_train2k_lmdb', 'data.mdb'), 'rb') as f:
        raw = f.read()
    head = b'\x08\x01\x10\x1c\x18\x1c\x22\x90\x06'
    at = raw.index(head)
    datum = caffe_pb2.Datum.FromString(raw[at:at + len(head) + 784 + 2])
    arr = caffe.io.datum_to_array(datum)
    assert arr.shape == (1, 28, 28) and arr.dtype == np.uint8 and 0 <= datum.label <= 9
    batch = np.load(h.caffe_ref('fixtures', 'lenet', 'sgd20', 'iter0_data.npy'))  # pixels * 0.00390625
    labels = np.load(h.caffe_ref('fixtures', 'lenet', 'sgd20', 'iter0_label.npy'))
    scaled = arr.astype(np.float32) * np.float32(0.00390625)
    hits = [i for i in range(len(batch)) if np.array_equal(batch[i], scaled)]
    assert hits, 'the Datum is none of the first 64 training images'
    assert labels[hits[0]] == datum.label


# ---------------------------------------------------------------- Transformer

def _imagenet_style_transformer(mean=None):
    t = caffe.io.Transformer({'data': (10, 3, 4, 5)})
    t.set_transpose('data', (2, 0, 1))
    t.set_channel_swap('data', (2, 1, 0))
    t.set_raw_scale('data', 255.0)
    t.set_mean('data', np.array([104.0, 117.0, 123.0]) if mean is None else mean)
    t.set_input_scale('data', 0.5)
    return t


def test_preprocess_order_of_operations_by_hand():
    rng = np.random.RandomState(0)
    img = rng.rand(4, 5, 3).astype(np.float32)  # RGB, already the input's size: no resize
    keep = img.copy()
    out = _imagenet_style_transformer().preprocess('data', img)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(img, keep)  # the caller's array is left alone
    # channel 0 of the input is the image's blue channel (BGR)
    assert out[0, 1, 2] == pytest.approx((img[1, 2, 2] * 255 - 104) * 0.5, rel=1e-6)
    assert out[1, 3, 4] == pytest.approx((img[3, 4, 1] * 255 - 117) * 0.5, rel=1e-6)
    assert out[2, 0, 0] == pytest.approx((img[0, 0, 0] * 255 - 123) * 0.5, rel=1e-6)
    expected = (img.transpose(2, 0, 1)[[2, 1, 0]] * 255 - np.array([104, 117, 123])[:, None, None]) * 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_deprocess_inverts_preprocess():
    rng = np.random.RandomState(1)
    img = rng.rand(4, 5, 3).astype(np.float32)
    mean = rng.rand(3, 4, 5) * 100
    t = _imagenet_style_transformer(mean)
    back = t.deprocess('data', t.preprocess('data', img)[np.newaxis])  # a 1 x K x H x W blob
    assert back.shape == (4, 5, 3)
    np.testing.assert_allclose(back, img, atol=2e-6)


def test_preprocess_resizes_to_the_input_size():
    t = caffe.io.Transformer({'data': (1, 1, 4, 5)})
    t.set_transpose('data', (2, 0, 1))
    img = np.array([[0, 1, 2], [3, 4, 5]], np.float32)[:, :, None]
    out = t.preprocess('data', img)
    assert out.shape == (1, 4, 5)
    np.testing.assert_allclose(out[0], caffe.io.resize_image(img, (4, 5))[:, :, 0])


def test_set_mean_resizes_a_larger_mean_and_checks_shapes():
    t = caffe.io.Transformer({'data': (1, 3, 2, 2)})
    mean = np.stack([np.full((4, 4), 10.0), np.arange(16.0).reshape(4, 4), np.full((4, 4), 30.0)])
    t.set_mean('data', mean)
    m = t.mean['data']
    assert m.shape == (3, 2, 2)
    # pycaffe's values (scikit-image 0.26): the mean is resized in [0, 1] over
    # its own range (0 to 30), whose zero padding under the anti-aliasing
    # pulls even the constant channels towards 0.
    pycaffe = np.array([[[8.95882577, 8.95882577], [8.95882577, 8.95882577]],
                        [[2.62004212, 4.25967291], [9.17856574, 10.81819654]],
                        [[26.8764782, 26.8764782], [26.8764782, 26.8764782]]])
    np.testing.assert_allclose(m, pycaffe, atol=2e-6)
    with pytest.raises(ValueError, match='Mean channels incompatible'):
        t.set_mean('data', np.zeros(4))
    with pytest.raises(ValueError, match='incompatible with input'):
        t.set_mean('data', np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match='Mean shape invalid'):
        t.set_mean('data', np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match='not one of the net inputs'):
        t.set_raw_scale('dat', 255)
    with pytest.raises(ValueError, match='Transpose order'):
        t.set_transpose('data', (1, 0))
    with pytest.raises(ValueError, match='Channel swap'):
        t.set_channel_swap('data', (1, 0))


# ---------------------------------------------------------------- images

def test_resize_bilinear_upsampling_by_hand():
    # 2x3 -> 4x5. Output pixel centres map to input positions
    # (o + 0.5) * in/out - 0.5; outside the image reads the image's minimum
    # (zero after pycaffe's mapping to [0, 1]).
    img = np.array([[0, 1, 2], [3, 4, 5]], np.float32)[:, :, None]
    out = caffe.io.resize_image(img, (4, 5))
    assert out.shape == (4, 5, 1) and out.dtype == np.float32
    rows = (np.arange(4) + 0.5) * 0.5 - 0.5
    cols = (np.arange(5) + 0.5) * 0.6 - 0.5
    padded = np.pad(img[:, :, 0].astype(np.float64), 1)

    def at(y, x):
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        wy, wx = y - y0, x - x0
        p = lambda r, c: padded[r + 1, c + 1]
        return ((1 - wy) * ((1 - wx) * p(y0, x0) + wx * p(y0, x0 + 1))
                + wy * ((1 - wx) * p(y0 + 1, x0) + wx * p(y0 + 1, x0 + 1)))

    expected = np.array([[at(y, x) for x in cols] for y in rows])
    np.testing.assert_allclose(out[:, :, 0], expected, atol=1e-6)
    # What pycaffe's resize_image gave (scikit-image 0.26, SciPy 1.17).
    pycaffe = np.array([[0.0, 0.3, 0.75, 1.2, 1.2],
                        [0.6, 1.15, 1.75, 2.35, 2.2],
                        [1.8, 2.65, 3.25, 3.85, 3.4],
                        [1.8, 2.55, 3.0, 3.45, 3.0]])
    np.testing.assert_allclose(out[:, :, 0], pycaffe, atol=1e-6)


def test_resize_downsampling_is_anti_aliased_as_pycaffe():
    b = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    img = np.concatenate([b, b * 2, b[::-1]], axis=2)
    out = caffe.io.resize_image(img, (2, 2))
    # pycaffe's values (scikit-image 0.26 Gaussian anti-aliasing, sigma 0.5).
    pycaffe = np.array([[[2.620042, 5.240084, 9.178566], [4.259673, 8.519346, 10.818197]],
                        [[9.178566, 18.357132, 2.620042], [10.818197, 21.636395, 4.259673]]])
    np.testing.assert_allclose(out, pycaffe, atol=2e-6)


def test_resize_nearest_other_channel_counts_and_constants():
    img = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    near = caffe.io.resize_image(img, (5, 4), interp_order=0)
    np.testing.assert_array_equal(near[:, :, 0], [[0, 1, 1, 2], [0, 1, 1, 2], [3, 4, 4, 5], [6, 7, 7, 8], [6, 7, 7, 8]])
    # Two channels take SciPy's zoom path: corners aligned, plain linear.
    two = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    z = caffe.io.resize_image(two, (3, 3))
    np.testing.assert_array_equal(z[:, :, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_array_equal(z[:, :, 1], z[:, :, 0] + 1)
    const = caffe.io.resize_image(np.full((3, 3, 3), 7.5, np.float32), (6, 2))
    assert const.shape == (6, 2, 3) and np.all(const == 7.5)
    same = np.random.RandomState(0).rand(5, 6, 3).astype(np.float32)
    np.testing.assert_allclose(caffe.io.resize_image(same, (5, 6)), same, atol=1e-6)
    with pytest.raises(ValueError, match='interp_order must be 0 to 5'):
        caffe.io.resize_image(same, (2, 2), interp_order=6)
    with pytest.raises(ValueError, match='H x W x K'):
        caffe.io.resize_image(np.zeros((4, 4)), (2, 2))


def test_resize_spline_orders_as_pycaffe():
    # What pycaffe's resize_image gave at interp_order 2 to 5 (scikit-image
    # 0.26, SciPy 1.17): the 3-channel path upsampled (cubic) and shrunk
    # (quadratic, anti-aliased), and SciPy's zoom for 2 channels (orders 4, 5).
    b = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    img = np.concatenate([b, b[::-1] * 2, b.transpose(1, 0, 2)], axis=2)
    cubic = caffe.io.resize_image(img, (4, 5), interp_order=3)
    np.testing.assert_allclose(cubic[:, :, 0], [[0.0, 0.1080101, 0.7983373, 1.6239634, 1.4832809],
                                                [1.1601872, 1.8292726, 2.4943616, 3.5821846, 3.0370998],
                                                [4.0418577, 5.5445385, 5.9193974, 7.29745, 5.9187703],
                                                [4.6387434, 6.269009, 6.47805, 7.7849627, 6.261935]], atol=2e-6)
    np.testing.assert_allclose(cubic[:, :, 1], [[9.277487, 12.538018, 12.9561, 15.569925, 12.52387],
                                                [8.083715, 11.089077, 11.838795, 14.5949, 11.837541],
                                                [2.3203745, 3.6585453, 4.9887233, 7.164369, 6.0741997],
                                                [0.0, 0.2160202, 1.5966747, 3.2479267, 2.9665618]], atol=4e-6)
    b = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    img = np.concatenate([b, b * 2, b[::-1]], axis=2)
    quadratic = caffe.io.resize_image(img, (2, 3), interp_order=2)
    np.testing.assert_allclose(quadratic, [[[2.2241845, 4.448369, 11.201717], [3.4008787, 6.8017573, 11.504513],
                                            [5.3110766, 10.622153, 14.2886095]],
                                           [[11.201717, 22.403435, 2.2241845], [11.504513, 23.009026, 3.4008787],
                                            [14.2886095, 28.577219, 5.3110766]]], atol=4e-6)
    two = (np.arange(18, dtype=np.float32) ** 2).reshape(3, 3, 2)
    np.testing.assert_allclose(caffe.io.resize_image(two, (4, 2), interp_order=4)[:, :, 1],
                               [[1.0, 25.0], [16.407408, 64.703705], [99.37037, 195.07408], [169.0, 289.0]], atol=3e-5)
    np.testing.assert_allclose(caffe.io.resize_image(two, (4, 2), interp_order=5)[:, :, 0],
                               [[0.0, 16.0], [9.185185, 49.28395], [80.888885, 168.79013], [144.0, 256.0]], atol=3e-5)


def test_oversample_ten_crops():
    img = np.arange(4 * 6, dtype=np.float32).reshape(4, 6, 1)
    crops = caffe.io.oversample([img, img + 100], (2, 3))
    assert crops.shape == (20, 2, 3, 1) and crops.dtype == np.float32
    c = crops[:, :, :, 0]
    np.testing.assert_array_equal(c[0], img[0:2, 0:3, 0])    # top-left
    np.testing.assert_array_equal(c[1], img[0:2, 3:6, 0])    # top-right
    np.testing.assert_array_equal(c[2], img[2:4, 0:3, 0])    # bottom-left
    np.testing.assert_array_equal(c[3], img[2:4, 3:6, 0])    # bottom-right
    np.testing.assert_array_equal(c[4], img[1:3, 1:4, 0])    # centre: 2 +- 1, 3 +- 1.5 truncated
    for k in range(5):
        np.testing.assert_array_equal(c[5 + k], c[k][:, ::-1])  # mirrors
    np.testing.assert_array_equal(c[10:], c[:10] + 100)
    with pytest.raises(ValueError, match='does not fit'):
        caffe.io.oversample([img], (5, 3))


def test_load_image_color_gray_alpha_and_errors(tmp_path):
    from PIL import Image
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 2] = (0, 51, 255)
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    im = caffe.io.load_image(str(tmp_path / 'rgb.png'))
    assert im.shape == (2, 3, 3) and im.dtype == np.float32
    np.testing.assert_allclose(im[1, 2], [0, 0.2, 1.0], atol=1e-7)
    gray = caffe.io.load_image(str(tmp_path / 'rgb.png'), color=False)
    assert gray.shape == (2, 3, 1)
    assert gray[0, 0, 0] == pytest.approx(0.2125, abs=1e-7)
    assert gray[1, 2, 0] == pytest.approx(0.7154 * 0.2 + 0.0721, abs=1e-6)
    Image.fromarray(np.array([[0, 128], [255, 64]], np.uint8)).save(tmp_path / 'g.png')
    g3 = caffe.io.load_image(str(tmp_path / 'g.png'))
    assert g3.shape == (2, 2, 3) and np.all(g3[0, 1] == np.float32(128 / 255))
    assert caffe.io.load_image(str(tmp_path / 'g.png'), color=False).shape == (2, 2, 1)
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 10, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / 'a.png')
    np.testing.assert_array_equal(caffe.io.load_image(str(tmp_path / 'a.png')), im)
    with pytest.raises(FileNotFoundError, match='no such file'):
        caffe.io.load_image(str(tmp_path / 'missing.jpg'))
    (tmp_path / 'not.png').write_bytes(b'hello')
    with pytest.raises(ValueError, match='not an image'):
        caffe.io.load_image(str(tmp_path / 'not.png'))
