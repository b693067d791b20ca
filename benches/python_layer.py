"""What a Python layer (type: "Python") costs per call, beside a native layer
doing the same work: a chain of K identity layers (toys.Identity, a
caffe.Layer subclass in python/tests/pylayers/, against Caffe's Power layer
with power 1), timed for forward alone (a deploy net, no autograd) and for
forward + backward (force_backward: the staged backward around each Python
layer), at three blob sizes.

    .venv/bin/python benches/python_layer.py [repeats]
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import caffe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "tests" / "pylayers"))
K = 10
ROUNDS = 5
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 20
SHAPES = [(1, 10), (64, 1, 28, 28), (10, 96, 27, 27)]


def chain(shape, python, backward):
    dims = " ".join("dim: %d" % d for d in shape)
    text = "force_backward: %s\n" % ("true" if backward else "false")
    text += 'layer { name: "x" type: "Input" top: "b0" input_param { shape { %s } } }\n' % dims
    for i in range(K):
        if python:
            body = 'type: "Python" python_param { module: "toys" layer: "Identity" }'
        else:
            body = 'type: "Power" power_param { power: 1 }'
        text += 'layer { name: "l%d" %s bottom: "b%d" top: "b%d" }\n' % (i, body, i, i + 1)
    f = tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False)
    f.write(text)
    f.close()
    return f.name


def per_pass_ms(shape, python, backward):
    net = caffe.Net(chain(shape, python, backward), caffe.TRAIN)
    net.blobs["b0"].data[...] = np.random.RandomState(0).randn(*shape)
    top = np.ones(shape, np.float32)
    best = float("inf")
    for _ in range(ROUNDS):  # the best round: the machine is shared
        t = time.perf_counter()
        for _ in range(repeats):
            net.forward()
            if backward:
                net.backward(**{"b%d" % K: top})
        best = min(best, (time.perf_counter() - t) * 1e3 / repeats)
    return best


print("per layer, ms (best of %d rounds of %d passes; %d layers in a chain)" % (ROUNDS, repeats, K))
print("%-18s %-18s %10s %10s %12s" % ("blob", "pass", "Python", "native", "overhead"))
for shape in SHAPES:
    for backward in (False, True):
        py = per_pass_ms(shape, True, backward) / K
        native = per_pass_ms(shape, False, backward) / K
        print(
            "%-18s %-18s %10.3f %10.3f %12.3f"
            % ("x".join(map(str, shape)), "forward+backward" if backward else "forward", py, native, py - native)
        )
