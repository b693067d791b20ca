# Runs exported ONNX models in the runtimes a Caffe user leaves for, besides
# onnxruntime (tests/export_onnx.rs): `other_runtimes.py RUNTIME MANIFEST...`,
# RUNTIME `opencv` (OpenCV's DNN) or `openvino` (OpenVINO's CPU plugin, in
# f32). Each manifest names the model, its input .npy files by input name and,
# by output name, where to write each output. A model the runtime cannot load
# or run gets "error" in the manifest's report file instead.
import json
import sys

import numpy as np


def run_opencv(m):
    import cv2

    net = cv2.dnn.readNetFromONNX(m["model"])
    for name, path in m["inputs"].items():
        net.setInput(np.load(path), name)
    names = list(m["outputs"])
    return dict(zip(names, net.forward(names)))


def run_openvino(m):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(m["model"]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({name: np.load(path) for name, path in m["inputs"].items()})
    values = {}
    for port, value in result.items():
        for name in port.get_names():
            values[name] = value
    return {name: values[name] for name in m["outputs"]}


def main():
    runtime = sys.argv[1]
    run = {"opencv": run_opencv, "openvino": run_openvino}[runtime]
    if runtime == "opencv":
        import cv2

        print("OpenCV", cv2.__version__)
    else:
        import openvino

        print("OpenVINO", openvino.__version__)
    for manifest in sys.argv[2:]:
        with open(manifest) as f:
            m = json.load(f)
        report = {}
        try:
            for name, value in run(m).items():
                np.save(m["outputs"][name], np.asarray(value, dtype=np.float32, order="C"))
        except Exception as e:  # the runtime's own error types
            report["error"] = "%s: %s" % (type(e).__name__, " ".join(str(e).split())[:2000])
        with open(m["report"], "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
