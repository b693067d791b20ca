"""caffe.draw and draw_net.py: the graph's nodes, edges and labels for Caffe's
LeNet in each phase, a real rendering by Graphviz, V1 files upgraded first."""
import io
import shutil

import pytest
from google.protobuf import text_format

import caffe
from conftest import FIX, ROOT, need

LENET = FIX / "lenet" / "sgd20" / "lenet_train_test.prototxt"


def prerequisites():
    try:
        import pydot  # noqa: F401
    except ImportError:
        need(False, "pydot (pip install pydot; make builds the venv with it)")
    need(shutil.which("dot") is not None, "Graphviz's dot (apt-get install graphviz; make system-deps)")
    import caffe.draw

    return caffe.draw


def lenet():
    return text_format.Parse(LENET.read_text(), caffe.proto.caffe_pb2.NetParameter())


def graph_parts(graph):
    """{node name: label}, [(src, dst, label)] of a pydot graph, unquoted."""
    unq = lambda s: s.strip('"') if isinstance(s, str) else s
    nodes = {unq(n.get_name()): unq(n.get("label")) for n in graph.get_nodes()}
    edges = [(unq(e.get_source()), unq(e.get_destination()), unq(e.get("label"))) for e in graph.get_edges()]
    return nodes, edges


def test_lenet_graph_in_each_phase():
    draw = prerequisites()
    net = lenet()
    nodes, edges = graph_parts(draw.get_pydot_graph(net, "TB", phase=caffe.TEST))
    layers = {k: v for k, v in nodes.items() if not k.endswith("_blob")}
    blobs = {k: v for k, v in nodes.items() if k.endswith("_blob")}
    # The TEST net: its own Data layer and Accuracy, not the TRAIN Data layer.
    assert sorted(v.split(" ")[0] for v in layers.values()) == sorted(
        ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy", "loss"]
    )
    assert sorted(blobs.values()) == sorted(["data", "label", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "accuracy", "loss"])
    conv1 = next(v for v in layers.values() if v.startswith("conv1"))
    assert conv1 == "conv1 (Convolution) kernel size: 5 stride: 1 pad: 0"
    assert next(v for v in layers.values() if v.startswith("pool1")) == "pool1 (Pooling MAX) kernel size: 2 stride: 2 pad: 0"
    out_labels = {(s.rsplit("_", 2)[0], d[: -len("_blob")]): l for s, d, l in edges if d.endswith("_blob")}
    assert out_labels[("conv1", "conv1")] == "20" and out_labels[("ip1", "ip1")] == "500"
    assert out_labels[("mnist", "data")] == "Batch 100" and out_labels[("relu1", "ip1")] == ""
    # Every bottom and top is an edge: 9 + 11 in the TEST net.
    assert len(edges) == sum(len(l.bottom) + len(l.top) for l in net.layer if l.name != "mnist" or l.include[0].phase == caffe.TEST)
    train_nodes, _ = graph_parts(draw.get_pydot_graph(net, "LR", phase=caffe.TRAIN, display_lrm=True))
    labels = list(train_nodes.values())
    assert not any(l.startswith("accuracy") for l in labels)
    assert "conv1\\n(Convolution)\\nkernel size: 5\\nstride: 1\\npad: 0\\nlr mult: 1, 2" in labels
    all_nodes, _ = graph_parts(draw.get_pydot_graph(net, "LR"))
    assert sum(1 for l in all_nodes.values() if l.startswith("mnist")) == 2  # both Data layers


def test_rendered_by_graphviz(tmp_path):
    draw = prerequisites()
    png = draw.draw_net(lenet(), "TB", "png", caffe.TEST)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    w, h = Image.open(io.BytesIO(png)).size
    assert h > w > 100  # top to bottom: a tall picture
    out = tmp_path / "lenet.svg"
    draw.draw_net_to_file(lenet(), str(out), "LR", caffe.TRAIN)
    svg = out.read_text()
    assert "<svg" in svg and "conv2" in svg and "Batch 64" in svg
    assert [p.name for p in tmp_path.iterdir()] == ["lenet.svg"]  # no temporary left


def test_draw_net_script_reads_v1_files(tmp_path, capsys):
    draw = prerequisites()
    v1 = ROOT / "tests" / "fixtures" / "bvlc" / "examples" / "siamese" / "mnist_siamese_train_test.prototxt"
    assert "layers {" in v1.read_text()
    out = tmp_path / "siamese.png"
    draw.main([str(v1), str(out), "--phase", "TRAIN"])
    assert out.read_bytes()[:4] == b"\x89PNG" and "Drawing net to" in capsys.readouterr().out
    net = draw.read_net(v1)
    assert len(net.layer) > 0 and len(net.layers) == 0
    with pytest.raises(ValueError, match="V1 'layers'"):
        draw.get_pydot_graph(text_format.Parse(v1.read_text(), caffe.proto.caffe_pb2.NetParameter()), "LR")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer { name: "a" type: "ReLU" bottom: "x" top: "x" oops: 1 }\n')
    with pytest.raises(ValueError, match=r"bad\.prototxt:2"):
        draw.read_net(bad)
    both = lenet()
    both.layer[0].exclude.add().phase = caffe.TEST
    with pytest.raises(ValueError, match="both include and exclude"):
        draw.get_pydot_graph(both, "LR", phase=caffe.TRAIN)
