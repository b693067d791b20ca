"""Python layers (``type: "Python"``): ``caffe.Layer``, the base class of a
layer written in Python, and the blobs it sees, as pycaffe has them.

caffe-tch builds such a layer by importing ``python_param.module``, calling
``python_param.layer`` with the layer's ``LayerParameter``, setting
``param_str`` and ``phase``, then ``setup(bottom, top)`` and
``reshape(bottom, top)``; each forward calls ``reshape`` then ``forward``, and
backward calls ``backward(top, propagate_down, bottom)`` with the tops'
``diff`` filled in. Blobs the layer adds in ``setup``
(``self.blobs.add_blob(*shape)``) are learnable blobs of the net: saved in
caffemodels and updated by the solvers from the ``diff`` its backward writes.
The native side (``python/src/layer.rs``) moves the values in and out.
"""
import traceback

import numpy as np


class LayerBlob:
    """A bottom, top or learnable blob of a Python layer: ``data`` and
    ``diff`` are float32 arrays (pycaffe's Blob)."""

    __slots__ = ("_data", "_diff")

    def __init__(self, *shape):
        self._data = np.zeros(tuple(int(d) for d in shape), dtype=np.float32)
        self._diff = None

    @property
    def data(self):
        return self._data

    @property
    def diff(self):
        if self._diff is None or self._diff.shape != self._data.shape:
            self._diff = np.zeros_like(self._data)
        return self._diff

    @property
    def shape(self):
        return tuple(self._data.shape)

    @property
    def count(self):
        return int(self._data.size)

    def _legacy(self, i):
        # Caffe's LegacyShape: axes past the end read as 1; at most 4 axes.
        if self._data.ndim > 4:
            raise ValueError("num/channels/height/width need a blob of at most 4 axes, this one has shape %s" % (self.shape,))
        return self.shape[i] if i < self._data.ndim else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def reshape(self, *shape):
        """Gives the blob a new shape; its values are zero afterwards unless
        the shape is unchanged."""
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError("negative dimension in blob shape %s" % (shape,))
        if shape != self._data.shape:
            self._data = np.zeros(shape, dtype=np.float32)
            self._diff = None

    def _zero_diff(self):
        if self._diff is not None and self._diff.shape == self._data.shape:
            self._diff.fill(0)
        else:
            self._diff = np.zeros_like(self._data)

    def __repr__(self):
        return "<caffe.Blob %s>" % (self.shape,)


class BlobVec(list):
    """A Python layer's learnable blobs (``self.blobs``)."""

    def add_blob(self, *shape):
        """Appends a zero blob of the given shape (pycaffe's BlobVec.add_blob)."""
        self.append(LayerBlob(*shape))


class Layer:
    """The base class of Python layers. A subclass defines ``setup``,
    ``reshape``, ``forward`` and ``backward``; ``self.param_str``,
    ``self.phase`` (``caffe.TRAIN`` or ``caffe.TEST``) and ``self.blobs`` are
    set before ``setup`` runs."""

    type = "Python"

    def __init__(self, param=None):
        self.layer_param = param

    @property
    def blobs(self):
        try:
            return self.__dict__["_blobs"]
        except KeyError:
            self.__dict__["_blobs"] = BlobVec()
            return self.__dict__["_blobs"]

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


def _describe_error(exc, tb=None):
    """One line for a Python layer's exception: its type, message and traceback."""
    frames = traceback.extract_tb(tb if tb is not None else exc.__traceback__)
    where = " <- ".join(
        '"%s", line %s, in %s: %s' % (f.filename, f.lineno, f.name, (f.line or "").strip()) for f in reversed(frames)
    )
    text = "%s: %s" % (type(exc).__name__, exc)
    return "%s (traceback, innermost first: %s)" % (text, where) if where else text
