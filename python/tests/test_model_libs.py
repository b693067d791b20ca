"""caffe.model_libs: the SSD fork's net builders, used the way its
examples/ssd/ssd_pascal.py uses them (`from caffe.model_libs import *`).

`ssd300` below is that script's net-building part, condensed: the
AnnotatedData layer with its transform parameters and batch samplers, the
reduced atrous VGG16, its extra layers conv6_1 ... conv9_2, the multibox
heads with its sizes, ratios, steps and normalizations, MultiBoxLoss (train),
the confidence softmax, DetectionOutput and DetectionEvaluate (test), and the
deploy net (the test net less its first and last layer, with a 1x3x300x300
`input`). The checks are facts of SSD300 that published weights and deploy
prototxts rely on (layer names, kernel sizes, 8732 priors), then caffe-tch
builds and runs the deploy net, and the train and test nets on a two-image
AnnotatedDatum LMDB that `caffe convert_annoset` writes."""
import copy
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe.model_libs import *  # noqa: F401,F403 (as the fork's scripts import it)
from caffe.model_libs import (CreateAnnotatedDataLayer, ConvBNLayer, CreateMultiBoxHead, VGGNetBody,
                              L, P, caffe_pb2)
from conftest import ROOT

# ----- ssd_pascal.py's settings -----

NUM_CLASSES = 21
LABEL_MAP = "data/VOC0712/labelmap_voc.prototxt"
NAME_SIZE = "data/VOC0712/test_name_size.txt"
SOURCES = ['conv4_3', 'fc7', 'conv6_2', 'conv7_2', 'conv8_2', 'conv9_2']
STEPS = [8, 16, 32, 64, 100, 300]
ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
NORMALIZATIONS = [20, -1, -1, -1, -1, -1]
VARIANCE = [0.1, 0.1, 0.2, 0.2]


def prior_sizes(min_dim=300, min_ratio=20, max_ratio=90):
    """The script's min/max sizes: 10% and 20% for conv4_3, then from 20%
    in equal steps."""
    step = int(math.floor((max_ratio - min_ratio) / (len(SOURCES) - 2)))
    ratios = range(min_ratio, max_ratio + 1, step)
    min_sizes = [min_dim * 10 / 100.] + [min_dim * r / 100. for r in ratios]
    max_sizes = [min_dim * 20 / 100.] + [min_dim * (r + step) / 100. for r in ratios]
    return min_sizes, max_sizes


def sampler(**constraint):
    return {'sampler': {'min_scale': 0.3, 'max_scale': 1.0, 'min_aspect_ratio': 0.5, 'max_aspect_ratio': 2.0},
            'sample_constraint': constraint, 'max_trials': 50, 'max_sample': 1}


BATCH_SAMPLER = ([{'sampler': {}, 'max_trials': 1, 'max_sample': 1}]
                 + [sampler(min_jaccard_overlap=v) for v in (0.1, 0.3, 0.5, 0.7, 0.9)]
                 + [sampler(max_jaccard_overlap=1.0)])
RESIZE = {'prob': 1, 'resize_mode': P.Resize.WARP, 'height': 300, 'width': 300}
TRAIN_TRANSFORM = {
    'mirror': True,
    'mean_value': [104, 117, 123],
    'resize_param': dict(RESIZE, interp_mode=[P.Resize.LINEAR, P.Resize.AREA, P.Resize.NEAREST,
                                               P.Resize.CUBIC, P.Resize.LANCZOS4]),
    'distort_param': {'brightness_prob': 0.5, 'brightness_delta': 32, 'contrast_prob': 0.5,
                      'contrast_lower': 0.5, 'contrast_upper': 1.5, 'hue_prob': 0.5, 'hue_delta': 18,
                      'saturation_prob': 0.5, 'saturation_lower': 0.5, 'saturation_upper': 1.5,
                      'random_order_prob': 0.0},
    'expand_param': {'prob': 0.5, 'max_expand_ratio': 4.0},
    'emit_constraint': {'emit_type': caffe_pb2.EmitConstraint.CENTER},
}
TEST_TRANSFORM = {'mean_value': [104, 117, 123], 'resize_param': dict(RESIZE, interp_mode=[P.Resize.LINEAR])}
MULTIBOX_LOSS = {
    'loc_loss_type': P.MultiBoxLoss.SMOOTH_L1, 'conf_loss_type': P.MultiBoxLoss.SOFTMAX,
    'loc_weight': (3. + 1.) / 4., 'num_classes': NUM_CLASSES, 'share_location': True,
    'match_type': P.MultiBoxLoss.PER_PREDICTION, 'overlap_threshold': 0.5, 'use_prior_for_matching': True,
    'background_label_id': 0, 'use_difficult_gt': True, 'mining_type': P.MultiBoxLoss.MAX_NEGATIVE,
    'neg_pos_ratio': 3., 'neg_overlap': 0.5, 'code_type': P.PriorBox.CENTER_SIZE,
    'ignore_cross_boundary_bbox': False,
}
DET_OUT = {
    'num_classes': NUM_CLASSES, 'share_location': True, 'background_label_id': 0,
    'nms_param': {'nms_threshold': 0.45, 'top_k': 400},
    'save_output_param': {'output_directory': 'results/Main', 'output_name_prefix': "comp4_det_test_",
                          'output_format': "VOC", 'label_map_file': LABEL_MAP, 'name_size_file': NAME_SIZE,
                          'num_test_image': 4952},
    'keep_top_k': 200, 'confidence_threshold': 0.01, 'code_type': P.PriorBox.CENTER_SIZE,
}
DET_EVAL = {'num_classes': NUM_CLASSES, 'background_label_id': 0, 'overlap_threshold': 0.5,
            'evaluate_difficult_gt': False, 'name_size_file': NAME_SIZE}


