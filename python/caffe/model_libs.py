"""Net-building helpers of the SSD fork's pycaffe (`caffe.model_libs`).

The fork's example scripts (`examples/ssd/ssd_pascal.py` and its siblings)
start with `from caffe.model_libs import *` and build their train, test and
deploy nets with the functions below, on top of `caffe.NetSpec`. This module
offers the same functions, under the same names and with the same arguments
and defaults, and they add the same layers: same names, types, tops and
parameters. Those names are what published SSD weights and prototxts use
(`conv1_1` ... `fc7` of the reduced VGG16 that
`VGG_ILSVRC_16_layers_fc_reduced.caffemodel` holds, `conv4_3_norm`,
`fc7_mbox_conf`, `mbox_priorbox`, ...), so a net built here loads them.

Provided:
    check_if_exist, make_if_not_exist, UnpackVariable
    ConvBNLayer, ResBody, InceptionTower
    CreateAnnotatedDataLayer, CreateMultiBoxHead
    VGGNetBody, ZFNetBody, ResNet101Body, ResNet152Body, InceptionV3Body

A star import also brings `os`, `caffe`, `L` (caffe.layers), `P`
(caffe.params) and `caffe_pb2`, which the fork's scripts use without
importing them.

Where the fork's code would fail or emit something unusable, these do what
it evidently meant, and nothing else changes:
    * a tuple counts as a list (kernel sizes, min/max sizes, aspect ratios);
    * paddings are integers under Python 3 (`(kernel - 1) * dilation / 2`);
    * VGGNetBody(nopool=True) uses dilation 1 for conv5 (the fork reads an
      unset variable there), and its InnerProduct fc6 reads `conv5_4` when
      there is no `pool5`.
Kept as in the fork, since they decide what the generated nets contain:
    * ConvBNLayer with a square kernel writes one `pad` and one `stride`
      (the first of each given), as `kernel_size`, `pad`, `stride`;
    * CreateMultiBoxHead accepts `use_scale` but its batch-norm heads always
      get a Scale layer; PriorBox gets `flip` only with aspect ratios.
"""
import os

import caffe  # noqa: F401 (for `from caffe.model_libs import *`)

from .net_spec import layers as L
from .net_spec import params as P
from .proto import caffe_pb2


# ----- small utilities -----

def check_if_exist(path):
    """True when `path` (a file or a folder) exists."""
    return os.path.exists(path)


def make_if_not_exist(path):
    """Creates the folder `path` (and its parents) unless it exists."""
    if not os.path.exists(path):
        os.makedirs(path)


def UnpackVariable(var, num):
    """`var` as a list of `num` values: a list of `num` values is returned
    as it is, a one-element list or a single value is repeated."""
    if isinstance(var, (list, tuple)):
        if len(var) == num:
            return list(var)
        if len(var) != 1:
            raise ValueError('UnpackVariable: %r has neither 1 nor %d values' % (var, num))
        return [var[0]] * num
    return [var] * num


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _same_pad(kernel_size, dilation):
    """The padding that keeps a stride-1 (dilated) convolution's size."""
    return ((kernel_size - 1) * dilation) // 2


def _mults(*pairs):
    """`param` entries (one per blob) from (lr_mult, decay_mult) pairs."""
    return [dict(lr_mult=lr, decay_mult=decay) for lr, decay in pairs]


def _xavier_conv(lr_mult=1, decay_mult=1):
    """The keywords of the backbones' convolutions: weights at lr_mult with
    decay, biases at twice the rate without; xavier weights, zero biases."""
    return dict(param=_mults((lr_mult, decay_mult), (2 * lr_mult, 0)),
                weight_filler=dict(type='xavier'),
                bias_filler=dict(type='constant', value=0))


def _freeze(net, freeze_layers):
    """Sets learning rate and decay 0 on the named layers that `net` has."""
    present = set(net.keys())
    for name in freeze_layers:
        if name in present:
            net.update(name, _xavier_conv(lr_mult=0, decay_mult=0))


# ----- layer groups -----

