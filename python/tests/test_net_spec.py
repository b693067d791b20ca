"""caffe.NetSpec, caffe.layers, caffe.params, caffe.to_proto: pycaffe's
naming and parameter rules, and prototxt that caffe-tch's `caffe` runs."""
import math
import os
import subprocess

import numpy as np
import pytest
from google.protobuf import text_format

import pure_helpers as h
from caffe import layers as L, params as P
from caffe.net_spec import NetSpec, to_proto
from caffe.proto import caffe_pb2


def lenet(batch_size):
    # BVLC's python/caffe/test/test_net_spec.py LeNet, with DummyData inputs.
    n = NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[batch_size, 1, 28, 28]), dict(dim=[batch_size, 1, 1, 1])],
                                  transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


def anon_lenet(batch_size):
    data, label = L.DummyData(shape=[dict(dim=[batch_size, 1, 28, 28]), dict(dim=[batch_size, 1, 1, 1])],
                              transform_param=dict(scale=1. / 255), ntop=2)
    conv1 = L.Convolution(data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    pool1 = L.Pooling(conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    conv2 = L.Convolution(pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    pool2 = L.Pooling(conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    ip1 = L.InnerProduct(pool2, num_output=500, weight_filler=dict(type='xavier'))
    relu1 = L.ReLU(ip1, in_place=True)
    ip2 = L.InnerProduct(relu1, num_output=10, weight_filler=dict(type='xavier'))
    loss = L.SoftmaxWithLoss(ip2, label)
    return loss.to_proto()


def _graph(net):
    return [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer]


def test_lenet_names_tops_and_params():
    net = lenet(50)
    assert _graph(net) == [
        ('data', 'DummyData', [], ['data', 'label']),
        ('conv1', 'Convolution', ['data'], ['conv1']),
        ('pool1', 'Pooling', ['conv1'], ['pool1']),
        ('conv2', 'Convolution', ['pool1'], ['conv2']),
        ('pool2', 'Pooling', ['conv2'], ['pool2']),
        ('ip1', 'InnerProduct', ['pool2'], ['ip1']),
        ('relu1', 'ReLU', ['ip1'], ['ip1']),  # in place: top is the bottom, name is the assigned one
        ('ip2', 'InnerProduct', ['ip1'], ['ip2']),
        ('loss', 'SoftmaxWithLoss', ['ip2', 'label'], ['loss']),
    ]
    conv1 = net.layer[1]
    assert list(conv1.convolution_param.kernel_size) == [5]  # a repeated field given one value
    assert conv1.convolution_param.num_output == 20
    assert conv1.convolution_param.weight_filler.type == 'xavier'
    assert net.layer[2].pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    assert net.layer[0].transform_param.scale == pytest.approx(1 / 255)
    assert [list(s.dim) for s in net.layer[0].dummy_data_param.shape] == [[50, 1, 28, 28], [50, 1, 1, 1]]
    assert str(net.layer[2]) == ('name: "pool1"\ntype: "Pooling"\nbottom: "conv1"\ntop: "pool1"\n'
                                 'pooling_param {\n  pool: MAX\n  kernel_size: 2\n  stride: 2\n}\n')


def test_anonymous_lenet_is_named_by_type_and_count():
    assert _graph(anon_lenet(50)) == [
        ('DummyData1', 'DummyData', [], ['DummyData1', 'DummyData2']),
        ('Convolution1', 'Convolution', ['DummyData1'], ['Convolution1']),
        ('Pooling1', 'Pooling', ['Convolution1'], ['Pooling1']),
        ('Convolution2', 'Convolution', ['Pooling1'], ['Convolution2']),
        ('Pooling2', 'Pooling', ['Convolution2'], ['Pooling2']),
        ('InnerProduct1', 'InnerProduct', ['Pooling2'], ['InnerProduct1']),
        ('ReLU1', 'ReLU', ['InnerProduct1'], ['InnerProduct1']),
        ('InnerProduct2', 'InnerProduct', ['InnerProduct1'], ['InnerProduct2']),
        ('SoftmaxWithLoss1', 'SoftmaxWithLoss', ['InnerProduct2', 'DummyData2'], ['SoftmaxWithLoss1']),
    ]


def test_topless_layers_and_type_errors():
    n = NetSpec()
    n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
    n.silence_data = L.Silence(n.data, ntop=0)
    n.silence_data2 = L.Silence(n.data2, ntop=0)
    assert _graph(n.to_proto()) == [('data', 'DummyData', [], ['data', 'data2']),
                                    ('silence_data', 'Silence', ['data'], []),
                                    ('silence_data2', 'Silence', ['data2'], [])]
    # An unnamed top-less layer is named after its type and a count.
    a, b = L.DummyData(ntop=2)
    assert _graph(to_proto(L.Silence(a, b, ntop=0))) == [
        ('DummyData1', 'DummyData', [], ['DummyData1', 'DummyData2']),
        ('Silence1', 'Silence', ['DummyData1', 'DummyData2'], [])]
    data = L.DummyData(ntop=2)
    with pytest.raises(TypeError, match=r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"):
        L.Silence(data, ntop=0)
    L.Silence(*data, ntop=0)


def test_keyword_routing_lists_dicts_and_enums():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=[3, 1], pad=(1, 0), bias_term=False,
                           param=[dict(lr_mult=1, decay_mult=1)], engine='CAFFE',
                           include=dict(phase=caffe_pb2.TEST), loss_weight=0.5, name='renamed')
    n.up = L.Deconvolution(n.conv, num_output=2, kernel_size=2, stride=2)
    n.pool = L.Pooling(n.up, pool='AVE', global_pooling=True)
    net = n.to_proto()
    conv, up, pool = net.layer[1], net.layer[2], net.layer[3]
    assert conv.name == 'renamed' and conv.top[0] == 'conv'
    assert list(conv.convolution_param.kernel_size) == [3, 1] and list(conv.convolution_param.pad) == [1, 0]
    assert conv.convolution_param.bias_term is False
    assert conv.convolution_param.engine == caffe_pb2.ConvolutionParameter.CAFFE
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1)]
    assert [r.phase for r in conv.include] == [caffe_pb2.TEST] and list(conv.loss_weight) == [0.5]
    assert up.convolution_param.num_output == 2 and list(up.convolution_param.stride) == [2]
    assert pool.pooling_param.pool == P.Pooling.AVE == 1 and pool.pooling_param.global_pooling
    with pytest.raises(AttributeError, match=r"L.Convolution\(num_outputs=...\): no field 'num_outputs' in "
                                             r"LayerParameter or ConvolutionParameter"):
        to_proto(L.Convolution(n.data, num_outputs=3))
    with pytest.raises(AttributeError, match="FillerParameter has no field 'tpye'"):
        to_proto(L.Convolution(n.data, num_output=3, weight_filler=dict(tpye='xavier')))
    with pytest.raises(ValueError, match="'MAXIMUM' is not a value of PoolMethod"):
        to_proto(L.Pooling(n.data, pool='MAXIMUM'))
    with pytest.raises(TypeError, match='give a dict'):
        to_proto(L.Convolution(n.data, num_output=3, weight_filler='xavier'))
    assert P.Eltwise.SUM == 1 and P.Data.LMDB == 1 and P.Pooling.STOCHASTIC == 2
    with pytest.raises(AttributeError, match='PoolingParameter has no enum value MIN'):
        P.Pooling.MIN
    with pytest.raises(AttributeError, match='no message FooParameter'):
        P.Foo.BAR


def test_netspec_mapping_interface():
    n = NetSpec()
    n['data'] = L.Input(shape=dict(dim=[1, 2]))
    n.ip = L.InnerProduct(n['data'], num_output=3)
    assert n.keys() == ['data', 'ip'] and n.vals() == [n.data, n.ip]
    n.update('ip', dict(bias_term=False))
    assert n.to_proto().layer[1].inner_product_param.bias_term is False
    del n['ip']
    assert n.keys() == ['data']
    with pytest.raises(AttributeError, match="NetSpec has no top 'ip'"):
        n.ip
    with pytest.raises(KeyError):
        n['ip']


def test_printed_prototxt_parses_back_identically():
    net = lenet(2)
    text = str(net)
    assert text_format.Parse(text, caffe_pb2.NetParameter()) == net


def _caffe():
    exe = h.caffe_binary()
    if exe is None:
        pytest.skip('the caffe binary is not built (target/release/caffe; set CAFFE_TCH_BIN): cargo build --release')
    return exe


def test_caffe_summarize_and_forward_run_the_netspec_lenet(tmp_path):
    exe = _caffe()
    net = lenet(2)
    net.name = 'NetSpecLeNet'
    model = tmp_path / 'lenet.prototxt'
    model.write_text(str(net))
    summary = subprocess.run([exe, 'summarize', str(model)], capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    assert ('net "NetSpecLeNet": 9 layers (Convolution×2, DummyData×1, InnerProduct×2, Pooling×2, ReLU×1, '
            'SoftmaxWithLoss×1)') in summary.stdout + summary.stderr
    out = tmp_path / 'out'
    run = subprocess.run([exe, 'forward', '-model', str(model), '-phase', 'TRAIN', '-blobs', 'loss,ip2',
                          '-out', str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # DummyData's default filler is constant 0 and the biases start at 0, so
    # every logit is 0 and the loss is log(10) whatever xavier drew.
    np.testing.assert_allclose(np.load(out / 'ip2.npy'), np.zeros((2, 10)), atol=0)
    assert float(np.load(out / 'loss.npy')) == pytest.approx(math.log(10), rel=1e-6)