def add_extra_layers(net, use_batchnorm=False, lr_mult=1):
    """ssd_pascal.py's AddExtraLayers: 1x1 then 3x3 convolutions down to 1x1."""
    from_layer = net.keys()[-1]
    for name, num_output, kernel, pad, stride in (
            ('conv6_1', 256, 1, 0, 1), ('conv6_2', 512, 3, 1, 2),
            ('conv7_1', 128, 1, 0, 1), ('conv7_2', 256, 3, 1, 2),
            ('conv8_1', 128, 1, 0, 1), ('conv8_2', 256, 3, 0, 1),
            ('conv9_1', 128, 1, 0, 1), ('conv9_2', 256, 3, 0, 1)):
        ConvBNLayer(net, from_layer, name, use_batchnorm, True, num_output, kernel, pad, stride, lr_mult=lr_mult)
        from_layer = name
    return net


def ssd300(train):
    """ssd_pascal.py's train net (train=True) or test net, as a NetSpec."""
    min_sizes, max_sizes = prior_sizes()
    net = caffe.NetSpec()
    net.data, net.label = CreateAnnotatedDataLayer(
        "examples/VOC0712/VOC0712_%s_lmdb" % ('trainval' if train else 'test'), batch_size=8,
        train=train, output_label=True, label_map_file=LABEL_MAP,
        transform_param=TRAIN_TRANSFORM if train else TEST_TRANSFORM,
        **({'batch_sampler': BATCH_SAMPLER} if train else {}))
    VGGNetBody(net, from_layer='data', fully_conv=True, reduced=True, dilated=True, dropout=False)
    add_extra_layers(net)
    mbox = CreateMultiBoxHead(net, data_layer='data', from_layers=SOURCES, use_batchnorm=False,
                              min_sizes=min_sizes, max_sizes=max_sizes, aspect_ratios=ASPECT_RATIOS, steps=STEPS,
                              normalizations=NORMALIZATIONS, num_classes=NUM_CLASSES, share_location=True,
                              flip=True, clip=False, prior_variance=VARIANCE, kernel_size=3, pad=1, lr_mult=1)
    if train:
        net.mbox_loss = L.MultiBoxLoss(*(mbox + [net.label]), multibox_loss_param=MULTIBOX_LOSS,
                                       loss_param={'normalization': P.Loss.VALID},
                                       include=dict(phase=caffe_pb2.Phase.Value('TRAIN')),
                                       propagate_down=[True, True, False, False])
        return net
    net.mbox_conf_reshape = L.Reshape(net.mbox_conf, shape=dict(dim=[0, -1, NUM_CLASSES]))
    net.mbox_conf_softmax = L.Softmax(net.mbox_conf_reshape, axis=2)
    net.mbox_conf_flatten = L.Flatten(net.mbox_conf_softmax, axis=1)
    mbox[1] = net.mbox_conf_flatten
    net.detection_out = L.DetectionOutput(*mbox, detection_output_param=DET_OUT,
                                          include=dict(phase=caffe_pb2.Phase.Value('TEST')))
    net.detection_eval = L.DetectionEvaluate(net.detection_out, net.label, detection_evaluate_param=DET_EVAL,
                                             include=dict(phase=caffe_pb2.Phase.Value('TEST')))
    return net