def ConvBNLayer(net, from_layer, out_layer, use_bn, use_relu, num_output,
                kernel_size, pad, stride, dilation=1, use_scale=True, lr_mult=1,
                conv_prefix='', conv_postfix='', bn_prefix='', bn_postfix='_bn',
                scale_prefix='', scale_postfix='_scale', bias_prefix='', bias_postfix='_bias',
                **bn_params):
    """Adds a convolution on `net[from_layer]`, optionally followed (in place)
    by BatchNorm and Scale (or Bias, with use_scale=False) and by a ReLU.

    Names: the convolution is `<conv_prefix><out_layer><conv_postfix>`, the
    batch norm `<bn_prefix><out_layer><bn_postfix>`, the scale (bias) layer
    `<scale_prefix><out_layer><scale_postfix>` (`<bias_prefix>...`), the ReLU
    `<convolution's name>_relu`; all but the convolution write over its top.

    kernel_size, pad and stride are one value or [h, w]. `bn_params` may hold
    eps (0.001), moving_average_fraction (0.999) and use_global_stats; with
    use_global_stats true the batch norm uses stored statistics and its
    scale/bias stop learning. Without batch norm the convolution has a bias.
    """
    conv_name = conv_prefix + out_layer + conv_postfix
    kernel_h, kernel_w = UnpackVariable(kernel_size, 2)
    pad_h, pad_w = UnpackVariable(pad, 2)
    stride_h, stride_w = UnpackVariable(stride, 2)

    if use_bn:
        conv_kwargs = dict(param=_mults((lr_mult, 1)),
                           weight_filler=dict(type='gaussian', std=0.01),
                           bias_term=False)
    else:
        conv_kwargs = _xavier_conv(lr_mult)
    if kernel_h == kernel_w:
        geometry = dict(kernel_size=kernel_h, pad=pad_h, stride=stride_h)
    else:
        geometry = dict(kernel_h=kernel_h, kernel_w=kernel_w, pad_h=pad_h, pad_w=pad_w,
                        stride_h=stride_h, stride_w=stride_w)
    net[conv_name] = L.Convolution(net[from_layer], num_output=num_output, **dict(geometry, **conv_kwargs))
    if dilation > 1:
        net.update(conv_name, {'dilation': dilation})

    if use_bn:
        eps = bn_params.get('eps', 0.001)
        frozen_stats = bn_params.get('use_global_stats', False)
        # Mean, variance and the moving-average factor are statistics, not learned.
        bn_kwargs = dict(param=_mults((0, 0), (0, 0), (0, 0)), eps=eps)
        if frozen_stats:
            # Given only when asked: otherwise Caffe picks by phase.
            bn_kwargs['use_global_stats'] = frozen_stats
            affine_lr = 0
        else:
            bn_kwargs['moving_average_fraction'] = bn_params.get('moving_average_fraction', 0.999)
            affine_lr = lr_mult
        bn_name = bn_prefix + out_layer + bn_postfix
        net[bn_name] = L.BatchNorm(net[conv_name], in_place=True, **bn_kwargs)
        if use_scale:
            scale_name = scale_prefix + out_layer + scale_postfix
            net[scale_name] = L.Scale(net[bn_name], in_place=True, bias_term=True,
                                      param=_mults((affine_lr, 0), (affine_lr, 0)),
                                      filler=dict(type='constant', value=1.0),
                                      bias_filler=dict(type='constant', value=0.0))
        else:
            bias_name = bias_prefix + out_layer + bias_postfix
            net[bias_name] = L.Bias(net[bn_name], in_place=True,
                                    param=_mults((affine_lr, 0)),
                                    filler=dict(type='constant', value=0.0))
    if use_relu:
        net[conv_name + '_relu'] = L.ReLU(net[conv_name], in_place=True)


