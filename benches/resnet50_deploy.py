"""Prints ResNet-50's deploy prototxt in the layout of the model zoo's
ResNet-50-deploy.prototxt (He et al.): layer names, BatchNorm with global
statistics and a Scale with bias after every convolution, in-place ReLUs,
the stride on each stage's first 1x1 convolution. No weights: the timing
benches run it on the net's fillers (constant 0).
Usage: python3 benches/resnet50_deploy.py [BATCH] > resnet50_deploy.prototxt
"""
import sys


def layer(kind, name, bottom, top, body=""):
    out = 'layer {\n  name: "%s"\n  type: "%s"\n  bottom: "%s"\n  top: "%s"\n' % (name, kind, bottom, top)
    return out + body + "}\n"


def conv_bn(name, suffix, bottom, outputs, kernel, stride, pad, relu):
    """A convolution (no bias), its BatchNorm and Scale in place, and a ReLU."""
    conv = "res" + name + suffix if name[0].isdigit() else name
    bn = ("bn" + name + suffix) if name[0].isdigit() else "bn_" + name
    scale = ("scale" + name + suffix) if name[0].isdigit() else "scale_" + name
    param = "  convolution_param {\n    num_output: %d\n    kernel_size: %d\n    stride: %d\n    pad: %d\n    bias_term: false\n  }\n" % (
        outputs, kernel, stride, pad)
    text = layer("Convolution", conv, bottom, conv, param)
    text += layer("BatchNorm", bn, conv, conv, "  batch_norm_param {\n    use_global_stats: true\n  }\n")
    text += layer("Scale", scale, conv, conv, "  scale_param {\n    bias_term: true\n  }\n")
    if relu:
        text += layer("ReLU", conv + "_relu", conv, conv)
    return text, conv


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    text = 'name: "ResNet-50"\ninput: "data"\ninput_dim: %d\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n' % batch
    t, top = conv_bn("conv1", "", "data", 64, 7, 2, 3, True)
    text += t
    text += layer("Pooling", "pool1", top, "pool1", "  pooling_param {\n    kernel_size: 3\n    stride: 2\n    pool: MAX\n  }\n")
    top = "pool1"
    for stage, blocks, width in ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)):
        for b in range(blocks):
            name = "%d%s" % (stage, "abcdef"[b])
            stride = 2 if b == 0 and stage > 2 else 1
            shortcut = top
            if b == 0:
                t, shortcut = conv_bn(name, "_branch1", top, width * 4, 1, stride, 0, False)
                text += t
            t, x = conv_bn(name, "_branch2a", top, width, 1, stride, 0, True)
            text += t
            t, x = conv_bn(name, "_branch2b", x, width, 3, 1, 1, True)
            text += t
            t, x = conv_bn(name, "_branch2c", x, width * 4, 1, 1, 0, False)
            text += t
            out = "res" + name
            text += ('layer {\n  name: "%s"\n  type: "Eltwise"\n  bottom: "%s"\n  bottom: "%s"\n  top: "%s"\n}\n'
                     % (out, shortcut, x, out))
            text += layer("ReLU", out + "_relu", out, out)
            top = out
    text += layer("Pooling", "pool5", top, "pool5", "  pooling_param {\n    kernel_size: 7\n    stride: 1\n    pool: AVE\n  }\n")
    text += layer("InnerProduct", "fc1000", "pool5", "fc1000", "  inner_product_param {\n    num_output: 1000\n  }\n")
    text += layer("Softmax", "prob", "fc1000", "prob")
    sys.stdout.write(text)


main()