def deploy_of(test_net):
    """The script's deploy net: the test net less AnnotatedData and
    DetectionEvaluate, with a 1x3x300x300 `data` input."""
    param = test_net.to_proto()
    del param.layer[0]
    del param.layer[-1]
    param.name = 'VGG_VOC0712_SSD_300x300_deploy'
    param.input.extend(['data'])
    param.input_shape.extend([caffe_pb2.BlobShape(dim=[1, 3, 300, 300])])
    return param


def layers_by_name(param):
    return {layer.name: layer for layer in param.layer}


# ----- the generated prototxt -----

# (source, priors per location, feature map side)
HEADS = [('conv4_3_norm', 4, 38), ('fc7', 6, 19), ('conv6_2', 6, 10), ('conv7_2', 6, 5), ('conv8_2', 4, 3),
         ('conv9_2', 4, 1)]
NUM_PRIORS = sum(k * side * side for _, k, side in HEADS)


def vgg_names():
    names = []
    for stage, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for j in range(1, convs + 1):
            names += ['conv%d_%d' % (stage, j), 'relu%d_%d' % (stage, j)]
        names.append('pool%d' % stage)
    return names + ['fc6', 'relu6', 'fc7', 'relu7']


def head_names():
    names = []
    for source, _, _ in HEADS:
        if source.endswith('_norm'):
            names.append(source)
        for kind in ('loc', 'conf'):
            base = '%s_mbox_%s' % (source, kind)
            names += [base, base + '_perm', base + '_flat']
        names.append(source + '_mbox_priorbox')
    return names + ['mbox_loc', 'mbox_conf', 'mbox_priorbox']


EXTRA = [(n, n + '_relu') for n in ('conv6_1', 'conv6_2', 'conv7_1', 'conv7_2', 'conv8_1', 'conv8_2', 'conv9_1',
                                     'conv9_2')]
EXTRA_NAMES = [name for pair in EXTRA for name in pair]


def test_p_resize_reads_the_fork_s_resize_values():

    # The fork's values, from SsdResizeParameter.
    assert (P.Resize.WARP, P.Resize.FIT_SMALL_SIZE, P.Resize.LINEAR, P.Resize.LANCZOS4) == (1, 2, 1, 5)
    # NEAREST is caffe-tch's Resize interpolation (1); an enum field takes it by name.
    assert P.Resize.NEAREST == caffe_pb2.ResizeParameter.NEAREST == 1 and P.Resize.BILINEAR == 0
    data = caffe.NetSpec()
    data.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    data.small = L.Resize(data.data, height=4, width=4, interpolation=copy.deepcopy(P.Resize.NEAREST))
    data.ann = L.AnnotatedData(transform_param=dict(resize_param=dict(interp_mode=[P.Resize.NEAREST, P.Resize.CUBIC])))
    by = layers_by_name(data.to_proto())
    assert by['small'].resize_param.interpolation == caffe_pb2.ResizeParameter.NEAREST
    assert list(by['ann'].transform_param.resize_param.interp_mode) == [caffe_pb2.SsdResizeParameter.NEAREST, 4] == [3, 4]
    with pytest.raises(AttributeError, match='ResizeParameter has no enum value FOO .nor has SsdResizeParameter'):
        P.Resize.FOO


def test_prior_sizes_are_ssd300s():
    assert NUM_PRIORS == 8732
    assert prior_sizes() == ([30.0, 60.0, 111.0, 162.0, 213.0, 264.0], [60.0, 111.0, 162.0, 213.0, 264.0, 315.0])