def ResBody(net, from_layer, block_name, out2a, out2b, out2c, stride, use_branch1, dilation=1, **bn_param):
    """A ResNet bottleneck block `res<block_name>` on `net[from_layer]`:
    branch2a (1x1, out2a, at `stride`), branch2b (3x3, out2b, dilated by
    `dilation`), branch2c (1x1, out2c), each with BatchNorm `bn<block>_...`
    and Scale `scale<block>_...`; summed (Eltwise) with the input, or with a
    1x1 projection branch1 when use_branch1, then a ReLU `res<block>_relu`.
    """
    names = dict(use_bn=True, use_scale=True,
                 conv_prefix='res%s_' % block_name, conv_postfix='',
                 bn_prefix='bn%s_' % block_name, bn_postfix='',
                 scale_prefix='scale%s_' % block_name, scale_postfix='')
    names.update(bn_param)
    conv = lambda branch: 'res%s_%s' % (block_name, branch)

    if use_branch1:
        ConvBNLayer(net, from_layer, 'branch1', use_relu=False, num_output=out2c,
                    kernel_size=1, pad=0, stride=stride, **names)
        shortcut = conv('branch1')
    else:
        shortcut = from_layer

    ConvBNLayer(net, from_layer, 'branch2a', use_relu=True, num_output=out2a,
                kernel_size=1, pad=0, stride=stride, **names)
    if dilation == 1:
        ConvBNLayer(net, conv('branch2a'), 'branch2b', use_relu=True, num_output=out2b,
                    kernel_size=3, pad=1, stride=1, **names)
    else:
        ConvBNLayer(net, conv('branch2a'), 'branch2b', use_relu=True, num_output=out2b,
                    kernel_size=3, pad=_same_pad(3, dilation), stride=1, dilation=dilation, **names)
    ConvBNLayer(net, conv('branch2b'), 'branch2c', use_relu=False, num_output=out2c,
                kernel_size=1, pad=0, stride=1, **names)

    block = 'res%s' % block_name
    net[block] = L.Eltwise(net[shortcut], net[conv('branch2c')])
    net[block + '_relu'] = L.ReLU(net[block], in_place=True)


def InceptionTower(net, from_layer, tower_name, layer_params, **bn_param):
    """A chain of layers `<tower_name>/<name>` starting at `net[from_layer]`,
    one per dict of `layer_params` (each with a 'name'): a Pooling when the
    layer's full name contains 'pool' (the other keys are its parameters),
    else a ConvBNLayer with BatchNorm and Bias (no Scale) and a ReLU (the
    keys are num_output, kernel_size, pad, stride). Returns the last top."""
    for spec in layer_params:
        spec = dict(spec)
        layer = '%s/%s' % (tower_name, spec.pop('name'))
        if 'pool' in layer:
            net[layer] = L.Pooling(net[from_layer], **spec)
        else:
            spec.update(bn_param)
            ConvBNLayer(net, from_layer, layer, use_bn=True, use_relu=True, use_scale=False, **spec)
        from_layer = layer
    return net[from_layer]


# ----- data -----

def CreateAnnotatedDataLayer(source, batch_size=32, backend=P.Data.LMDB,
                             output_label=True, train=True, label_map_file='', anno_type=None,
                             transform_param={}, batch_sampler=[{}]):
    """An AnnotatedData layer named 'data' reading `source` (a DB of
    AnnotatedDatum), in the TRAIN phase (train=True) or the TEST phase.
    Returns its tops: (data, label) with output_label, else data alone.

    transform_param and batch_sampler (a list of BatchSampler dicts; the
    default, one empty sampler, keeps the whole image) are given as they are;
    anno_type (caffe_pb2.AnnotatedDatum.BBOX, ...) only when not None.
    """
    phase = caffe_pb2.Phase.Value('TRAIN' if train else 'TEST')
    annotated = {'label_map_file': label_map_file, 'batch_sampler': batch_sampler}
    if anno_type is not None:
        annotated['anno_type'] = anno_type
    return L.AnnotatedData(name='data', annotated_data_param=annotated,
                           data_param=dict(batch_size=batch_size, backend=backend, source=source),
                           ntop=2 if output_label else 1,
                           include=dict(phase=phase), transform_param=transform_param)


# ----- backbones -----

