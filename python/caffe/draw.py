"""Nets drawn as graphs (pycaffe's ``caffe.draw``): each layer a box, each blob
an octagon, arrows from bottoms to layers to tops, rendered by Graphviz.

Needs ``pydot`` (``pip install pydot``) and Graphviz's ``dot`` program
(``apt-get install graphviz``); both are looked for only when a graph is made.
``python -m caffe.draw net.prototxt net.png`` (or ``python/draw_net.py``) draws
a prototxt file; V0 and V1 nets are upgraded first, as caffe-tch reads them.
"""
import argparse
import os

from .proto import caffe_pb2

# Colours by layer type; the rest of the layers share the default.
LAYER_COLORS = {
    "Convolution": "#FF5050",
    "Deconvolution": "#FF5050",
    "Pooling": "#FF9900",
    "InnerProduct": "#CC33FF",
}
DEFAULT_LAYER_COLOR = "#6495ED"
LAYER_STYLE = {"shape": "record", "style": "filled"}
# An in-place layer (one bottom that is also its top: ReLU, Dropout, ...).
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}


def _pydot():
    try:
        import pydot
    except ImportError as e:
        raise ImportError("caffe.draw needs pydot: pip install pydot (and Graphviz: apt-get install graphviz)") from e
    return pydot


def get_pooling_types_dict():
    """{PoolingParameter.PoolMethod value: its name}, e.g. {0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC'}."""
    methods = caffe_pb2.PoolingParameter.PoolMethod
    return {value: name for name, value in methods.items()}


def get_edge_label(layer):
    """What the arrows out of a layer say: a Data layer's batch size, a
    Convolution's, Deconvolution's or InnerProduct's output count, else nothing."""
    if layer.type == "Data":
        return "Batch %d" % layer.data_param.batch_size
    if layer.type in ("Convolution", "Deconvolution"):
        return "%d" % layer.convolution_param.num_output
    if layer.type == "InnerProduct":
        return "%d" % layer.inner_product_param.num_output
    return '""'


def get_layer_lr_mult(layer):
    """The lr_mult of each of the layer's params (1 where unset), for the
    layers that have weights; None for the others."""
    if layer.type not in ("Convolution", "Deconvolution", "InnerProduct", "Scale", "BatchNorm", "PReLU", "Embed"):
        return None
    if layer.type == "BatchNorm":
        return [0.0, 0.0, 0.0]  # statistics, not learned
    counts = {"Scale": 2 if layer.scale_param.bias_term else 1, "PReLU": 1, "Embed": 2}
    if layer.type in ("Convolution", "Deconvolution"):
        count = 2 if layer.convolution_param.bias_term else 1
    elif layer.type == "InnerProduct":
        count = 2 if layer.inner_product_param.bias_term else 1
    else:
        count = counts[layer.type]
    return [layer.param[i].lr_mult if i < len(layer.param) else 1.0 for i in range(count)]


def _window(kernel, kernel_h, kernel_w, stride, pad):
    """'kernel size: 5, stride: 1, pad: 0' style lines for a conv or pool window."""
    if kernel_h or kernel_w:
        size = "%dx%d" % (kernel_h, kernel_w)
    else:
        size = "x".join(str(k) for k in kernel) if kernel else "?"
    return ["kernel size: %s" % size, "stride: %s" % stride, "pad: %s" % pad]


def _repeated(values, default):
    return "x".join(str(v) for v in values) if len(values) else str(default)


def get_layer_label(layer, rankdir, display_lrm=False):
    """The text in a layer's box: its name, its type, and for convolution and
    pooling their window (and lr_mult with ``display_lrm``). Lines are
    stacked for a left-to-right graph and run on one line for top-to-bottom."""
    lines = ["%s" % layer.name]
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        lines.append("(%s)" % layer.type)
        lines += _window(list(p.kernel_size), p.kernel_h, p.kernel_w,
                         _repeated(p.stride, 1) if not (p.stride_h or p.stride_w) else "%dx%d" % (p.stride_h, p.stride_w),
                         _repeated(p.pad, 0) if not (p.pad_h or p.pad_w) else "%dx%d" % (p.pad_h, p.pad_w))
    elif layer.type == "Pooling":
        p = layer.pooling_param
        lines.append("(Pooling %s)" % get_pooling_types_dict()[p.pool])
        if p.global_pooling:
            lines.append("global")
        else:
            lines += _window([p.kernel_size] if p.kernel_size else [], p.kernel_h, p.kernel_w,
                             "%d" % p.stride if not (p.stride_h or p.stride_w) else "%dx%d" % (p.stride_h, p.stride_w),
                             "%d" % p.pad if not (p.pad_h or p.pad_w) else "%dx%d" % (p.pad_h, p.pad_w))
    else:
        lines.append("(%s)" % layer.type)
    if display_lrm:
        mults = get_layer_lr_mult(layer)
        if mults is not None:
            lines.append("lr mult: %s" % ", ".join("%g" % m for m in mults))
    separator = " " if rankdir in ("TB", "BT") else "\\n"
    return separator.join(lines)


