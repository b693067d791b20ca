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


def faster_rcnn_proposals(scores, deltas, im_info, stride, min_size, pre, post, thresh):
    """py-faster-rcnn's proposal layer, written out in numpy for one image with
    its default anchors (ratios 0.5, 1, 2; scales 8, 16, 32 of a 16-pixel box),
    in float32 as it runs; the sort is stable where numpy's argsort is not."""
    def centre(box):
        w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
        return w, h, box[0] + 0.5 * (w - 1), box[1] + 0.5 * (h - 1)

    def corners(ws, hs, cx, cy):
        return np.stack([cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1), cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)], 1)

    ratios, scales = np.array([0.5, 1, 2]), np.array([8.0, 16, 32])
    w, h, cx, cy = centre(np.array([0.0, 0, 15, 15]))
    ws = np.round(np.sqrt(w * h / ratios))
    boxes = corners(ws, np.round(ws * ratios), cx, cy)
    anchors = np.vstack([corners(b_w * scales, b_h * scales, b_cx, b_cy)
                         for b_w, b_h, b_cx, b_cy in map(centre, boxes)])
    a = len(anchors)
    height, width = scores.shape[-2:]
    sx, sy = np.meshgrid(np.arange(width) * stride, np.arange(height) * stride)
    shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], 1)
    anchors = (anchors[None] + shifts[:, None]).reshape(-1, 4).astype(np.float32)
    d = deltas.transpose(0, 2, 3, 1).reshape(-1, 4)
    s = scores[:, a:].transpose(0, 2, 3, 1).reshape(-1)
    one, half = np.float32(1), np.float32(0.5)
    bw, bh = anchors[:, 2] - anchors[:, 0] + one, anchors[:, 3] - anchors[:, 1] + one
    pcx, pcy = d[:, 0] * bw + anchors[:, 0] + half * bw, d[:, 1] * bh + anchors[:, 1] + half * bh
    pw, ph = np.exp(d[:, 2]) * bw, np.exp(d[:, 3]) * bh
    b = np.stack([pcx - half * pw, pcy - half * ph, pcx + half * pw, pcy + half * ph], 1)
    b[:, 0::2] = np.maximum(np.minimum(b[:, 0::2], im_info[1] - 1), 0)
    b[:, 1::2] = np.maximum(np.minimum(b[:, 1::2], im_info[0] - 1), 0)
    big = np.where((b[:, 2] - b[:, 0] + 1 >= min_size * im_info[2]) & (b[:, 3] - b[:, 1] + 1 >= min_size * im_info[2]))[0]
    b, s = b[big], s[big]
    order = np.argsort(s, kind="stable")[::-1][:pre]
    b, s = b[order], s[order]
    areas = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    kept, suppressed = [], np.zeros(len(b), bool)
    for i in range(len(b)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) == post:
            break
        iw = np.maximum(0, np.minimum(b[i, 2], b[i + 1:, 2]) - np.maximum(b[i, 0], b[i + 1:, 0]) + 1)
        ih = np.maximum(0, np.minimum(b[i, 3], b[i + 1:, 3]) - np.maximum(b[i, 1], b[i + 1:, 1]) + 1)
        inter = iw * ih
        suppressed[i + 1:] |= inter / (areas[i] + areas[i + 1:] - inter) > thresh
    return b[kept], s[kept]


PROPOSAL_NET = """
layer {{ name: "scores" type: "Input" top: "scores" input_param {{ shape {{ dim: 1 dim: 18 dim: 12 dim: 16 }} }} }}
layer {{ name: "deltas" type: "Input" top: "deltas" input_param {{ shape {{ dim: 1 dim: 36 dim: 12 dim: 16 }} }} }}
layer {{ name: "im_info" type: "Input" top: "im_info" input_param {{ shape {{ dim: 1 dim: 3 }} }} }}
layer {{ name: "proposal" type: "Proposal" bottom: "scores" bottom: "deltas" bottom: "im_info" top: "rois" top: "kept"
  proposal_param {{ feat_stride: 16 ratio: 0.5 ratio: 1 ratio: 2 scale: 8 scale: 16 scale: 32 min_size: {min_size} pre_nms_topn: {pre} post_nms_topn: {post} nms_thresh: {thresh} }} }}
"""


