"""caffe.proto.caffe_pb2: caffe-tch's schema as protoc-style Python classes,
reading and writing BVLC Caffe's own files."""
import json

import numpy as np
import pytest
from google.protobuf import text_format

import pure_helpers as h
from caffe.proto import caffe_pb2


def test_module_exposes_messages_and_enums_as_protoc_does():
    assert caffe_pb2.TRAIN == 0 and caffe_pb2.TEST == 1
    assert caffe_pb2.Phase.Name(1) == 'TEST'
    assert (caffe_pb2.PoolingParameter.MAX, caffe_pb2.PoolingParameter.AVE,
            caffe_pb2.PoolingParameter.STOCHASTIC) == (0, 1, 2)
    assert caffe_pb2.PoolingParameter.PoolMethod.Value('AVE') == 1
    assert caffe_pb2.EltwiseParameter.SUM == 1
    assert caffe_pb2.FillerParameter().type == 'constant'
    for name in ('NetParameter', 'LayerParameter', 'Datum', 'BlobProto', 'BlobProtoVector', 'BlobShape',
                 'SolverParameter', 'SolverState', 'NetState', 'NetStateRule', 'ParamSpec',
                 'V1LayerParameter', 'V0LayerParameter', 'DropInParameter', 'ResizeParameter'):
        cls = getattr(caffe_pb2, name)
        assert cls.DESCRIPTOR.full_name == 'caffe.' + name
        assert cls.__module__ == 'caffe.proto.caffe_pb2'
    assert caffe_pb2.DESCRIPTOR.name == 'caffe.proto'
    assert caffe_pb2.DESCRIPTOR.package == 'caffe'
    # BVLC's 63 messages, DropIn's and Resize's, the SSD fork's 9, ShuffleNet's, Fast R-CNN's,
    # DeepLab's Interp, the Upsample of YOLOv3's and SegNet's forks, SegNet's and PSPNet's BN,
    # Faster R-CNN's Proposal and SmoothL1Loss, R-FCN's PSROIPooling, and the SNN fork's
    # SeLu and SeLuDropout.
    assert len(caffe_pb2.DESCRIPTOR.message_types_by_name) == 104


def test_caffe_tch_extensions_have_their_field_numbers():
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert fields['dropin_param'].number == 150
    assert fields['dropin_param'].message_type.name == 'DropInParameter'
    assert fields['resize_param'].number == 151
    # Forks' parameters under numbers of our own where BVLC used theirs.
    assert (fields['interp_param'].number, fields['upsample_param'].number) == (2143, 149)
    assert (fields['bn_param'].number, fields['proposal_param'].number) == (45, 2201)
    solver = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    assert (solver['max_lr'].number, solver['cyclical_momentum'].number) == (100, 101)
    # BVLC's own numbers are unchanged.
    assert fields['convolution_param'].number == 106 and fields['python_param'].number == 130
    assert caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name['layer'].number == 100
    # The SSD fork's, at its numbers.
    assert [fields[f].number for f in ('permute_param', 'prior_box_param', 'detection_output_param',
                                       'norm_param')] == [202, 203, 204, 206]
    assert [fields[f].number for f in ('annotated_data_param', 'multibox_loss_param',
                                       'detection_evaluate_param')] == [200, 201, 205]
    # Its solver fields, whose numbers BVLC gave to others, at ours.
    assert [solver[f].number for f in ('eval_type', 'ap_version', 'show_per_class_result')] == [2041, 2042, 2044]
    transform = caffe_pb2.TransformationParameter.DESCRIPTOR.fields_by_name
    assert [transform[f].number for f in ('resize_param', 'distort_param', 'expand_param')] == [8, 13, 14]
    assert caffe_pb2.MultiBoxLossParameter.MAX_NEGATIVE == 1
    assert fields['yolov3_detection_output_param'].number == 602  # MobileNet-YOLO's
    assert caffe_pb2.PriorBoxParameter.CENTER_SIZE == 2
    assert (fields['shuffle_channel_param'].number, fields['roi_pooling_param'].number) == (164, 8266711)