def ZFNetBody(net, from_layer, need_fc=True, fully_conv=False, reduced=False,
              dilated=False, dropout=True, need_fc8=False, freeze_layers=[]):
    """ZF-Net (conv1 ... conv5 with LRN norm1/norm2) on `net[from_layer]`,
    with fc6/fc7 when need_fc: InnerProduct 4096, or with fully_conv
    convolutions (reduced: 1024 outputs with a 3x3 kernel; dilated: pool5 at
    stride 1 and dilated fc6). need_fc8 adds the 1000-way fc8 and a Softmax
    `prob`. The layers named in freeze_layers stop learning. Returns net."""
    assert from_layer in net.keys()
    conv = _xavier_conv

    def lrn(bottom):
        return L.LRN(bottom, local_size=3, alpha=0.00005, beta=0.75,
                     norm_region=P.LRN.WITHIN_CHANNEL, engine=P.LRN.CAFFE)

    net.conv1 = L.Convolution(net[from_layer], num_output=96, pad=3, kernel_size=7, stride=2, **conv())
    net.relu1 = L.ReLU(net.conv1, in_place=True)
    net.norm1 = lrn(net.relu1)
    net.pool1 = L.Pooling(net.norm1, pool=P.Pooling.MAX, pad=1, kernel_size=3, stride=2)
    net.conv2 = L.Convolution(net.pool1, num_output=256, pad=2, kernel_size=5, stride=2, **conv())
    net.relu2 = L.ReLU(net.conv2, in_place=True)
    net.norm2 = lrn(net.relu2)
    net.pool2 = L.Pooling(net.norm2, pool=P.Pooling.MAX, pad=1, kernel_size=3, stride=2)
    bottom = net.pool2
    for index, width in ((3, 384), (4, 384), (5, 256)):
        net['conv%d' % index] = L.Convolution(bottom, num_output=width, pad=1, kernel_size=3, **conv())
        bottom = net['relu%d' % index] = L.ReLU(net['conv%d' % index], in_place=True)

    if need_fc:
        net.pool5 = L.Pooling(net.relu5, pool=P.Pooling.MAX, pad=1, kernel_size=3,
                              stride=1 if dilated else 2)
        width = 1024 if reduced else 4096
        if fully_conv:
            # (pad, kernel, dilation) of fc6 by (dilated, reduced).
            pad, kernel, dilation = {(True, True): (5, 3, 5), (True, False): (5, 6, 2),
                                     (False, True): (2, 3, 2), (False, False): (2, 6, 1)}[(bool(dilated), bool(reduced))]
            fc6_geometry = dict(pad=pad, kernel_size=kernel)
            if dilation > 1:
                fc6_geometry['dilation'] = dilation
            net.fc6 = L.Convolution(net.pool5, num_output=width, **dict(fc6_geometry, **conv()))
        else:
            net.fc6 = L.InnerProduct(net.pool5, num_output=4096)
        net.relu6 = L.ReLU(net.fc6, in_place=True)
        if dropout:
            net.drop6 = L.Dropout(net.relu6, dropout_ratio=0.5, in_place=True)
        if fully_conv:
            net.fc7 = L.Convolution(net.relu6, num_output=width, kernel_size=1, **conv())
        else:
            net.fc7 = L.InnerProduct(net.relu6, num_output=4096)
        net.relu7 = L.ReLU(net.fc7, in_place=True)
        if dropout:
            net.drop7 = L.Dropout(net.relu7, dropout_ratio=0.5, in_place=True)

    if need_fc8:
        last = net[net.keys()[-1]]
        if fully_conv:
            net.fc8 = L.Convolution(last, num_output=1000, kernel_size=1, **conv())
        else:
            net.fc8 = L.InnerProduct(last, num_output=1000)
        net.prob = L.Softmax(net.fc8)

    _freeze(net, freeze_layers)
    return net


