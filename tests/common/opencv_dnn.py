# Runs exported ONNX models in OpenCV's DNN (tests/export_onnx.rs): each
# argument is a JSON manifest with the model, its input .npy files by input
# name and, by output name, where to write each output. A model OpenCV cannot
# load or run gets "error" in the manifest's report file instead.
import json
import sys

import cv2
import numpy as np


def run(m):
    net = cv2.dnn.readNetFromONNX(m["model"])
    for name, path in m["inputs"].items():
        net.setInput(np.load(path), name)
    names = list(m["outputs"])
    values = net.forward(names)
    for name, value in zip(names, values):
        np.save(m["outputs"][name], np.asarray(value, dtype=np.float32, order="C"))


def main():
    print("OpenCV", cv2.__version__)
    for manifest in sys.argv[1:]:
        with open(manifest) as f:
            m = json.load(f)
        report = {}
        try:
            run(m)
        except cv2.error as e:
            report["error"] = " ".join(str(e).split())
        with open(m["report"], "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
