"""caffe.Classifier and caffe.Detector: pycaffe's preprocessing, crops and
averaging. The first tests run them on a numpy stand-in for caffe.Net (a 1x1
convolution then global average pooling: scores = W . channel means + b); the
`real_net` tests build the same net with caffe.Net from a prototxt written by
NetSpec and a .caffemodel written with caffe_pb2, and need the compiled
extension (caffe._caffe): they are skipped, saying so, only when it cannot be
imported."""
import numpy as np
import pytest

import pure_helpers as h
import caffe.io
from caffe import layers as L, params as P
from caffe.classifier import Classifier
from caffe.detector import Detector
from caffe.net_spec import NetSpec
from caffe.proto import caffe_pb2

W = np.array([[1.0, 0.5, 0.0], [0.0, 2.0, -1.0], [0.25, 0.0, 3.0]], dtype=np.float32)
B = np.array([0.5, -1.0, 2.0], dtype=np.float32)
INPUT_SHAPE = (2, 3, 4, 4)
MEAN = np.array([10.0, 20.0, 30.0])
SETTINGS = dict(mean=MEAN, raw_scale=255.0, channel_swap=(2, 1, 0), input_scale=0.5)


class _Blob(object):
    def __init__(self, shape):
        self.data = np.zeros(shape, dtype=np.float32)


class FakeNet(object):
    """What Classifier and Detector use of caffe.Net, computed with numpy."""

    def __init__(self):
        self.inputs = ['data']
        self.outputs = ['prob']
        self.blobs = {'data': _Blob(INPUT_SHAPE)}
        self.batches = []

    def forward_all(self, **kwargs):
        assert list(kwargs) == ['data']
        x = kwargs['data']
        assert x.dtype == np.float32 and x.shape[1:] == INPUT_SHAPE[1:]
        self.batches.append(len(x))
        scores = np.einsum('oc,nc->no', W, x.mean(axis=(2, 3))) + B
        return {'prob': scores.reshape(len(x), 3, 1, 1).astype(np.float32)}


class FakeClassifier(Classifier):
    def _open_net(self, model_file, pretrained_file):
        return FakeNet()


class FakeDetector(Detector):
    def _open_net(self, model_file, pretrained_file):
        return FakeNet()


def scores_of(crop_hwk):
    """The expected net output for one H x W x 3 RGB crop of the input size,
    preprocessed by hand: BGR, x255, minus the mean, x0.5."""
    x = (crop_hwk[:, :, [2, 1, 0]].astype(np.float64) * 255.0 - MEAN) * 0.5
    return W.astype(np.float64) @ x.mean(axis=(0, 1)) + B


def _images():
    rng = np.random.RandomState(3)
    return [rng.rand(9, 7, 3).astype(np.float32), rng.rand(5, 8, 3).astype(np.float32)]


def check_classifier(clf):
    images = _images()
    probs = clf.predict(images)  # oversampled: 10 crops of 4x4 from the 6x6 resize
    assert probs.shape == (2, 3)
    for i, img in enumerate(images):
        big = caffe.io.resize_image(img, (6, 6))
        # corners, centre (3 -+ 2), and their mirrors, whose channel means are the same
        crops = [big[y:y + 4, x:x + 4] for y, x in ((0, 0), (0, 2), (2, 0), (2, 2), (1, 1))] * 2
        expected = np.mean([scores_of(c) for c in crops], axis=0)
        np.testing.assert_allclose(probs[i], expected, rtol=1e-5, atol=1e-4)
    centre = clf.predict(images, oversample=False)
    assert centre.shape == (2, 3, 1, 1)
    for i, img in enumerate(images):
        big = caffe.io.resize_image(img, (6, 6))
        np.testing.assert_allclose(centre[i, :, 0, 0], scores_of(big[1:5, 1:5]), rtol=1e-5, atol=1e-4)
    # Without image_dims the images are resized to the input size: one crop, the whole image.
    return probs


def test_classifier_on_a_numpy_net():
    clf = FakeClassifier('deploy.prototxt', 'w.caffemodel', image_dims=(6, 6), **SETTINGS)
    check_classifier(clf)
    assert clf.net.batches == [20, 2]  # 10 crops x 2 images, then 2 centre crops
    assert clf.inputs == ['data'] and list(clf.crop_dims) == [4, 4]  # Net attributes reach through
    whole = FakeClassifier('deploy.prototxt', 'w.caffemodel', **SETTINGS)
    img = _images()[0]
    out = whole.predict([img], oversample=False)
    np.testing.assert_allclose(out[0, :, 0, 0], scores_of(caffe.io.resize_image(img, (4, 4))), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match='every image must be H x W x 3'):
        whole.predict([img, img[:, :, :1]])


