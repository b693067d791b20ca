"""py-faster-rcnn's proposal layer (type: "Python", module rpn.proposal_layer):
its own Python code when that module imports, caffe-tch's native Proposal
layer (py-faster-rcnn's rules and config defaults) when it does not."""
import sys

import numpy as np
import pytest

import caffe
from conftest import run_caffe_rc

RPN_INPUTS = """
layer { name: "in" type: "Input" top: "scores" top: "deltas" top: "im_info"
  input_param { shape { dim: 1 dim: 18 dim: 7 dim: 9 } shape { dim: 1 dim: 36 dim: 7 dim: 9 } shape { dim: 1 dim: 3 } } }
"""
PYTHON = """layer { name: "proposal" type: "Python" bottom: "scores" bottom: "deltas" bottom: "im_info" top: "rois"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }
"""
# What py-faster-rcnn's config gives the TEST phase.
NATIVE = """layer { name: "proposal" type: "Proposal" bottom: "scores" bottom: "deltas" bottom: "im_info" top: "rois"
  proposal_param { feat_stride: 16 pre_nms_topn: 6000 post_nms_topn: 300 nms_thresh: 0.7 min_size: 16 } }
"""
# A stand-in for py-faster-rcnn's module: one region, the whole image.
STUB = '''import caffe, numpy as np
class ProposalLayer(caffe.Layer):
    def setup(self, bottom, top):
        top[0].reshape(1, 5)
    def reshape(self, bottom, top):
        pass
    def forward(self, bottom, top):
        h, w = bottom[2].data[0, :2]
        top[0].data[...] = [[0, 0, 0, w - 1, h - 1]]
    def backward(self, top, propagate_down, bottom):
        pass
'''


def rois(path):
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.RandomState(3)
    net.blobs["scores"].data[...] = rng.rand(1, 18, 7, 9)
    net.blobs["deltas"].data[...] = rng.randn(1, 36, 7, 9) * 0.2
    net.blobs["im_info"].data[...] = [[110, 140, 1]]
    return net.forward()["rois"].copy()


def test_without_its_module_the_native_layer_runs(tmp_path, capfd):
    assert "rpn" not in sys.modules
    (tmp_path / "py.prototxt").write_text(RPN_INPUTS + PYTHON)
    (tmp_path / "native.prototxt").write_text(RPN_INPUTS + NATIVE)
    ours = rois(tmp_path / "py.prototxt")
    log = capfd.readouterr().err
    assert "layer 'proposal' is py-faster-rcnn's rpn.proposal_layer.ProposalLayer (No module named 'rpn'" in log, log
    assert "running caffe-tch's native Proposal layer with py-faster-rcnn's TEST settings" in log, log
    want = rois(tmp_path / "native.prototxt")
    assert ours.shape[0] > 1 and ours.shape[1] == 5
    np.testing.assert_array_equal(ours, want)


def test_with_its_module_its_python_code_runs(tmp_path, monkeypatch):
    (tmp_path / "rpn").mkdir()
    (tmp_path / "rpn" / "__init__.py").write_text("")
    (tmp_path / "rpn" / "proposal_layer.py").write_text(STUB)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        (tmp_path / "py.prototxt").write_text(RPN_INPUTS + PYTHON)
        np.testing.assert_array_equal(rois(tmp_path / "py.prototxt"), [[0, 0, 0, 139, 109]])
    finally:
        for m in ("rpn", "rpn.proposal_layer"):
            sys.modules.pop(m, None)


def test_caffe_forward_runs_it_natively(tmp_path):
    (tmp_path / "py.prototxt").write_text(RPN_INPUTS + PYTHON)
    info = tmp_path / "im_info.npy"
    np.save(info, np.array([[110, 140, 1]], dtype=np.float32))
    rc, log = run_caffe_rc(
        "forward", "-model", tmp_path / "py.prototxt", "-input", "im_info=%s" % info, "-out", tmp_path / "out"
    )
    assert rc == 0, log[-2000:]
    assert "native Proposal layer" in log, log[-2000:]
    assert np.load(tmp_path / "out" / "rois.npy").shape[1] == 5


def test_a_broken_module_is_its_error_with_the_way_out(tmp_path, monkeypatch):
    (tmp_path / "rpn").mkdir()
    (tmp_path / "rpn" / "__init__.py").write_text("")
    (tmp_path / "rpn" / "proposal_layer.py").write_text("from utils.cython_bbox import bbox_overlaps\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        (tmp_path / "py.prototxt").write_text(RPN_INPUTS + PYTHON)
        # The module's own ImportError, as in pycaffe, noting the way out.
        with pytest.raises(ModuleNotFoundError, match="No module named 'utils'") as e:
            caffe.Net(str(tmp_path / "py.prototxt"), caffe.TEST)
        note = "\n".join(getattr(e.value, "__notes__", []))
        assert "without its lib on the path caffe-tch runs its native Proposal layer" in note, note
    finally:
        for m in ("rpn", "rpn.proposal_layer"):
            sys.modules.pop(m, None)