def VGGNetBody(net, from_layer, need_fc=True, fully_conv=False, reduced=False,
               dilated=False, nopool=False, dropout=True, freeze_layers=[], dilate_pool4=False):
    """VGG16 on `net[from_layer]`: conv1_1 ... conv5_3 (3x3, each with a ReLU
    `relu<i>_<j>`), pool1 ... pool4 (2x2 max; with nopool, stride-2 3x3
    convolutions conv1_3, conv2_3, conv3_4, conv4_4 instead), then with
    need_fc: pool5 and fc6/fc7.

    fully_conv makes fc6/fc7 convolutions; reduced gives them 1024 outputs
    and fc6 a 3x3 kernel (the `fc_reduced` VGG that SSD starts from);
    dilated keeps pool5 at stride 1 (3x3, pad 1) and dilates fc6 (by 6 when
    reduced: SSD's atrous fc6). dilate_pool4 makes pool4 a stride-1 3x3
    pooling and doubles the dilation from conv5 on. Without fully_conv, fc6
    and fc7 are 4096-wide InnerProducts. dropout adds drop6/drop7; the layers
    named in freeze_layers stop learning. Returns net.
    """
    assert from_layer in net.keys()
    conv = _xavier_conv
    # (stage, widths of its convolutions, name of its nopool convolution)
    stages = ((1, (64, 64), 'conv1_3'), (2, (128, 128), 'conv2_3'),
              (3, (256, 256, 256), 'conv3_4'), (4, (512, 512, 512), 'conv4_4'))
    bottom = net[from_layer]
    dilation = 1
    for stage, widths, nopool_name in stages:
        for index, width in enumerate(widths, 1):
            name = 'conv%d_%d' % (stage, index)
            net[name] = L.Convolution(bottom, num_output=width, pad=1, kernel_size=3, **conv())
            bottom = net['relu%d_%d' % (stage, index)] = L.ReLU(net[name], in_place=True)
        if nopool:
            net[nopool_name] = L.Convolution(bottom, num_output=widths[-1], pad=1, kernel_size=3,
                                             stride=2, **conv())
            bottom = net[nopool_name]
        elif stage == 4 and dilate_pool4:
            net.pool4 = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=3, stride=1, pad=1)
            bottom, dilation = net.pool4, 2
        else:
            name = 'pool%d' % stage
            net[name] = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)
            bottom = net[name]

    for index in (1, 2, 3):
        name = 'conv5_%d' % index
        net[name] = L.Convolution(bottom, num_output=512, pad=_same_pad(3, dilation), kernel_size=3,
                                  dilation=dilation, **conv())
        bottom = net['relu5_%d' % index] = L.ReLU(net[name], in_place=True)

    if need_fc:
        stride = 1 if dilated else 2
        if nopool:
            last = 'conv5_4'
            net[last] = L.Convolution(bottom, num_output=512, pad=1, kernel_size=3, stride=stride, **conv())
        else:
            last = 'pool5'
            if dilated:
                net[last] = L.Pooling(bottom, pool=P.Pooling.MAX, pad=1, kernel_size=3, stride=1)
            else:
                net[last] = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)

        if fully_conv:
            if reduced:
                kernel, width = 3, 1024
                dilation *= 6 if dilated else 3
            else:
                kernel, width = 7, 4096
                if dilated:
                    dilation *= 2
            net.fc6 = L.Convolution(net[last], num_output=width, pad=_same_pad(kernel, dilation),
                                    kernel_size=kernel, dilation=dilation, **conv())
        else:
            net.fc6 = L.InnerProduct(net[last], num_output=4096)
        net.relu6 = L.ReLU(net.fc6, in_place=True)
        if dropout:
            net.drop6 = L.Dropout(net.relu6, dropout_ratio=0.5, in_place=True)
        if fully_conv:
            net.fc7 = L.Convolution(net.relu6, num_output=1024 if reduced else 4096, kernel_size=1, **conv())
        else:
            net.fc7 = L.InnerProduct(net.relu6, num_output=4096)
        net.relu7 = L.ReLU(net.fc7, in_place=True)
        if dropout:
            net.drop7 = L.Dropout(net.relu7, dropout_ratio=0.5, in_place=True)

    _freeze(net, freeze_layers)
    return net


def _resnet_body(net, from_layer, blocks3, blocks4, use_pool5, use_dilation_conv5, bn_param):
    """ResNet-101/152 (MSRA naming: conv1, bn_conv1, scale_conv1, res2a ...
    res5c) with `blocks3` blocks res3b<i> and `blocks4` blocks res4b<i>."""
    ConvBNLayer(net, from_layer, 'conv1', use_bn=True, use_relu=True, num_output=64,
                kernel_size=7, pad=3, stride=2, conv_prefix='', conv_postfix='',
                bn_prefix='bn_', bn_postfix='', scale_prefix='scale_', scale_postfix='', **bn_param)
    net.pool1 = L.Pooling(net.conv1, pool=P.Pooling.MAX, kernel_size=3, stride=2)

    # (stage, bottleneck widths, first block's stride, number of 'b' blocks)
    stages = ((2, (64, 64, 256), 1, 0), (3, (128, 128, 512), 2, blocks3), (4, (256, 256, 1024), 2, blocks4))
    bottom = 'pool1'
    for stage, (out2a, out2b, out2c), stride, blocks in stages:
        if stage == 2:
            names = ['2a', '2b', '2c']
        else:
            names = ['%da' % stage] + ['%db%d' % (stage, i) for i in range(1, blocks + 1)]
        for index, block in enumerate(names):
            ResBody(net, bottom, block, out2a=out2a, out2b=out2b, out2c=out2c,
                    stride=stride if index == 0 else 1, use_branch1=index == 0, **bn_param)
            bottom = 'res' + block

    stride, dilation = (1, 2) if use_dilation_conv5 else (2, 1)
    for index, block in enumerate(('5a', '5b', '5c')):
        ResBody(net, bottom, block, out2a=512, out2b=512, out2c=2048, stride=stride if index == 0 else 1,
                use_branch1=index == 0, dilation=dilation, **bn_param)
        bottom = 'res' + block

    if use_pool5:
        net.pool5 = L.Pooling(net.res5c, pool=P.Pooling.AVE, global_pooling=True)
    return net


