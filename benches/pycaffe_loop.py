"""pycaffe-style loop (`net.blobs['data'].data[...] = x; net.forward()`)
beside `caffe time`'s forward, on the same net, interleaved rounds.

    .venv/bin/python benches/pycaffe_loop.py [rounds] [iterations]
"""
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import caffe

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests/fixtures/bvlc/models/bvlc_reference_caffenet/deploy.prototxt"
CAFFE = ROOT / "target/release/caffe"
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 20

net = caffe.Net(str(MODEL), caffe.TEST)
x = np.random.RandomState(0).rand(*net.blobs["data"].shape).astype(np.float32)
for _ in range(2):  # warm-up (oneDNN primitive caches)
    net.blobs["data"].data[...] = x
    net.forward()

py_ms, cli_ms = [], []
for r in range(rounds):
    t = time.perf_counter()
    for _ in range(iters):
        net.blobs["data"].data[...] = x
        out = net.forward()
    py_ms.append((time.perf_counter() - t) * 1e3 / iters)
    log = subprocess.run(
        [str(CAFFE), "time", "-model", str(MODEL), "-phase", "TEST", "-iterations", str(iters)], capture_output=True, text=True
    ).stderr
    cli_ms.append(float(re.search(r"Average Forward pass: ([\d.]+) ms", log).group(1)))
    print("round %d: pycaffe loop %.1f ms, caffe time forward %.1f ms" % (r + 1, py_ms[-1], cli_ms[-1]), flush=True)
print(
    "median over %d rounds (batch %d): pycaffe loop %.1f ms, caffe time forward %.1f ms, ratio %.3f"
    % (rounds, x.shape[0], np.median(py_ms), np.median(cli_ms), np.median(py_ms) / np.median(cli_ms))
)
