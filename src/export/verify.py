# Runs exported models for `caffe export -verify` (and the tests): ONNX in
# onnxruntime (after onnx's full check and strict shape inference), or in
# OpenVINO or OpenCV's DNN (manifest "runtime"), PyTorch's model.py in torch.
# Each argument is a JSON manifest naming the input .npy files and where to
# write each output; the caller compares.
import json
import os
import sys

import numpy as np


def inferred_shapes(model):
    """Every value's shape from onnx's strict shape inference. Large weights
    become typed graph inputs first: inference needs only their shapes, and
    copying their data costs more than the inference itself. Small constants
    (shapes, axes) stay, since Reshape's inference reads their values."""
    import onnx

    g = model.graph
    large = [len(t.dims) > 0 and _count(t.dims) > 4096 for t in g.initializer]
    keep = [t for t, big in zip(g.initializer, large) if not big]
    for t, big in zip(g.initializer, large):
        if big:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del g.initializer[:]
    g.initializer.extend(keep)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
    return shapes


def _count(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def run_onnx(m):
    report = {}
    try:
        import onnx

        onnx.checker.check_model(m["model"], full_check=True)
        report["inferred_shapes"] = inferred_shapes(onnx.load(m["model"]))
        report["checker"] = "passed"
    except ImportError:
        report["checker"] = "onnx not installed"
    feeds = {name: np.load(path) for name, path in m["inputs"].items()}
    run = RUNTIMES[m.get("runtime", "onnxruntime")]
    return run(m["model"], feeds, list(m["outputs"])), report


def run_onnxruntime(model, feeds, names):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("CAFFE_TCH_VERIFY_THREADS", "0"))
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, feeds)))


def run_openvino(model, feeds, names):
    """OpenVINO's CPU plugin, in f32 (it may pick bf16 on CPUs that have it)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(feeds)
    values = {}
    for port, value in result.items():
        for name in port.get_names():
            values[name] = value
    return {name: values[name] for name in names if name in values}


def run_opencv(model, feeds, names):
    import cv2

    net = cv2.dnn.readNetFromONNX(model)
    for name, value in feeds.items():
        net.setInput(value, name)
    return dict(zip(names, net.forward(names)))


RUNTIMES = {"onnxruntime": run_onnxruntime, "openvino": run_openvino, "opencv": run_opencv}


def run_pytorch(m):
    import torch

    import importlib.util

    # A unique module name per model: several runs share this process.
    spec = importlib.util.spec_from_file_location(
        "caffe_tch_exported_%d" % len(sys.modules), os.path.join(m["model"], "model.py")
    )
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)

    net = exported.load()
    net.eval()
    # model.py's keyword arguments are the input names made identifiers (INPUTS maps them).
    names = getattr(exported, "INPUTS", {})
    feeds = {names.get(name, name): torch.from_numpy(np.load(path)) for name, path in m["inputs"].items()}
    with torch.no_grad():
        out = net(**feeds, blobs=list(m["outputs"])) if m.get("all_blobs") else net(**feeds)
    return {k: v.detach().cpu().numpy() for k, v in out.items()}, {}


def main():
    for manifest in sys.argv[1:]:
        with open(manifest) as f:
            m = json.load(f)
        try:
            values, report = run_onnx(m) if m["format"] == "onnx" else run_pytorch(m)
        except Exception as e:
            raise SystemExit("%s: %s: %s" % (m["model"], type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
        missing = [n for n in m["outputs"] if n not in values]
        if missing:
            raise SystemExit("%s does not return blob(s): %s" % (m["model"], ", ".join(missing)))
        for name, path in m["outputs"].items():
            # asarray keeps a 0-d blob 0-d (ascontiguousarray would make it 1-d).
            np.save(path, np.asarray(values[name], dtype=np.float32, order="C"))
        with open(m["report"], "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
