#!/usr/bin/env python3
"""PyTorch eager's forward + backward of a net exported by `caffe export
-format pytorch`, the same work as `caffe time`'s Forward-Backward: every
output's gradient seeded with ones (the backward of the sum of the outputs),
the parameters' gradients computed. With --graph on a GPU, the step is also
captured once in a CUDA graph and replayed (PyTorch's own torch.cuda.graph),
the figure a launch-bound net reaches without per-op launches. TF32 is off, as
in caffe-tch. Prints one line per mode: "eager: X ms" and "cuda graph: Y ms".

Usage: .venv/bin/python benches/torch_eager_step.py EXPORT_DIR --input data=64,1,28,28
           [--input label=64] [--device cuda] [--iterations 50] [--threads N] [--graph]"""
import argparse
import importlib.util
import json
import os
import sys
import time
import types

import torch


def read_safetensors(path):
    """The tensors of a safetensors file (8-byte header length, JSON header,
    raw little-endian data), for a machine without the safetensors package."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    kinds = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "I64": torch.int64, "I32": torch.int32}
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        raw = bytearray(data[8 + n + start : 8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=kinds[entry["dtype"]]).reshape(entry["shape"])
    return out


def load_model(folder):
    try:
        import safetensors.torch  # noqa: F401  (what the exported model.py imports)
    except ImportError:
        stub = types.ModuleType("safetensors.torch")
        stub.load_file = read_safetensors
        sys.modules["safetensors"] = types.ModuleType("safetensors")
        sys.modules["safetensors.torch"] = stub
    spec = importlib.util.spec_from_file_location("exported_model", os.path.join(folder, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir")
    ap.add_argument("--input", action="append", default=[], help="NAME=d0,d1,... (a Caffe input blob and its shape)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--graph", action="store_true", help="also time the step captured in a CUDA graph")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(a.device)
    net = load_model(a.export_dir).to(device)
    for p in net.parameters():
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    inputs = {}
    for spec in a.input:
        name, shape = spec.split("=")
        inputs[name] = torch.rand([int(d) for d in shape.split(",")], generator=g).to(device)

    def step():
        out = net(**inputs)
        loss = sum(v.sum() for v in out.values() if v.requires_grad)
        loss.backward()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(run):
        for _ in range(3):
            run()
        sync()
        start = time.perf_counter()
        for _ in range(a.iterations):
            run()
        sync()
        return (time.perf_counter() - start) * 1000 / a.iterations

    def eager():
        net.zero_grad(set_to_none=True)
        step()

    print("eager: %.3f ms" % timed(eager))
    if a.graph:
        if device.type != "cuda":
            print("cuda graph: needs --device cuda")
            return
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                eager()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # The gradients the graph writes are the ones it allocates here.
        net.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            step()
        print("cuda graph: %.3f ms" % timed(graph.replay))


if __name__ == "__main__":
    main()