def _write_image(path, rng):
    from PIL import Image
    pixels = (rng.rand(12, 10, 3) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels.astype(np.float32) / 255


def check_detector(det, tmp_path):
    rng = np.random.RandomState(5)
    img_a = _write_image(str(tmp_path / 'a.png'), rng)
    img_b = _write_image(str(tmp_path / 'b.png'), rng)
    windows = [(str(tmp_path / 'a.png'), [(0, 0, 6, 5), (2, 3, 12, 10)]), (str(tmp_path / 'b.png'), [(4, 4, 8, 8)])]
    dets = det.detect_windows(zip(*zip(*windows)))  # a one-shot iterator, as a Python 3 zip
    assert [(d['filename'], tuple(d['window'])) for d in dets] == [
        (str(tmp_path / 'a.png'), (0, 0, 6, 5)), (str(tmp_path / 'a.png'), (2, 3, 12, 10)),
        (str(tmp_path / 'b.png'), (4, 4, 8, 8))]
    for d, (img, (y0, x0, y1, x1)) in zip(dets, [(img_a, (0, 0, 6, 5)), (img_a, (2, 3, 12, 10)),
                                                 (img_b, (4, 4, 8, 8))]):
        warped = caffe.io.resize_image(img[y0:y1, x0:x1], (4, 4))
        np.testing.assert_allclose(d['prediction'].ravel(), scores_of(warped), rtol=1e-5, atol=1e-4)


def test_detector_on_a_numpy_net(tmp_path):
    det = FakeDetector('deploy.prototxt', 'w.caffemodel', **SETTINGS)
    assert list(det.crop_dims) == [4, 4, 3] and det.context_pad is None
    check_detector(det, tmp_path)
    with pytest.raises(NotImplementedError, match='selective_search_ijcv_with_python'):
        det.detect_selective_search([str(tmp_path / 'a.png')])
    with pytest.raises(ValueError, match='no windows'):
        det.detect_windows([(str(tmp_path / 'a.png'), [])])


def test_detector_context_crop_pads_with_the_image_space_mean():
    det = FakeDetector('deploy.prototxt', 'w.caffemodel', context_pad=1, **SETTINGS)
    # The mean back in image space: RGB order (the swap undone) and /255.
    np.testing.assert_allclose(det.crop_mean.ravel(), MEAN[::-1] / 255)
    im = np.random.RandomState(0).rand(10, 10, 3).astype(np.float32)
    crop = det.crop(im, np.array([0, 0, 4, 4]))
    # By hand, for a 4x4 input with 1 pixel of context: the box grows by
    # 4 / (4 - 2) about its centre (2.5, 2.5) to rows/cols -2..8, whose
    # 2 out-of-image rows/cols become round(2 * 4/11) = 1 row/col of mean; the
    # clipped box 0..8 is warped to round(9 * 4/11) = 3 pixels.
    assert crop.shape == (4, 4, 3)
    np.testing.assert_allclose(crop[0], np.tile(MEAN[::-1] / 255, (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(crop[:, 0], np.tile(MEAN[::-1] / 255, (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(crop[1:, 1:], caffe.io.resize_image(im[0:8, 0:8], (3, 3)), rtol=1e-6)
    # Without context the crop is the window itself.
    plain = FakeDetector('deploy.prototxt', 'w.caffemodel', **SETTINGS)
    np.testing.assert_array_equal(plain.crop(im, (1, 2, 5, 9)), im[1:5, 2:9])


# ---------------------------------------------------------------- with caffe.Net

def _real_net_files(tmp_path):
    missing = h.caffe_extension_missing()
    if missing:
        pytest.skip(missing + ' (these tests run once the pycaffe extension is built)')
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(INPUT_SHAPE)))
    n.conv = L.Convolution(n.data, num_output=3, kernel_size=1)
    n.prob = L.Pooling(n.conv, pool=P.Pooling.AVE, global_pooling=True)
    model = tmp_path / 'deploy.prototxt'
    model.write_text(str(n.to_proto()))
    weights = caffe_pb2.NetParameter()
    layer = weights.layer.add(name='conv', type='Convolution')
    layer.blobs.extend([caffe.io.array_to_blobproto(W.reshape(3, 3, 1, 1)), caffe.io.array_to_blobproto(B)])
    (tmp_path / 'w.caffemodel').write_bytes(weights.SerializeToString())
    return str(model), str(tmp_path / 'w.caffemodel')


def test_real_net_classifier(tmp_path):
    model, weights = _real_net_files(tmp_path)
    import caffe
    clf = caffe.Classifier(model, weights, image_dims=(6, 6), **SETTINGS)
    np.testing.assert_array_equal(clf.params['conv'][0].data.reshape(3, 3), W)
    check_classifier(clf)


def test_real_net_detector(tmp_path):
    model, weights = _real_net_files(tmp_path)
    import caffe
    check_detector(caffe.Detector(model, weights, **SETTINGS), tmp_path)