def ResNet101Body(net, from_layer, use_pool5=True, use_dilation_conv5=False, **bn_param):
    """ResNet-101 on `net[from_layer]` (res3b1-3, res4b1-22); use_pool5 adds
    global average pooling `pool5`; use_dilation_conv5 keeps res5 at stride
    1 with dilation 2. `bn_param` goes to every ConvBNLayer. Returns net."""
    return _resnet_body(net, from_layer, 3, 22, use_pool5, use_dilation_conv5, bn_param)


def ResNet152Body(net, from_layer, use_pool5=True, use_dilation_conv5=False, **bn_param):
    """ResNet-152 on `net[from_layer]` (res3b1-7, res4b1-35); otherwise as
    ResNet101Body. Returns net."""
    return _resnet_body(net, from_layer, 7, 35, use_pool5, use_dilation_conv5, bn_param)


def _conv_spec(name, num_output, kernel_size, pad=0, stride=1):
    """An InceptionTower convolution; [h, w] kernels get [h, w] pad and stride."""
    if isinstance(kernel_size, list):
        stride = [stride, stride]
    return dict(name=name, num_output=num_output, kernel_size=kernel_size, pad=pad, stride=stride)


def _pool_spec(pool, stride, pad):
    return dict(name='pool', pool=pool, kernel_size=3, pad=pad, stride=stride)


