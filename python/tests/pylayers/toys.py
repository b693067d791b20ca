"""Small Python layers for the tests: each mirrors a native layer, or misbehaves on purpose."""
import ast

import numpy as np

import caffe


class Scale(caffe.Layer):
    """y = factor * x; param_str is a Python dict literal: {'factor': 2.5}."""

    def setup(self, bottom, top):
        self.factor = float(ast.literal_eval(self.param_str)["factor"])
        self.seen_phase = self.phase

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.factor * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = self.factor * top[0].diff


class ReLU(caffe.Layer):
    """Caffe's ReLU (negative_slope 0)."""

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = np.maximum(bottom[0].data, 0)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * (bottom[0].data > 0)


class ChannelScale(caffe.Layer):
    """Caffe's Scale layer with a learned per-channel factor (axis 1, no bias):
    one learnable blob, filled with param_str's value (default 1)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = float(self.param_str or 1.0)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def _w(self, x):
        return self.blobs[0].data.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self._w(bottom[0].data)

    def backward(self, top, propagate_down, bottom):
        x, dy = bottom[0].data, top[0].diff
        axes = tuple(a for a in range(x.ndim) if a != 1)
        self.blobs[0].diff[...] = (x * dy).sum(axis=axes)
        if propagate_down[0]:
            bottom[0].diff[...] = dy * self._w(x)


class NpyData(caffe.Layer):
    """A data layer: batches of (data, label) from two .npy files named in
    param_str ("data.npy label.npy batch"), in order, wrapping around."""

    def setup(self, bottom, top):
        data, label, batch = self.param_str.split()
        self.data, self.label, self.batch = np.load(data), np.load(label), int(batch)
        self.pos = 0
        self.served = 0

    def reshape(self, bottom, top):
        top[0].reshape(self.batch, *self.data.shape[1:])
        top[1].reshape(self.batch)

    def forward(self, bottom, top):
        idx = (self.pos + np.arange(self.batch)) % len(self.data)
        top[0].data[...] = self.data[idx]
        top[1].data[...] = self.label[idx]
        self.pos = (self.pos + self.batch) % len(self.data)
        self.served += 1


class Identity(caffe.Layer):
    """y = x: what a Python layer costs beside the work it does (benches)."""

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff


class RaiseInSetup(caffe.Layer):
    def setup(self, bottom, top):
        raise RuntimeError("setup refused: %s" % self.param_str)


class RaiseInForward(ReLU):
    def forward(self, bottom, top):
        raise ValueError("forward refused")


class RaiseInBackward(ReLU):
    def backward(self, top, propagate_down, bottom):
        raise ZeroDivisionError("backward refused")


class Interrupted(ReLU):
    """As if Ctrl-C arrived while the layer ran."""

    def forward(self, bottom, top):
        raise KeyboardInterrupt


class TimesTen(caffe.Layer):
    """y = 10·x; its backward needs no forward before it."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 10 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 10 * top[0].diff


class OwnDiffOnBackward(caffe.Layer):
    """Leaves its top alone; its backward writes its own blob's diff."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[0] = 0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] = 1