def choose_color_by_layertype(layertype):
    return LAYER_COLORS.get(layertype, DEFAULT_LAYER_COLOR)


def _in_phase(layer, phase):
    """Whether a layer is in a net of `phase`. Only the rules' phases are
    looked at: a graph has no stage or level to meet."""
    if phase is None:
        return True
    if len(layer.include) and len(layer.exclude):
        raise ValueError("layer '%s' has both include and exclude rules; Caffe takes one or the other" % layer.name)
    def meets(rule):
        return not rule.HasField("phase") or rule.phase == phase
    if len(layer.include):
        return any(meets(r) for r in layer.include)
    return not any(meets(r) and r.HasField("phase") for r in layer.exclude)


def _quoted(text):
    return '"%s"' % text.replace('"', '\\"')


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """The net (a ``caffe_pb2.NetParameter``) as a ``pydot.Dot`` graph; with
    `phase` (``caffe.TRAIN``/``caffe.TEST``) only the layers of that phase."""
    pydot = _pydot()
    if len(caffe_net.layers) and not len(caffe_net.layer):
        raise ValueError("this net uses V1 'layers'; upgrade it first (python -m caffe.draw reads V0/V1 files)")
    graph = pydot.Dot(_quoted(caffe_net.name or "Net"), graph_type="digraph", rankdir=rankdir)
    blobs = {}  # blob name -> its node's name, in order of first use
    nodes, edges = [], []

    def blob_node(name):
        if name not in blobs:
            blobs[name] = _quoted("%s_blob" % name)
            nodes.append(pydot.Node(blobs[name], label=_quoted(name), **BLOB_STYLE))
        return blobs[name]

    for i, layer in enumerate(caffe_net.layer):
        if not _in_phase(layer, phase):
            continue
        node = _quoted("%s_%s_%d" % (layer.name, layer.type, i))
        in_place = len(layer.bottom) == 1 and list(layer.bottom) == list(layer.top)
        style = dict(NEURON_LAYER_STYLE) if in_place else dict(LAYER_STYLE, fillcolor=choose_color_by_layertype(layer.type))
        nodes.append(pydot.Node(node, label=_quoted(get_layer_label(layer, rankdir, display_lrm)), **style))
        for bottom in layer.bottom:
            edges.append(pydot.Edge(blob_node(bottom), node, label='""'))
        for top in layer.top:
            edges.append(pydot.Edge(node, blob_node(top), label=get_edge_label(layer) if label_edges else '""'))
    for n in nodes:
        graph.add_node(n)
    for e in edges:
        graph.add_edge(e)
    return graph


def draw_net(caffe_net, rankdir, ext="png", phase=None, display_lrm=False):
    """The net drawn by Graphviz, as the bytes of an `ext` file (png, svg, pdf, dot, ...)."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    try:
        return graph.create(format=ext)
    except FileNotFoundError as e:
        raise RuntimeError("Graphviz's dot was not found: apt-get install graphviz (%s)" % e) from e


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False):
    """Draws the net into `filename`, in the format its extension names (png by default)."""
    ext = os.path.splitext(filename)[1][1:] or "png"
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    tmp = "%s.tmp%d" % (filename, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, filename)


def read_net(path):
    """A net prototxt file as a ``caffe_pb2.NetParameter``, upgraded from V0/V1 as caffe-tch reads it."""
    from google.protobuf import text_format

    from . import _caffe

    with open(path, encoding="utf-8") as f:
        text = _caffe.upgrade_net_text(f.read(), os.fsdecode(path))
    return text_format.Parse(text, caffe_pb2.NetParameter())


def main(argv=None):
    """``python -m caffe.draw`` (Caffe's draw_net.py): draws a net prototxt file."""
    parser = argparse.ArgumentParser(description="Draw a network graph from a net prototxt file")
    parser.add_argument("input_net_proto_file", help="the net prototxt")
    parser.add_argument("output_image_file", help="the image to write (its extension picks the format)")
    parser.add_argument("--rankdir", default="LR", help="direction of the graph: LR, RL, TB or BT (default LR)")
    parser.add_argument("--phase", default="ALL", choices=("ALL", "TRAIN", "TEST"),
                        help="draw the layers of this phase only (default ALL)")
    parser.add_argument("--display_lrm", action="store_true", help="show each layer's lr_mult")
    args = parser.parse_args(argv)
    phase = {"ALL": None, "TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}[args.phase]
    net = read_net(args.input_net_proto_file)
    print("Drawing net to %s" % args.output_image_file)
    draw_net_to_file(net, args.output_image_file, args.rankdir, phase, args.display_lrm)


if __name__ == "__main__":
    main()
