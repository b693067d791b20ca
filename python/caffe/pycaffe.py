"""The Python half of pycaffe's Net and solvers: the ordered dictionaries
(blobs, params, layer_dict, ...), forward/backward with pycaffe's arguments,
batching (forward_all, forward_backward_all), and the solver classes.
The native half (``_caffe``) owns the nets and their memory."""
import os
import time
from collections import OrderedDict
from functools import cached_property

import numpy as np

from . import _caffe


class Blob:
    """A blob of a net: ``data`` and ``diff`` are numpy float32 arrays that
    read and write the net's memory."""

    __slots__ = ("_net", "_name", "_layer", "_j")

    def __init__(self, net, name=None, layer=None, j=None):
        self._net = net
        self._name = name
        self._layer = layer
        self._j = j

    @property
    def data(self):
        if self._name is not None:
            return self._net._blob_array(self._name, False)
        return self._net._param_array(self._layer, self._j, False)

    @property
    def diff(self):
        if self._name is not None:
            return self._net._blob_array(self._name, True)
        return self._net._param_array(self._layer, self._j, True)

    @property
    def shape(self):
        if self._name is not None:
            return tuple(self._net._blob_shape(self._name))
        return tuple(self._net._param_shape(self._layer, self._j))

    @property
    def count(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def _legacy(self, i):
        # Caffe's LegacyShape: axes past the end read as 1; at most 4 axes.
        shape = self.shape
        if len(shape) > 4:
            raise ValueError("num/channels/height/width need a blob of at most 4 axes, this one has shape %s" % (shape,))
        return shape[i] if i < len(shape) else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def reshape(self, *shape):
        shape = [int(d) for d in shape]
        if self._name is None:
            raise ValueError("a layer's parameter blob cannot be reshaped")
        if self._name not in self._net.inputs:
            raise ValueError(
                "blob '%s' is computed by the net; only input blobs (%s) can be reshaped (then call net.reshape())"
                % (self._name, ", ".join(self._net.inputs))
            )
        self._net._reshape_input(self._name, shape)

    def __repr__(self):
        what = self._name if self._name is not None else "%s[%d]" % (self._net._layer_names[self._layer], self._j)
        return "<caffe.Blob %s %s>" % (what, self.shape)


class Layer_:
    """A layer of a net as pycaffe shows it: ``type`` and ``blobs``."""

    def __init__(self, net, index, type_, nblobs):
        self.type = type_
        self.blobs = [Blob(net, layer=index, j=j) for j in range(nblobs)]

    def __repr__(self):
        return "<caffe.Layer %s>" % self.type


def _parse_net_args(args, kwargs):
    """pycaffe's constructor forms: Net(model, phase), Net(model, weights,
    phase), Net(model, phase, weights=..., level=..., stages=...)."""
    kwargs = dict(kwargs)
    args = [os.fspath(a) if isinstance(a, os.PathLike) else a for a in args]
    if not args and "network_file" in kwargs:
        args = [kwargs.pop("network_file")]
    if not args:
        raise TypeError("Net() needs a network file")
    model = args[0]
    weights = kwargs.pop("weights", None)
    phase = kwargs.pop("phase", None)
    rest = args[1:]
    if len(rest) == 2:
        weights, phase = rest
    elif len(rest) == 1:
        if isinstance(rest[0], (str, bytes, os.PathLike)):
            weights = rest[0]
        else:
            phase = rest[0]
    elif len(rest) > 2:
        raise TypeError("Net() takes (model, phase) or (model, weights, phase)")
    level = int(kwargs.pop("level", 0))
    stages = kwargs.pop("stages", None)
    if kwargs:
        raise TypeError("Net() got unexpected keyword arguments: %s" % ", ".join(sorted(kwargs)))
    if phase is None:
        raise TypeError("Net() needs a phase (caffe.TRAIN or caffe.TEST)")

    def path(p):
        return None if p is None else os.fsdecode(os.fspath(p))

    return path(model), int(phase), path(weights), level, None if stages is None else [str(s) for s in stages]


class Net(_caffe.Net):
    """A caffe-tch net with pycaffe's interface."""

    def __new__(cls, *args, **kwargs):
        if "solver" in kwargs:  # a solver's net (see _Solver.net)
            return super().__new__(cls, solver=kwargs["solver"], index=kwargs.get("index", 0))
        model, phase, weights, level, stages = _parse_net_args(args, kwargs)
        return super().__new__(cls, model, phase, weights, level, stages)

    def __init__(self, *args, **kwargs):
        pass

    # ----- structure (fixed once the net is built) -----
    @cached_property
    def _blob_names(self):
        return list(super()._blob_names())

    @cached_property
    def _layer_names(self):
        return list(super()._layer_names())

    @cached_property
    def _wiring(self):
        return self._layer_wiring()

    @cached_property
    def blobs(self):
        """OrderedDict of blob name → Blob, in the net's order."""
        return OrderedDict((n, Blob(self, name=n)) for n in self._blob_names)

    @cached_property
    def layers(self):
        """The layers in order; a Python layer is its own object (a caffe.Layer), as in pycaffe."""
        out = []
        for i, (t, w) in enumerate(zip(self._layer_types(), self._wiring)):
            obj = self._python_layer(i) if t == "Python" else None
            out.append(obj if obj is not None else Layer_(self, i, t, w[2]))
        return out

    @cached_property
    def layer_dict(self):
        return OrderedDict(zip(self._layer_names, self.layers))

    @cached_property
    def params(self):
        """OrderedDict of layer name → list of its parameter Blobs (layers with blobs only)."""
        return OrderedDict(
            (n, [Blob(self, layer=i, j=j) for j in range(w[2])])
            for i, (n, w) in enumerate(zip(self._layer_names, self._wiring))
            if w[2]
        )

    @cached_property
    def inputs(self):
        return list(self._inputs())

    @cached_property
    def outputs(self):
        return list(self._outputs())

    @cached_property
    def top_names(self):
        return OrderedDict((n, list(w[1])) for n, w in zip(self._layer_names, self._wiring))

    @cached_property
    def bottom_names(self):
        return OrderedDict((n, list(w[0])) for n, w in zip(self._layer_names, self._wiring))

    @cached_property
    def blob_loss_weights(self):
        return OrderedDict((n, self._loss_weight(n)) for n in self._blob_names)

    @property
    def phase(self):
        return self._phase

    # pycaffe's index-based accessors (`net._blobs`, `_bottom_ids(i)`, ...)
    @property
    def _blobs(self):
        return list(self.blobs.values())

    @property
    def _blob_loss_weights(self):
        return list(self.blob_loss_weights.values())

    def _bottom_ids(self, i):
        return [self._blob_names.index(b) for b in self._wiring[i][0]]

    def _top_ids(self, i):
        return [self._blob_names.index(t) for t in self._wiring[i][1]]

    def _layer_index(self, name):
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise KeyError("net has no layer named %r" % (name,)) from None

    def _check_blobs(self, names):
        for b in names:
            if b not in self.blobs:
                raise KeyError("net has no blob named %r" % (b,))

    # ----- forward / backward -----
    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Runs the net from layer ``start`` to ``end`` (names; default all),
        after copying ``kwargs`` (input name → array) into the inputs.
        Returns {blob: array} for the outputs (or ``end``'s tops) and ``blobs``."""
        blobs = list(blobs or [])
        self._check_blobs(blobs)
        start_ind = self._layer_index(start) if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.top_names[end] + blobs)
        else:
            end_ind = len(self.layers) - 1
            outputs = set(self.outputs + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise ValueError(
                    "Input blob arguments (%s) do not match net inputs (%s)"
                    % (", ".join(sorted(kwargs)), ", ".join(self.inputs))
                )
            for name, value in kwargs.items():
                value = np.asarray(value)
                if value.shape[:1] != tuple(self.blobs[name].shape[:1]):
                    raise ValueError(
                        "Input is not batch sized: %s has shape %s, the blob %s" % (name, value.shape, self.blobs[name].shape)
                    )
                self.blobs[name].data[...] = value
        if len(self.layers) == 0:
            return {}
        self._forward(start_ind, end_ind)
        return {out: self.blobs[out].data for out in outputs}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Backward from layer ``start`` down to ``end`` (names; default all),
        with ``kwargs`` (output name → array) as the top diffs. Returns
        {blob: diff} for the inputs (or ``end``'s bottoms) and ``diffs``."""
        diffs = list(diffs or [])
        self._check_blobs(diffs)
        start_ind = self._layer_index(start) if start is not None else len(self.layers) - 1
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.bottom_names[end] + diffs)
        else:
            end_ind = 0
            outputs = set(self.inputs + diffs)
        if kwargs:
            tops = self.top_names[start] if start is not None else self.outputs
            if set(kwargs) != set(tops):
                raise ValueError(
                    "Top diff arguments (%s) do not match net outputs (%s)" % (", ".join(sorted(kwargs)), ", ".join(tops))
                )
            for name, value in kwargs.items():
                value = np.asarray(value)
                if value.shape[:1] != tuple(self.blobs[name].shape[:1]):
                    raise ValueError("Diff is not batch sized: %s has shape %s" % (name, value.shape))
                self.blobs[name].diff[...] = value
        if len(self.layers) == 0:
            return {}
        self._backward(start_ind, end_ind)
        return {out: self.blobs[out].diff for out in outputs}

    def _batch(self, arrays):
        """Splits input arrays into the net's batch size, padding the last batch with zeros."""
        n = len(next(iter(arrays.values())))
        bs = self.blobs[next(iter(arrays))].shape[0]
        for i in range(0, n, bs):
            batch = {}
            for name, a in arrays.items():
                chunk = np.asarray(a[i : i + bs])
                if len(chunk) < bs:
                    pad = np.zeros((bs - len(chunk),) + chunk.shape[1:], dtype=chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                batch[name] = chunk
            yield batch

    def forward_all(self, blobs=None, **kwargs):
        """forward over inputs of any length, in batches; returns {blob: all outputs}."""
        outs = {o: [] for o in set(self.outputs + list(blobs or []))}
        if not kwargs:
            raise ValueError("forward_all needs the inputs as keyword arguments")
        n = len(next(iter(kwargs.values())))
        scalars = set()
        for batch in self._batch(kwargs):
            for o, v in self.forward(blobs=blobs, **batch).items():
                if v.ndim == 0:  # a loss or accuracy: one value per batch
                    scalars.add(o)
                    outs[o].append(v.copy())
                else:
                    outs[o].extend(v.copy())
        return {o: np.asarray(v if o in scalars else v[:n]) for o, v in outs.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward and backward over inputs (and output diffs) of any length, in batches."""
        outs = {o: [] for o in set(self.outputs + list(blobs or []))}
        grads = {d: [] for d in set(self.inputs + list(diffs or []))}
        fwd = {k: v for k, v in kwargs.items() if k in self.inputs}
        bwd = {k: v for k, v in kwargs.items() if k in self.outputs}
        if not fwd:
            raise ValueError("forward_backward_all needs the inputs as keyword arguments")
        n = len(next(iter(fwd.values())))
        fb = self._batch(fwd)
        bb = self._batch(bwd) if bwd else iter(lambda: {}, None)
        for fbatch, bbatch in zip(fb, bb):
            for o, v in self.forward(blobs=blobs, **fbatch).items():
                outs[o].extend(v.copy()) if v.ndim else outs[o].append(v.copy())
            for d, v in self.backward(diffs=diffs, **bbatch).items():
                grads[d].extend(v.copy())
        cut = {o: (np.asarray(v[:n]) if np.ndim(v[0]) else np.asarray(v)) for o, v in outs.items()}
        return cut, {d: np.asarray(v[:n]) for d, v in grads.items()}

    def before_forward(self, callback):
        """Calls ``callback(i)`` before layer ``i``'s forward, in every forward."""
        self._add_callback(0, callback)

    def after_forward(self, callback):
        """Calls ``callback(i)`` after layer ``i``'s forward."""
        self._add_callback(1, callback)

    def before_backward(self, callback):
        """Calls ``callback(i)`` before layer ``i``'s backward (from the last
        layer down); backward then runs layer by layer."""
        self._add_callback(2, callback)

    def after_backward(self, callback):
        """Calls ``callback(i)`` after layer ``i``'s backward. ``caffe.NCCL``
        (Caffe's layer-wise gradient reduction) adds nothing here: the solver of
        a group already averages its gradients after backward."""
        if isinstance(callback, _caffe.NCCL):
            return
        self._add_callback(3, callback)

    def set_input_arrays(self, data, labels):
        """Feeds the net's MemoryData layer (data N×C×H×W, N labels: C-contiguous
        float32 arrays, read in place as Caffe reads them)."""
        if not isinstance(data, np.ndarray) or not isinstance(labels, np.ndarray):
            raise ValueError("set_input_arrays needs numpy arrays")
        if data.dtype != np.float32 or labels.dtype != np.float32:
            raise ValueError("set_input_arrays needs float32 arrays (data %s, labels %s)" % (data.dtype, labels.dtype))
        return super().set_input_arrays(data, labels)

    def __repr__(self):
        return "<caffe.Net %s: %d layers, %d blobs>" % (self._name, len(self._layer_names), len(self._blob_names))


class _Solver(_caffe.Solver):
    _solver_type = None

    def __new__(cls, filename, *args, **kwargs):
        return super().__new__(cls, os.fsdecode(os.fspath(filename)), cls._solver_type)

    @classmethod
    def _from_text(cls, text):
        return _caffe.Solver.__new__(cls, "", cls._solver_type, text)

    def __init__(self, *args, **kwargs):
        pass

    @cached_property
    def net(self):
        return Net(solver=self, index=0)

    @cached_property
    def test_nets(self):
        return [Net(solver=self, index=i) for i in range(1, self._net_count())]

    @property
    def type(self):
        return self._type

    def add_callback(self, on_start, on_gradients=None):
        """Calls ``on_start()`` at the start of every training iteration (after
        the test pass when one is due) and ``on_gradients()`` once its gradients
        are computed, before the update, as Caffe's solver callbacks are. One
        object with ``on_start`` and ``on_gradients`` methods also works. The
        callbacks may read and change the nets' blobs and params."""
        if on_gradients is None and isinstance(on_start, _caffe.NCCL):
            return  # the solver's own step averages the gradients over the group
        if on_gradients is None:
            on_start, on_gradients = on_start.on_start, on_start.on_gradients
        if not (callable(on_start) and callable(on_gradients)):
            raise TypeError("add_callback takes two callables (on_start, on_gradients)")
        self.__dict__.setdefault("_callbacks", []).append((on_start, on_gradients))

    def share_weights(self, net):
        """Makes ``net`` use this solver's train net weights (the same memory), by layer name."""
        net.share_with(self.net)

    def step(self, iters):
        callbacks = self.__dict__.get("_callbacks")
        if not callbacks:
            return super().step(iters)
        self._step_begin(iters)
        try:
            while self._step_next():
                for on_start, _ in callbacks:
                    on_start()
                self._step_gradients()
                for _, on_gradients in callbacks:
                    on_gradients()
                self._step_update()
        finally:
            self._step_end()

    def solve(self, resume=None):
        if not self.__dict__.get("_callbacks"):
            return super().solve(resume)
        if resume is not None:
            self.restore(os.fsdecode(os.fspath(resume)))
        start, remaining = self._solve_begin()
        self.step(remaining)
        self._solve_end(start)

    @property
    def param(self):
        """The solver's parameters, a ``caffe_pb2.SolverParameter`` (a copy:
        setting its fields does not change the solver)."""
        from google.protobuf import text_format

        from .proto import caffe_pb2

        return text_format.Parse(self._param_text(), caffe_pb2.SolverParameter())


def _solver_class(name, type_):
    return type(name, (_Solver,), {"_solver_type": type_, "__doc__": "Caffe's %s solver (caffe-tch)." % type_})


SGDSolver = _solver_class("SGDSolver", "SGD")
NesterovSolver = _solver_class("NesterovSolver", "Nesterov")
AdaGradSolver = _solver_class("AdaGradSolver", "AdaGrad")
RMSPropSolver = _solver_class("RMSPropSolver", "RMSProp")
AdaDeltaSolver = _solver_class("AdaDeltaSolver", "AdaDelta")
AdamSolver = _solver_class("AdamSolver", "Adam")
_BY_TYPE = {c._solver_type: c for c in (SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver, AdaDeltaSolver, AdamSolver)}


def has_nccl():
    """True: data-parallel solvers (caffe.NCCL) work here, over NCCL on GPUs
    and over Gloo on the CPU."""
    return True


def get_solver_from_string(proto):
    """The solver that solver prototxt text describes (its ``type``, SGD by
    default); relative net paths are taken from the working directory."""
    t = _caffe.solver_type_of_text(proto)
    if t not in _BY_TYPE:
        raise ValueError("solver string: unknown solver type %r (known: %s)" % (t, ", ".join(_BY_TYPE)))
    return _BY_TYPE[t]._from_text(proto)


class Timer:
    """pycaffe's ``caffe.Timer``: ``start()``, ``stop()``, and ``ms``, the
    milliseconds between them (reading ``ms`` while running stops it first)."""

    def __init__(self):
        self._start = None
        self._elapsed = 0.0
        self._running = False

    def start(self):
        self._start = time.perf_counter()
        self._running = True

    def stop(self):
        if self._running:
            self._elapsed = time.perf_counter() - self._start
            self._running = False

    @property
    def ms(self):
        if self._start is None:
            return 0.0
        self.stop()
        return self._elapsed * 1000.0


_LOG_LEVEL = [0]


def init_log(level=0, use_stderr=False):
    """pycaffe's ``caffe.init_log``: messages of ``level`` and above
    (0 INFO, 1 WARNING, 2 ERROR) are written by ``caffe.log``; caffe-tch writes
    its log to stderr, so ``use_stderr`` changes nothing."""
    _LOG_LEVEL[0] = int(level)


def log(message):
    """pycaffe's ``caffe.log``: one INFO line, in the format and on the
    stream of the rest of caffe-tch's log."""
    if _LOG_LEVEL[0] <= 0:
        _caffe.log_info(str(message))


def get_solver(filename):
    """The solver the file's ``type`` names (SGD by default)."""
    filename = os.fsdecode(os.fspath(filename))
    t = _caffe.solver_type(filename)
    if t not in _BY_TYPE:
        raise ValueError("%s: unknown solver type %r (known: %s)" % (filename, t, ", ".join(_BY_TYPE)))
    return _BY_TYPE[t](filename)
