"""The SSD fork's layers (Normalize, PriorBox, Permute, DetectionOutput)
against OpenCV 4's Caffe importer, an implementation of the same layers that
OpenCV's own SSD face detector ran on for years: a small SSD-style net with
random weights, written by caffe-tch and read by both, must agree blob by
blob. OpenCV pads DetectionOutput's top with zero rows to batch ×
keep_top_k and orders its rows by confidence; the SSD fork (and caffe-tch)
lists the kept boxes by image, then label, then confidence, so the rows are
compared as sets."""
import re

import numpy as np
import pytest

import caffe
from conftest import ROOT, need

PROTO = ROOT / "tests" / "fixtures" / "ssd" / "ssd_tiny.prototxt"
DETECTION = "nms_param { nms_threshold: 0.45 top_k: 100 }\n    code_type: CENTER_SIZE keep_top_k: 40 confidence_threshold: 0.3"


def opencv():
    try:
        import cv2
    except ImportError:
        cv2 = None
    need(cv2 is not None and int(cv2.__version__.split(".")[0]) == 4,
         "OpenCV 4 for Python (opencv-python-headless<5; make installs it)")
    return cv2


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("ssd") / "ssd_tiny.caffemodel"
    caffe.Net(str(PROTO), caffe.TEST).save(str(path))
    return path


def image_batch():
    return np.random.default_rng(0).standard_normal((2, 3, 48, 64)).astype(np.float32)


def run_both(proto, weights):
    cv2 = opencv()
    x = image_batch()
    net = caffe.Net(str(proto), str(weights), caffe.TEST)
    net.blobs["data"].data[...] = x
    net.forward()
    cv = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv.setInput(x)
    return net, cv


def rows_as_set(d):
    d = d.reshape(-1, 7)
    return d[np.lexsort((-d[:, 2], d[:, 1], d[:, 0]))]


def test_every_ssd_blob_matches_opencv(weights):
    net, cv = run_both(PROTO, weights)
    names = ["conv2_norm", "conv2_norm_mbox_loc_perm", "conv2_norm_mbox_priorbox", "conv3_mbox_priorbox",
             "mbox_priorbox", "mbox_loc", "mbox_conf_flatten"]
    for name, theirs in zip(names, cv.forward(names)):
        ours = net.blobs[name].data
        assert ours.shape == theirs.shape, name
        # The priors are computed from sizes alone; the rest passes through convolutions
        # that OpenCV computes with other kernels.
        tol = 1e-6 if "priorbox" in name else 1e-4 * (1 + np.abs(theirs).max())
        assert np.abs(ours - theirs).max() <= tol, (name, np.abs(ours - theirs).max())


@pytest.mark.parametrize("detection, background", [
    (DETECTION, 0),
    ("nms_param { nms_threshold: 0.45 top_k: 100 }\n    code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.5", 0),
    ("nms_param { nms_threshold: 0.01 top_k: 100 }\n    code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.5", 0),
    ("nms_param { nms_threshold: 1.0 }\n    code_type: CENTER_SIZE keep_top_k: 400 confidence_threshold: 0.6", 0),
    ("nms_param { nms_threshold: 0.45 top_k: 50 }\n    code_type: CORNER keep_top_k: 200 confidence_threshold: 0.9", 0),
    ("nms_param { nms_threshold: 0.3 top_k: 60 }\n    code_type: CENTER_SIZE keep_top_k: 300 confidence_threshold: 0.2", 2),
])
def test_detections_match_opencv(weights, tmp_path, detection, background):
    text = PROTO.read_text()
    assert DETECTION in text
    text = text.replace(DETECTION, detection).replace("background_label_id: 0", "background_label_id: %d" % background)
    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    net, cv = run_both(proto, weights)
    theirs = cv.forward("detection_out").reshape(-1, 7)
    theirs = theirs[theirs[:, 2] > 0]  # OpenCV's padding rows are all zero
    ours = net.blobs["detection_out"].data
    assert ours.shape[:2] == (1, 1) and ours.shape[3] == 7
    rows = ours.reshape(-1, 7)
    assert len(rows) == len(theirs) > 0
    assert np.abs(rows_as_set(rows) - rows_as_set(theirs)).max() <= 1e-4
    # The fork's order: image, then label, then confidence (highest first).
    keys = [(r[0], r[1], -r[2]) for r in rows]
    assert keys == sorted(keys)
    keep_top_k = int(re.search(r"keep_top_k: (\d+)", detection).group(1))
    for image in (0, 1):
        assert (rows[:, 0] == image).sum() <= keep_top_k
    labels = {0, 1, 2} - {background}
    assert set(rows[:, 1].astype(int)) <= labels


def test_no_detection_gives_one_row_per_image(weights, tmp_path):
    text = PROTO.read_text().replace("confidence_threshold: 0.3", "confidence_threshold: 1.5")
    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    net = caffe.Net(str(proto), str(weights), caffe.TEST)
    net.blobs["data"].data[...] = image_batch()
    net.forward()
    np.testing.assert_array_equal(net.blobs["detection_out"].data,
                                  [[[[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]]]])
