"""Where a blob's pixels sit in another blob's coordinates (pycaffe's
``caffe.coord_map``), for nets written with ``caffe.NetSpec``: FCN-style nets
use ``crop(upscored, data)`` to cut an upsampled score map back onto the input
grid with the right offset.

Each spatial layer maps its bottom's coordinates to its top's by an affine map
per spatial axis, ``top = scale * bottom + shift``, taken at the centre of the
layer's window: a convolution or pooling window of size k (dilated: (k - 1)·d
+ 1), stride s and pad p has ``scale = 1/s``, ``shift = (p - (k - 1)/2)/s``; a
deconvolution the inverse; a Crop ``shift = -offset``; element-wise layers the
identity. Maps are composed along the graph up to the blobs' common ancestor.
"""
import numpy as np

from .net_spec import layers as L

# Layers whose top pixels are their bottom pixels (element-wise or per-channel).
PASS_THROUGH_LAYERS = frozenset(
    [
        "AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Dropout", "DropIn", "Eltwise", "ELU", "Exp", "Log",
        "LRN", "MVN", "Power", "PReLU", "ReLU", "Scale", "Sigmoid", "Split", "Swish", "TanH", "Threshold",
    ]
)


class UndefinedMapException(Exception):
    """A layer whose output has no pixel-to-pixel relation to its input (InnerProduct, ...)."""


class AxisMismatchException(Exception):
    """Two maps over different axes composed (e.g. a Crop at another axis)."""


def _as_array(value, default):
    return np.array(default if value is None else value, ndmin=1, dtype=np.float64)


def conv_params(fn):
    """(axis, stride, effective kernel size, pad) of a Convolution, Deconvolution,
    Pooling or Im2col Function, as numpy arrays over its spatial axes; the
    parameters may be keyword arguments or a convolution_param/pooling_param dict."""
    params = dict(fn.params)
    params.update(params.pop("convolution_param", {}) or {})
    params.update(params.pop("pooling_param", {}) or {})
    split = {"kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w"} & set(params)
    if split:
        raise AssertionError("coord_map takes kernel_size/stride/pad, not %s (layer type %s)"
                             % (", ".join(sorted(split)), fn.type_name))
    if params.get("global_pooling"):
        raise UndefinedMapException("global pooling has no pixel map")
    if "kernel_size" not in params:
        raise AssertionError("a %s needs kernel_size for coord_map" % fn.type_name)
    kernel = _as_array(params["kernel_size"], 1)
    dilation = _as_array(params.get("dilation"), 1)
    return (params.get("axis", 1), _as_array(params.get("stride"), 1), (kernel - 1) * dilation + 1,
            _as_array(params.get("pad"), 0))


def crop_params(fn):
    """(axis, offset) of a Crop Function (Caffe's defaults: axis 2, offset 0)."""
    params = dict(fn.params)
    params.update(params.pop("crop_param", {}) or {})
    return params.get("axis", 2), _as_array(params.get("offset"), 0)


def coord_map(fn):
    """(axis, scale, shift) taking the coordinates of `fn`'s bottom to its top's.
    The axis is the one before the first spatial axis; None where the map holds
    for any axis (element-wise layers)."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, kernel, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (kernel - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, kernel, pad = conv_params(fn)
        return axis, stride, (kernel - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return None, np.ones(1), np.zeros(1)
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, np.ones(1), -offset
    raise UndefinedMapException("no coordinate map through a %s layer" % fn.type_name)


def compose(outer, inner):
    """The map that applies `inner`, then `outer`."""
    ax_outer, scale_outer, shift_outer = outer
    ax_inner, scale_inner, shift_inner = inner
    if ax_outer is None:
        axis = ax_inner
    elif ax_inner is None or ax_inner == ax_outer:
        axis = ax_outer
    else:
        raise AxisMismatchException("cannot compose maps over axes %s and %s" % (ax_outer, ax_inner))
    return axis, scale_outer * scale_inner, scale_outer * shift_inner + shift_outer


def inverse(m):
    axis, scale, shift = m
    return axis, 1 / scale, -shift / scale


def _bottoms(top):
    # A Crop's second bottom only gives the output its shape: its pixels come from the first.
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _maps_to(start):
    """{ancestor Top: the map from its coordinates to `start`'s}, walking up
    through every layer that has a map, nearest first."""
    maps = {start: (None, np.ones(1), np.zeros(1))}
    order = [start]
    for top in order:
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _bottoms(top):
            if bottom not in maps:
                maps[bottom] = compose(maps[top], step)
                order.append(bottom)
    return maps, order


def coord_map_from_to(top_from, top_to):
    """(axis, scale, shift) taking `top_from`'s coordinates to `top_to`'s,
    through the nearest blob both come from."""
    from_maps, _ = _maps_to(top_from)
    to_maps, order = _maps_to(top_to)
    for common in order:
        if common in from_maps:
            return compose(to_maps[common], inverse(from_maps[common]))
    raise RuntimeError("no coordinate map between these tops: they share no ancestor through spatial layers")


def crop(top_from, top_to):
    """A Crop layer that cuts `top_from` to `top_to`'s spatial size, aligned
    pixel for pixel (the offset from the nets' geometry)."""
    axis, scale, shift = coord_map_from_to(top_from, top_to)
    if axis is None:
        axis = 1  # only element-wise layers between them: the spatial axes follow the channels
    if not np.allclose(scale, 1):
        raise AssertionError("scale mismatch on crop (scale = %s): the blobs are not on one grid" % scale)
    if (shift > 0).any():
        raise AssertionError("cannot crop a negative offset (shift = %s): top_from is smaller than top_to" % shift)
    if not np.allclose(np.round(shift), shift):
        raise AssertionError("cannot crop a fractional offset (shift = %s)" % shift)
    offset = [int(v) for v in -np.round(shift)]
    return L.Crop(top_from, top_to, crop_param=dict(axis=axis + 1, offset=offset))