def InceptionV3Body(net, from_layer, output_pred=False, **bn_param):
    """Inception-v3 (TensorFlow's layer names: conv ... conv_4, pool,
    pool_1, mixed ... mixed_10 with their towers and `<mixed>/join`
    concatenations) on `net[from_layer]`. Convolutions get BatchNorm and
    Bias (no Scale) and a ReLU. output_pred adds pool_3, the 1008-way
    `softmax` InnerProduct and `softmax_prob`. Returns net."""
    bn = dict(use_bn=True, use_relu=True, use_scale=False)
    bn.update(bn_param)
    stem = (('conv', 32, 3, 0, 2), ('conv_1', 32, 3, 0, 1), ('conv_2', 64, 3, 1, 1), 'pool',
            ('conv_3', 80, 1, 0, 1), ('conv_4', 192, 3, 0, 1), 'pool_1')
    for layer in stem:
        if isinstance(layer, str):
            net[layer] = L.Pooling(net[from_layer], pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=0)
            from_layer = layer
        else:
            name, width, kernel, pad, stride = layer
            ConvBNLayer(net, from_layer, name, num_output=width, kernel_size=kernel, pad=pad, stride=stride, **bn)
            from_layer = name

    def join(block, towers):
        name = '%s/join' % block
        net[name] = L.Concat(*towers, axis=1)
        return name

    def tower(block, suffix, specs):
        return InceptionTower(net, from_layer, block + suffix, specs, **bn_param)

    c = _conv_spec
    # 35x35: 1x1, 5x5, double 3x3 and pooled 1x1 towers.
    for index in range(3):
        block = 'mixed' if index == 0 else 'mixed_%d' % index
        from_layer = join(block, [
            tower(block, '', [c('conv', 64, 1)]),
            tower(block, '/tower', [c('conv', 48, 1), c('conv_1', 64, 5, 2)]),
            tower(block, '/tower_1', [c('conv', 64, 1), c('conv_1', 96, 3, 1), c('conv_2', 96, 3, 1)]),
            tower(block, '/tower_2', [_pool_spec(P.Pooling.AVE, 1, 1), c('conv', 32 if index == 0 else 64, 1)]),
        ])

    # 35x35 -> 17x17.
    block = 'mixed_3'
    from_layer = join(block, [
        tower(block, '', [c('conv', 384, 3, 0, 2)]),
        tower(block, '/tower', [c('conv', 64, 1), c('conv_1', 96, 3, 1), c('conv_2', 96, 3, 0, 2)]),
        tower(block, '', [_pool_spec(P.Pooling.MAX, 2, 0)]),
    ])

    # 17x17: factorized 7x7 towers.
    row, col = dict(kernel_size=[1, 7], pad=[0, 3]), dict(kernel_size=[7, 1], pad=[3, 0])
    for index, width in ((4, 128), (5, 160), (6, 160), (7, 192)):
        block = 'mixed_%d' % index
        from_layer = join(block, [
            tower(block, '', [c('conv', 192, 1)]),
            tower(block, '/tower', [c('conv', width, 1), c('conv_1', width, **row), c('conv_2', 192, **col)]),
            tower(block, '/tower_1', [c('conv', width, 1), c('conv_1', width, **col), c('conv_2', width, **row),
                                      c('conv_3', width, **col), c('conv_4', 192, **row)]),
            tower(block, '/tower_2', [_pool_spec(P.Pooling.AVE, 1, 1), c('conv', 192, 1)]),
        ])

    # 17x17 -> 8x8.
    block = 'mixed_8'
    from_layer = join(block, [
        tower(block, '/tower', [c('conv', 192, 1), c('conv_1', 320, 3, 0, 2)]),
        tower(block, '/tower_1', [c('conv', 192, 1), c('conv_1', 192, **row), c('conv_2', 192, **col),
                                  c('conv_3', 192, 3, 0, 2)]),
        tower(block, '', [_pool_spec(P.Pooling.MAX, 2, 0)]),
    ])

    # 8x8: towers that split into 1x3 and 3x1 halves.
    def split(block, start):
        name = '%s/mixed' % block
        halves = [InceptionTower(net, start, name, [c('conv', 384, [1, 3], [0, 1])], **bn_param),
                  InceptionTower(net, start, name, [c('conv_1', 384, [3, 1], [1, 0])], **bn_param)]
        net[name] = L.Concat(*halves, axis=1)
        return net[name]

    for index, pool in ((9, P.Pooling.AVE), (10, P.Pooling.MAX)):
        block = 'mixed_%d' % index
        first = tower(block, '', [c('conv', 320, 1)])
        tower(block, '/tower', [c('conv', 384, 1)])
        second = split(block + '/tower', block + '/tower/conv')
        tower(block, '/tower_1', [c('conv', 448, 1), c('conv_1', 384, 3, 1)])
        third = split(block + '/tower_1', block + '/tower_1/conv_1')
        fourth = tower(block, '/tower_2', [_pool_spec(pool, 1, 1), c('conv', 192, 1)])
        from_layer = join(block, [first, second, third, fourth])

    if output_pred:
        net.pool_3 = L.Pooling(net[from_layer], pool=P.Pooling.AVE, kernel_size=8, pad=0, stride=1)
        net.softmax = L.InnerProduct(net.pool_3, num_output=1008)
        net.softmax_prob = L.Softmax(net.softmax)
    return net


# ----- SSD heads -----

