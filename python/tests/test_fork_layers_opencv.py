"""Fast R-CNN's ROIPooling and ShuffleNet's ShuffleChannel against OpenCV 4's
Caffe importer, which implements both: the same net, inputs and regions in
caffe-tch and in OpenCV must give the same tops."""
import numpy as np

import caffe
from test_ssd_opencv import opencv

NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 dim: 12 dim: 16 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 7 dim: 5 } } }
layer { name: "pool" type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool"
  roi_pooling_param { pooled_h: 3 pooled_w: 4 spatial_scale: 0.5 } }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "data" top: "shuffle" shuffle_channel_param { group: 3 } }
"""

# [image, x1, y1, x2, y2] in pixels of a 24 × 32 image (the map is half its size):
# inside, overhanging, off the map, inverted, one cell, and on image 1.
ROIS = np.array([
    [0, 0, 0, 31, 23],
    [0, 5.2, 3.7, 20.9, 17.1],
    [1, -6, -4, 10, 9],
    [1, 40, 30, 60, 50],
    [0, 20, 18, 8, 6],
    [1, 13, 13, 13, 13],
    [1, 2.5, 1.5, 30.5, 22.5],
], dtype=np.float32)


def test_roi_pooling_and_shuffle_channel_match_opencv(tmp_path):
    cv2 = opencv()
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    x = np.random.default_rng(3).standard_normal((2, 6, 12, 16)).astype(np.float32)
    net = caffe.Net(str(proto), caffe.TEST)
    net.blobs["data"].data[...] = x
    net.blobs["rois"].data[...] = ROIS
    net.forward()
    cv = cv2.dnn.readNetFromCaffe(str(proto))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv.setInput(x, "data")
    cv.setInput(ROIS, "rois")
    pool, shuffle = cv.forward(["pool", "shuffle"])
    np.testing.assert_array_equal(net.blobs["shuffle"].data, shuffle)
    assert net.blobs["pool"].data.shape == pool.shape == (7, 6, 3, 4)
    np.testing.assert_array_equal(net.blobs["pool"].data, pool)


INTERP_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 13 } } }
layer { name: "zoom" type: "Interp" bottom: "data" top: "zoom" interp_param { zoom_factor: 4 } }
layer { name: "sized" type: "Interp" bottom: "data" top: "sized" interp_param { height: 33 width: 7 } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
"""


def test_interp_and_the_pooling_mask_match_opencv(tmp_path):
    """DeepLab's Interp (OpenCV's importer has it, though not with a second
    bottom) and MAX pooling's mask top."""
    cv2 = opencv()
    proto = tmp_path / "net.prototxt"
    proto.write_text(INTERP_NET)
    rng = np.random.default_rng(5)
    # Values in tenths: ties, which both break at the first maximum.
    x = np.round(rng.standard_normal((2, 3, 9, 13)) * 3).astype(np.float32) / 10
    net = caffe.Net(str(proto), caffe.TEST)
    net.blobs["data"].data[...] = x
    net.forward()
    cv = cv2.dnn.readNetFromCaffe(str(proto))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv.setInput(x, "data")
    names = ["zoom", "sized", "pool"]
    # OpenCV gives a layer's second top only through forwardAndRetrieve.
    (zoom,), (sized,), (pool, mask) = cv.forwardAndRetrieve(names)
    for name, theirs in zip(names + ["mask"], [zoom, sized, pool, mask]):
        ours = net.blobs[name].data
        assert ours.shape == theirs.shape, name
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, err_msg=name)
    assert net.blobs["zoom"].data.shape == (2, 3, 33, 49)