def test_train_net_layers_names_and_parameters():
    param = ssd300(train=True).to_proto()
    assert [l.name for l in param.layer] == ['data'] + vgg_names() + EXTRA_NAMES + head_names() + ['mbox_loss']
    types = [l.type for l in param.layer]
    assert types[0] == 'AnnotatedData' and types[-1] == 'MultiBoxLoss'
    assert types.count('Convolution') == 13 + 2 + 8 + 12 and types.count('PriorBox') == 6
    assert types.count('Normalize') == 1 and types.count('Dropout') == 0 and types.count('Pooling') == 5
    by = layers_by_name(param)

    data = by['data']
    assert list(data.top) == ['data', 'label'] and [r.phase for r in data.include] == [caffe.TRAIN]
    assert (data.data_param.batch_size, data.data_param.backend) == (8, caffe_pb2.DataParameter.LMDB)
    assert data.annotated_data_param.label_map_file == LABEL_MAP
    samplers = data.annotated_data_param.batch_sampler
    assert len(samplers) == 7 and not samplers[0].HasField('sampler') and samplers[0].max_trials == 1
    assert [s.sample_constraint.min_jaccard_overlap for s in samplers[1:6]] == \
        [np.float32(v) for v in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert samplers[6].sample_constraint.max_jaccard_overlap == 1.0 and samplers[6].max_trials == 50
    t = data.transform_param
    # The fork's Interp_mode numbers: LINEAR 1, AREA 2, NEAREST 3, CUBIC 4, LANCZOS4 5
    # (P.Resize.NEAREST is 1 for caffe-tch's Resize layer; here its name decides).
    assert list(t.resize_param.interp_mode) == [1, 2, 3, 4, 5]
    assert t.resize_param.resize_mode == caffe_pb2.SsdResizeParameter.WARP and t.resize_param.height == 300
    assert t.mirror and list(t.mean_value) == [104, 117, 123] and t.expand_param.max_expand_ratio == 4
    assert t.distort_param.hue_delta == 18 and t.emit_constraint.emit_type == caffe_pb2.EmitConstraint.CENTER

    # The reduced atrous VGG16: the names and shapes of its caffemodel.
    for name in vgg_names():
        if name.startswith('conv'):
            c = by[name].convolution_param
            assert (c.kernel_size, c.pad, c.weight_filler.type) == ([3], [1], 'xavier'), name
            assert [(p.lr_mult, p.decay_mult) for p in by[name].param] == [(1, 1), (2, 0)]
    assert list(by['conv5_1'].convolution_param.dilation) == [1]
    pool5 = by['pool5'].pooling_param
    assert (pool5.kernel_size, pool5.stride, pool5.pad) == (3, 1, 1)
    fc6, fc7 = by['fc6'].convolution_param, by['fc7'].convolution_param
    assert (fc6.num_output, list(fc6.kernel_size), list(fc6.pad), list(fc6.dilation)) == (1024, [3], [6], [6])
    assert (fc7.num_output, list(fc7.kernel_size), list(fc7.pad)) == (1024, [1], [])
    assert list(by['relu7'].bottom) == list(by['relu7'].top) == ['fc7']

    # AddExtraLayers.
    assert list(by['conv6_1'].bottom) == ['fc7']
    for name, width, kernel, pad, stride in (('conv6_1', 256, 1, 0, 1), ('conv6_2', 512, 3, 1, 2),
                                             ('conv8_2', 256, 3, 0, 1), ('conv9_2', 256, 3, 0, 1)):
        c = by[name].convolution_param
        assert (c.num_output, list(c.kernel_size), list(c.pad), list(c.stride)) == (width, [kernel], [pad], [stride])
    assert list(by['conv6_2_relu'].top) == ['conv6_2']

    # The heads.
    norm = by['conv4_3_norm']
    assert norm.type == 'Normalize' and list(norm.bottom) == ['conv4_3']
    assert not norm.norm_param.across_spatial and not norm.norm_param.channel_shared
    assert norm.norm_param.scale_filler.value == 20
    min_sizes, max_sizes = prior_sizes()
    for i, (source, per_location, _) in enumerate(HEADS):
        loc, conf = by[source + '_mbox_loc'].convolution_param, by[source + '_mbox_conf'].convolution_param
        assert (loc.num_output, conf.num_output) == (4 * per_location, NUM_CLASSES * per_location)
        assert list(loc.kernel_size) == [3] and list(loc.pad) == [1] and list(loc.stride) == [1]
        assert list(by[source + '_mbox_loc_perm'].permute_param.order) == [0, 2, 3, 1]
        prior = by[source + '_mbox_priorbox']
        assert list(prior.bottom) == [source, 'data']
        p = prior.prior_box_param
        assert (list(p.min_size), list(p.max_size)) == ([min_sizes[i]], [max_sizes[i]])
        assert list(p.aspect_ratio) == ASPECT_RATIOS[i] and p.flip and p.HasField('clip') and not p.clip
        assert (p.step, p.offset) == (STEPS[i], 0.5) and list(p.variance) == [np.float32(v) for v in VARIANCE]
    assert by['mbox_priorbox'].concat_param.axis == 2 and by['mbox_loc'].concat_param.axis == 1

    loss = by['mbox_loss']
    assert list(loss.bottom) == ['mbox_loc', 'mbox_conf', 'mbox_priorbox', 'label']
    assert list(loss.propagate_down) == [True, True, False, False]
    assert [r.phase for r in loss.include] == [caffe.TRAIN]
    assert loss.loss_param.normalization == caffe_pb2.LossParameter.VALID
    m = loss.multibox_loss_param
    assert (m.num_classes, m.neg_pos_ratio, m.loc_weight, m.code_type) == (21, 3, 1, caffe_pb2.PriorBoxParameter.CENTER_SIZE)
    assert m.match_type == caffe_pb2.MultiBoxLossParameter.PER_PREDICTION and m.use_prior_for_matching

    # Text round trip through caffe-tch's schema.
    again = caffe_pb2.NetParameter()
    text_format.Parse(str(param), again)
    assert again == param


def test_test_and_deploy_nets():
    test_param = ssd300(train=False).to_proto()
    names = [l.name for l in test_param.layer]
    assert names == (['data'] + vgg_names() + EXTRA_NAMES + head_names()
                     + ['mbox_conf_reshape', 'mbox_conf_softmax', 'mbox_conf_flatten', 'detection_out',
                        'detection_eval'])
    by = layers_by_name(test_param)
    assert [r.phase for r in by['data'].include] == [caffe.TEST]
    assert len(by['data'].annotated_data_param.batch_sampler) == 1  # the default: one empty sampler
    assert list(by['data'].transform_param.resize_param.interp_mode) == [1]
    assert list(by['mbox_conf_reshape'].reshape_param.shape.dim) == [0, -1, 21]
    assert by['mbox_conf_softmax'].softmax_param.axis == 2
    out = by['detection_out']
    assert list(out.bottom) == ['mbox_loc', 'mbox_conf_flatten', 'mbox_priorbox']
    assert out.detection_output_param.nms_param.top_k == 400 and out.detection_output_param.keep_top_k == 200
    assert list(by['detection_eval'].bottom) == ['detection_out', 'label']

    deploy = deploy_of(ssd300(train=False))
    assert [l.name for l in deploy.layer] == names[1:-1]
    assert list(deploy.input) == ['data'] and list(deploy.input_shape[0].dim) == [1, 3, 300, 300]


def voc_files(d):
    """The files ssd_pascal.py's DetectionOutput reads at set-up, relative to
    the Caffe root it runs from (the fork fails without them, as caffe-tch
    does): the VOC label map and the test images' name_size_file."""
    (d / 'data' / 'VOC0712').mkdir(parents=True)
    names = ['background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
             'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
             'tvmonitor']
    items = ''.join("item { name: '%s' label: %d display_name: '%s' }\n" % ('none_of_the_above' if i == 0 else n, i, n)
                    for i, n in enumerate(names))
    (d / LABEL_MAP).write_text(items)
    # VOC2007 test's 4952 images, as num_test_image counts them.
    (d / NAME_SIZE).write_text(''.join('%06d 375 500\n' % i for i in range(4952)))


def test_deploy_net_builds_and_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    voc_files(tmp_path)
    path = tmp_path / 'deploy.prototxt'
    path.write_text(str(deploy_of(ssd300(train=False))))
    net = caffe.Net(str(path), caffe.TEST)
    shapes = {name: blob.data.shape for name, blob in net.blobs.items()}
    assert shapes['data'] == (1, 3, 300, 300)
    assert shapes['mbox_priorbox'] == (1, 2, 4 * NUM_PRIORS) == (1, 2, 34928)
    assert shapes['mbox_loc'] == (1, 34928) and shapes['mbox_conf'] == (1, NUM_PRIORS * 21)
    for source, per_location, side in HEADS:
        assert shapes[source + '_mbox_conf_flat'] == (1, side * side * per_location * 21), source
    assert shapes['conv4_3_norm'] == (1, 512, 38, 38) and shapes['fc7'] == (1, 1024, 19, 19)
    assert shapes['conv9_2'] == (1, 256, 1, 1)
    # The parameter shapes of VGG_ILSVRC_16_layers_fc_reduced.caffemodel.
    params = {name: [b.data.shape for b in blobs] for name, blobs in net.params.items()}
    assert params['conv1_1'] == [(64, 3, 3, 3), (64,)] and params['conv5_3'] == [(512, 512, 3, 3), (512,)]
    assert params['fc6'] == [(1024, 512, 3, 3), (1024,)] and params['fc7'] == [(1024, 1024, 1, 1), (1024,)]
    assert params['conv4_3_norm'] == [(512,)]
    assert net.layer_dict['conv4_3_norm'].type == 'Normalize'
    assert net.layer_dict['mbox_priorbox'].type == 'Concat'

    np.testing.assert_array_equal(net.params['conv4_3_norm'][0].data, 20)
    rng = np.random.RandomState(0)
    out = net.forward(data=rng.uniform(-100, 100, (1, 3, 300, 300)).astype(np.float32))
    det = out['detection_out']
    assert det.ndim == 4 and det.shape[:2] == (1, 1) and det.shape[3] == 7 and 1 <= det.shape[2] <= 200
    assert np.all(det[0, 0, :, 0] == 0) and np.all((det[0, 0, :, 1] >= 1) & (det[0, 0, :, 1] < 21))
    priors = net.blobs['mbox_priorbox'].data.reshape(2, -1, 4)
    # conv4_3's first prior: a 30x30 box at (4, 4) (step 8, offset 0.5), unclipped.
    np.testing.assert_allclose(priors[0, 0] * 300, [4 - 15, 4 - 15, 4 + 15, 4 + 15], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(priors[1, :3], [VARIANCE] * 3, rtol=1e-6)


def make_annoset(d):
    """Two 120x160 images with boxes (`label xmin ymin xmax ymax` text files)
    into an AnnotatedDatum LMDB, by caffe-tch's `convert_annoset` (the
    binary when built, else the same command through the Python module)."""
    from PIL import Image
    rng = np.random.RandomState(1)
    lines = []
    for i in range(2):
        Image.fromarray(rng.randint(0, 256, (120, 160, 3), dtype=np.uint8)).save(str(d / ('im%d.png' % i)))
        (d / ('im%d.txt' % i)).write_text('1 10 20 80 100\n15 40 30 150 110\n')
        lines.append('im%d.png im%d.txt\n' % (i, i))
    (d / 'list.txt').write_text(''.join(lines))
    binary = os.environ.get('CAFFE', str(ROOT / 'target' / 'release' / 'caffe'))
    command = [binary] if os.path.exists(binary) else [sys.executable, '-m', 'caffe._cli']
    r = subprocess.run(command + ['convert_annoset', '-anno_type', 'detection', '-label_type', 'txt',
                                  str(d) + '/', str(d / 'list.txt'), str(d / 'lmdb')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (d / 'name_size.txt').write_text('im0 120 160\nim1 120 160\n')
    return str(d / 'lmdb')


def test_train_and_test_nets_build_and_run_on_an_annoset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    voc_files(tmp_path)
    lmdb = make_annoset(tmp_path)
    caffe.set_random_seed(3)

    train = ssd300(train=True).to_proto()
    train.layer[0].data_param.source = lmdb
    train.layer[0].data_param.batch_size = 1
    path = tmp_path / 'train.prototxt'
    path.write_text('name: "VGG_VOC0712_SSD_300x300_train"\n' + str(train))
    net = caffe.Net(str(path), caffe.TRAIN)
    assert net.layer_dict['data'].type == 'AnnotatedData'
    assert net.blobs['data'].data.shape == (1, 3, 300, 300)
    out = net.forward()
    assert np.isfinite(out['mbox_loss']).all() and float(out['mbox_loss']) > 0
    label = net.blobs['label'].data
    assert label.shape[:2] == (1, 1) and label.shape[3] == 8 and set(label[0, 0, :, 1]) <= {-1, 1, 15}

    test = ssd300(train=False).to_proto()
    test.layer[0].data_param.source = lmdb
    test.layer[0].data_param.batch_size = 2
    test.layer[-1].detection_evaluate_param.name_size_file = str(tmp_path / 'name_size.txt')
    path = tmp_path / 'test.prototxt'
    path.write_text(str(test))
    net = caffe.Net(str(path), caffe.TEST)
    out = net.forward()
    evaluation = out['detection_eval']
    # DetectionEvaluate's rows: one per class (background aside) with its
    # ground-truth count, then one per detection.
    assert evaluation.shape[:2] == (1, 1) and evaluation.shape[3] == 5
    counts = {int(row[1]): row[2] for row in evaluation[0, 0] if row[0] == -1}
    assert counts == {c: 2 if c in (1, 15) else 0 for c in range(1, NUM_CLASSES)}
    assert len(evaluation[0, 0]) > NUM_CLASSES - 1  # and some detections
