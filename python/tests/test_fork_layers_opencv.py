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
