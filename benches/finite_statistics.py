"""Writes weights for a deploy net whose BatchNorm layers keep finite values:
the fillers' other weights, and every BatchNorm's statistics set to mean 0,
variance 1 (scale factor 1), so it passes values through. A BatchNorm's
statistics are zero until trained, which scales by 1/sqrt(eps) at every such
layer: in a deep net the activations overflow to inf and NaN, and a timing
of that forward measures arithmetic on NaNs, not the net's.
Usage: python3 benches/finite_statistics.py deploy.prototxt out.caffemodel
(prints how many BatchNorm layers it set; 0 writes nothing)
"""
import sys

import caffe


def main():
    model, out = sys.argv[1], sys.argv[2]
    net = caffe.Net(model, caffe.TEST)
    count = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type != "BatchNorm":
            continue
        mean, variance, factor = net.params[name][:3]
        mean.data[...] = 0
        variance.data[...] = 1
        factor.data[...] = 1
        count += 1
    if count:
        net.save(out)
    print(count)


if __name__ == "__main__":
    main()