def test_ssd_label_map_reads_as_its_detection_scripts_read_it():
    from google.protobuf import text_format
    labelmap = caffe_pb2.LabelMap()
    text_format.Merge('item { name: "none_of_the_above" label: 0 display_name: "background" }\n'
                      'item { name: "aeroplane" label: 1 display_name: "aeroplane" }', labelmap)
    assert [(i.label, i.display_name) for i in labelmap.item] == [(0, 'background'), (1, 'aeroplane')]


def test_parses_bvlc_lenet_caffemodel():
    with open(h.caffe_ref('fixtures', 'lenet', 'weights.caffemodel'), 'rb') as f:
        raw = f.read()
    net = caffe_pb2.NetParameter()
    net.ParseFromString(raw)
    with open(h.caffe_ref('fixtures', 'lenet', 'manifest.json')) as f:
        manifest = json.load(f)
    with_blobs = [(l.name, [tuple(b.shape.dim) for b in l.blobs]) for l in net.layer if len(l.blobs)]
    assert with_blobs == [('conv1', [(20, 1, 5, 5), (20,)]), ('conv2', [(50, 20, 5, 5), (50,)]),
                          ('ip1', [(500, 800), (500,)]), ('ip2', [(10, 500), (10,)])]
    expected = [(p['layer'], [tuple(s) for s in p['shapes']]) for p in manifest['params']]
    assert with_blobs == expected
    assert sum(len(b.data) for l in net.layer for b in l.blobs) == manifest['param_count'] == 431080
    conv1 = next(l for l in net.layer if l.name == 'conv1')
    assert conv1.type == 'Convolution' and conv1.convolution_param.num_output == 20
    w = np.array(conv1.blobs[0].data, dtype=np.float32).reshape(20, 1, 5, 5)
    np.testing.assert_array_equal(w, np.load(h.caffe_ref('fixtures', 'lenet', 'params', 'conv1_0.npy')))
    # Serializing what was parsed gives Caffe's bytes back.
    assert net.SerializeToString() == raw


def test_text_format_reads_a_bvlc_prototxt():
    with open(h.caffe_ref('fixtures', 'lenet', 'net.prototxt')) as f:
        net = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    assert net.name == 'LeNet'
    types = [l.type for l in net.layer]
    assert types == ['Input', 'Input', 'Convolution', 'Pooling', 'Convolution', 'Pooling', 'InnerProduct',
                     'ReLU', 'InnerProduct', 'Accuracy', 'SoftmaxWithLoss']
    # The two Input layers are the TRAIN (batch 64) and TEST (batch 100) ones.
    assert [l.include[0].phase for l in net.layer[:2]] == [caffe_pb2.TRAIN, caffe_pb2.TEST]
    assert list(net.layer[1].input_param.shape[0].dim) == [100, 1, 28, 28]
    pool1 = net.layer[3]
    assert pool1.pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    assert (pool1.pooling_param.kernel_size, pool1.pooling_param.stride) == (2, 2)


def test_solver_and_dropin_messages_round_trip():
    s = caffe_pb2.SolverParameter(base_lr=0.01, lr_policy='triangular', max_lr=0.1, type='Nesterov')
    s.test_iter.append(100)
    again = caffe_pb2.SolverParameter.FromString(s.SerializeToString())
    assert again.max_lr == pytest.approx(0.1) and list(again.test_iter) == [100] and again.type == 'Nesterov'
    layer = caffe_pb2.LayerParameter(name='d', type='DropIn')
    layer.dropin_param.SetInParent()
    text = text_format.MessageToString(layer)
    assert 'dropin_param {\n}' in text


def test_cpp_message_accessors_are_the_generators_output():
    """cpp/include/caffe/proto/messages.hpp (protobuf's read accessors for
    the C++ interface) is cpp/gen_messages.py's output over the schema
    (`make cpp-messages` writes it again)."""
    import importlib.util
    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("gen_messages", ROOT / "cpp" / "gen_messages.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.OUT.read_text() == gen.main(), "run make cpp-messages"