def test_proposal_is_py_faster_rcnns_and_opencvs(tmp_path):
    """Faster R-CNN's Proposal against py-faster-rcnn's rules written out in
    numpy, and against OpenCV 4.14's Proposal layer, which does not drop small
    boxes (min_size) and pads its top with zero rows to post_nms_topn."""
    cv2 = opencv()
    rng = np.random.default_rng(7)
    scores = rng.random((1, 18, 12, 16)).astype(np.float32)
    deltas = (rng.standard_normal((1, 36, 12, 16)) * 0.3).astype(np.float32)
    info = np.array([[190, 250, 1.2]], np.float32)
    for min_size, pre, post, thresh in [(16, 6000, 300, 0.7), (16, 500, 50, 0.5), (40, 6000, 1000, 0.9), (0, 6000, 120, 0.7)]:
        proto = tmp_path / f"p{min_size}_{pre}.prototxt"
        proto.write_text(PROPOSAL_NET.format(min_size=min_size, pre=pre, post=post, thresh=thresh))
        net = caffe.Net(str(proto), caffe.TEST)
        net.blobs["scores"].data[...] = scores
        net.blobs["deltas"].data[...] = deltas
        net.blobs["im_info"].data[...] = info
        net.forward()
        rois, kept = net.blobs["rois"].data, net.blobs["kept"].data
        boxes, box_scores = faster_rcnn_proposals(scores, deltas, info[0], 16, min_size, pre, post, thresh)
        assert rois.shape == (len(boxes), 5) and kept.shape == (len(boxes), 1), (rois.shape, len(boxes))
        assert 10 < len(boxes) <= post
        np.testing.assert_array_equal(rois[:, 0], 0)
        np.testing.assert_allclose(rois[:, 1:], boxes, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(kept[:, 0], box_scores)
        if min_size == 0:
            cv = cv2.dnn.readNetFromCaffe(str(proto))
            cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            cv.setInput(scores, "scores")
            cv.setInput(deltas, "deltas")
            cv.setInput(info, "im_info")
            theirs = cv.forward("proposal").reshape(-1, 5)
            assert len(theirs) == post
            np.testing.assert_allclose(theirs[:len(rois)], rois, rtol=0, atol=1e-4)
            np.testing.assert_array_equal(theirs[len(rois):], 0)


PSROI_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 18 dim: 10 dim: 12 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 6 dim: 5 } } }
layer { name: "ps" type: "PSROIPooling" bottom: "data" bottom: "rois" top: "ps"
  psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 } }
"""


def test_psroi_pooling_is_rfcns_and_opencvs(tmp_path):
    """R-FCN's PSROIPooling against its fork's CUDA loop written out in numpy
    and OpenCV 4.14's PSROIPooling."""
    cv2 = opencv()
    proto = tmp_path / "net.prototxt"
    proto.write_text(PSROI_NET)
    x = np.random.default_rng(9).standard_normal((2, 18, 10, 12)).astype(np.float32)
    rois = np.array([[0, 0, 0, 23, 19], [0, 3.4, 5.6, 10.2, 12.7], [1, -4, -4, 6, 6],
                     [1, 30, 30, 40, 40], [0, 9, 9, 9, 9], [1, 2.5, 1.5, 20.5, 14.5]], np.float32)
    net = caffe.Net(str(proto), caffe.TEST)
    net.blobs["data"].data[...] = x
    net.blobs["rois"].data[...] = rois
    net.forward()
    ours = net.blobs["ps"].data
    g, scale = 3, np.float32(0.5)
    want = np.zeros((6, 2, g, g), np.float32)
    for r, roi in enumerate(rois):
        # CUDA's round is half away from zero.
        rnd = lambda v: np.float32(np.sign(v) * np.floor(np.abs(v) + 0.5))
        x1, y1 = rnd(roi[1]) * scale, rnd(roi[2]) * scale
        x2, y2 = (rnd(roi[3]) + 1) * scale, (rnd(roi[4]) + 1) * scale
        bw, bh = max(x2 - x1, np.float32(0.1)) / g, max(y2 - y1, np.float32(0.1)) / g
        for k in range(2):
            for i in range(g):
                for j in range(g):
                    h0 = min(max(int(np.floor(np.float32(i * bh + y1))), 0), 10)
                    h1 = min(max(int(np.ceil(np.float32((i + 1) * bh + y1))), 0), 10)
                    w0 = min(max(int(np.floor(np.float32(j * bw + x1))), 0), 12)
                    w1 = min(max(int(np.ceil(np.float32((j + 1) * bw + x1))), 0), 12)
                    if h1 > h0 and w1 > w0:
                        want[r, k, i, j] = x[int(roi[0]), (k * g + i) * g + j, h0:h1, w0:w1].mean()
    np.testing.assert_allclose(ours, want, rtol=0, atol=1e-6)
    cv = cv2.dnn.readNetFromCaffe(str(proto))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cv.setInput(x, "data")
    cv.setInput(rois, "rois")
    np.testing.assert_allclose(ours, cv.forward("ps"), rtol=0, atol=1e-5)
