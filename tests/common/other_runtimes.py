# Runs exported ONNX models in OpenVINO or OpenCV's DNN for
# tests/export_onnx.rs, through the functions `caffe export -verify_with` runs
# (src/export/verify.py), but with each model's failure recorded rather than
# ending the run: `other_runtimes.py RUNTIME MANIFEST...`. Each manifest names
# the model, its input .npy files by input name and, by output name, where to
# write each output; a model the runtime cannot load or run gets "error" in
# the manifest's report file instead.
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "export"))
import verify  # noqa: E402


def main():
    runtime = sys.argv[1]
    run = verify.RUNTIMES[runtime]
    module = __import__({"opencv": "cv2", "openvino": "openvino"}[runtime])
    print(runtime, module.__version__)
    for manifest in sys.argv[2:]:
        with open(manifest) as f:
            m = json.load(f)
        report = {}
        try:
            feeds = {name: np.load(path) for name, path in m["inputs"].items()}
            values = run(m["model"], feeds, list(m["outputs"]))
            for name, path in m["outputs"].items():
                np.save(path, np.asarray(values[name], dtype=np.float32, order="C"))
        except Exception as e:  # the runtime's own error types
            report["error"] = "%s: %s" % (type(e).__name__, " ".join(str(e).split())[:2000])
        with open(m["report"], "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
