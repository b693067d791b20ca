"""Forward time of an SSD deploy net in caffe-tch (pycaffe, inference) and in
OpenCV 4's Caffe importer, interleaved: the median over rounds of the best of
10 forwards each, 2 threads both. Weights are random (drawn once, saved as a
.caffemodel both read) unless given.

    .venv/bin/python benches/ssd_opencv.py [deploy.prototxt [weights.caffemodel]] [--rounds 7]
"""
import argparse
import os
import tempfile
import time

import cv2
import numpy as np
import torch

import caffe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("proto", nargs="?", default=os.path.join(ROOT, "tests", "fixtures", "ssd", "ssd_tiny.prototxt"))
    ap.add_argument("weights", nargs="?")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    cv2.setNumThreads(2)
    torch.set_num_threads(2)
    weights = a.weights
    if weights is None:
        net = caffe.Net(a.proto, caffe.TEST)
        rng = np.random.default_rng(1)
        for name, blobs in net.params.items():
            for b in blobs:
                fan_in = max(1, int(np.prod(b.data.shape[1:])))
                b.data[...] = rng.standard_normal(b.data.shape).astype(np.float32) / np.sqrt(fan_in)
            if net.layer_dict[name].type == "BatchNorm":
                blobs[1].data[...] = rng.uniform(0.5, 2.0, blobs[1].data.shape)
                blobs[2].data[...] = 1.0
        weights = os.path.join(tempfile.mkdtemp(), "random.caffemodel")
        net.save(weights)
    net = caffe.Net(a.proto, weights, caffe.TEST)
    data = net.inputs[0]
    x = np.random.default_rng(0).standard_normal(net.blobs[data].data.shape).astype(np.float32)
    net.blobs[data].data[...] = x
    cv = cv2.dnn.readNetFromCaffe(a.proto, weights)
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    out = net.outputs[-1]

    def ours():
        t = time.perf_counter()
        net.forward()
        return time.perf_counter() - t

    def theirs():
        cv.setInput(x, data)
        t = time.perf_counter()
        cv.forward(out)
        return time.perf_counter() - t

    for f in (ours, theirs):
        for _ in range(5):
            f()
    a_ms, b_ms = [], []
    for _ in range(a.rounds):
        a_ms.append(min(ours() for _ in range(10)) * 1e3)
        b_ms.append(min(theirs() for _ in range(10)) * 1e3)
    print("%s, input %s: caffe-tch %.2f ms, OpenCV %s %.2f ms (medians of %d rounds)"
          % (os.path.basename(a.proto), tuple(x.shape), np.median(a_ms), cv2.__version__, np.median(b_ms), a.rounds))


if __name__ == "__main__":
    main()