def CreateMultiBoxHead(net, data_layer="data", num_classes=[], from_layers=[],
                       use_objectness=False, normalizations=[], use_batchnorm=True, lr_mult=1,
                       use_scale=True, min_sizes=[], max_sizes=[], prior_variance=[0.1],
                       aspect_ratios=[], steps=[], img_height=0, img_width=0, share_location=True,
                       flip=True, clip=True, offset=0.5, inter_layer_depth=[], kernel_size=1, pad=0,
                       conf_postfix='', loc_postfix='', **bn_param):
    """SSD's prediction heads on the feature maps `from_layers`.

    For each source `S` (after an L2 Normalize `S_norm` when its entry of
    normalizations is not -1, and a 3x3 ConvBNLayer `S_inter` when its entry
    of inter_layer_depth is > 0): a convolution `S_mbox_loc` with 4 outputs
    per prior (times num_classes without share_location) and `S_mbox_conf`
    with num_classes per prior, each permuted to NHWC (`..._perm`) and
    flattened (`..._flat`); a PriorBox `S_mbox_priorbox` over S and
    `net[data_layer]`; with use_objectness, `S_mbox_objectness` (2 per prior).
    The priors per location: (1 + len(aspect ratios), or 2 + ... with a max
    size) per min size, plus len(aspect ratios) per min size with flip.

    Returns the concatenations [mbox_loc, mbox_conf, mbox_priorbox] (and
    mbox_objectness), which MultiBoxLoss and DetectionOutput take.
    """
    assert num_classes, "must provide num_classes"
    assert num_classes > 0, "num_classes must be positive number"
    count = len(from_layers)
    for what, values in (('normalizations', normalizations), ('max_sizes', max_sizes),
                         ('aspect_ratios', aspect_ratios), ('steps', steps),
                         ('inter_layer_depth', inter_layer_depth)):
        assert not values or len(values) == count, "from_layers and %s should have same length" % what
    assert len(min_sizes) == count, "from_layers and min_sizes should have same length"
    assert data_layer in net.keys(), "data_layer is not in net's layers"

    head = dict(use_bn=use_batchnorm, use_relu=False, lr_mult=lr_mult,
                kernel_size=kernel_size, pad=pad, stride=1)
    head.update(bn_param)

    def predictor(source, name, width):
        """A prediction convolution, permuted to NHWC and flattened."""
        ConvBNLayer(net, source, name, num_output=width, **head)
        net[name + '_perm'] = L.Permute(net[name], order=[0, 2, 3, 1])
        net[name + '_flat'] = L.Flatten(net[name + '_perm'], axis=1)
        return net[name + '_flat']

    locs, confs, priors, objectness = [], [], [], []
    for i, source in enumerate(from_layers):
        if normalizations and normalizations[i] != -1:
            norm = source + '_norm'
            net[norm] = L.Normalize(net[source], scale_filler=dict(type='constant', value=normalizations[i]),
                                    across_spatial=False, channel_shared=False)
            source = norm
        if inter_layer_depth and inter_layer_depth[i] > 0:
            inter = source + '_inter'
            ConvBNLayer(net, source, inter, use_bn=use_batchnorm, use_relu=True, lr_mult=lr_mult,
                        num_output=inter_layer_depth[i], kernel_size=3, pad=1, stride=1, **bn_param)
            source = inter

        min_size = _as_list(min_sizes[i])
        ratios = _as_list(aspect_ratios[i]) if len(aspect_ratios) > i else []
        max_size = _as_list(max_sizes[i]) if len(max_sizes) > i else []
        if max_size:
            assert len(max_size) == len(min_size), "max_size and min_size should have same length."
        per_location = len(min_size) * (len(ratios) + (2 if max_size else 1) + (len(ratios) if flip else 0))
        step = steps[i] if len(steps) > i else []

        locs.append(predictor(source, '%s_mbox_loc%s' % (source, loc_postfix),
                              per_location * 4 * (1 if share_location else num_classes)))
        confs.append(predictor(source, '%s_mbox_conf%s' % (source, conf_postfix), per_location * num_classes))

        prior = source + '_mbox_priorbox'
        prior_kwargs = dict(min_size=min_size, clip=clip, variance=prior_variance, offset=offset)
        if max_size:
            prior_kwargs['max_size'] = max_size
        if ratios:
            prior_kwargs.update(aspect_ratio=ratios, flip=flip)
        if step:
            prior_kwargs['step'] = step
        if img_height != 0 and img_width != 0:
            if img_height == img_width:
                prior_kwargs['img_size'] = img_height
            else:
                prior_kwargs.update(img_h=img_height, img_w=img_width)
        net[prior] = L.PriorBox(net[source], net[data_layer], **prior_kwargs)
        priors.append(net[prior])

        if use_objectness:
            objectness.append(predictor(source, source + '_mbox_objectness', per_location * 2))

    net.mbox_loc = L.Concat(*locs, axis=1)
    net.mbox_conf = L.Concat(*confs, axis=1)
    net.mbox_priorbox = L.Concat(*priors, axis=2)
    outputs = [net.mbox_loc, net.mbox_conf, net.mbox_priorbox]
    if use_objectness:
        net.mbox_objectness = L.Concat(*objectness, axis=1)
        outputs.append(net.mbox_objectness)
    return outputs
