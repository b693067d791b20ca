"""Cast a net's fully-connected layers into convolutions, as Caffe's
net_surgery notebook does for CaffeNet: the InnerProduct weights are copied,
unrolled, into Convolution layers of a fully-convolutional twin, which then
scores every window of a larger input in one forward.

    python net_surgery.py FC_DEPLOY FULL_CONV_DEPLOY WEIGHTS IMAGE.npy OUT_DIR
"""
import sys

import numpy as np

import caffe

fc_def, conv_def, weights, image_file, out_dir = sys.argv[1:6]

# The fully-connected parameters.
net = caffe.Net(fc_def, weights, caffe.TEST)
params = ["ip1", "ip2"]
fc_params = {pr: (net.params[pr][0].data, net.params[pr][1].data) for pr in params}
for fc in params:
    print("{} weights are {} dimensional and biases are {} dimensional".format(
        fc, fc_params[fc][0].shape, fc_params[fc][1].shape))

# The fully-convolutional net: the convolutions' weights come from the file,
# the new ones from the surgery below.
net_full_conv = caffe.Net(conv_def, weights, caffe.TEST)
params_full_conv = ["ip1-conv", "ip2-conv"]
conv_params = {pr: (net_full_conv.params[pr][0].data, net_full_conv.params[pr][1].data) for pr in params_full_conv}
for conv in params_full_conv:
    print("{} weights are {} dimensional and biases are {} dimensional".format(
        conv, conv_params[conv][0].shape, conv_params[conv][1].shape))

for pr, pr_conv in zip(params, params_full_conv):
    conv_params[pr_conv][0].flat = fc_params[pr][0].flat  # flat unrolls the arrays
    conv_params[pr_conv][1][...] = fc_params[pr][1]

net_full_conv.save("%s/full_conv.caffemodel" % out_dir)

image = np.load(image_file)
net_full_conv.blobs["data"].data[...] = image
out = net_full_conv.forward()
print("classification map:\n", out["prob"][0].argmax(axis=0))
np.save("%s/full_conv_prob.npy" % out_dir, out["prob"])

# The fully-connected net on the top-left window scores as the map's first position.
net.blobs["data"].reshape(1, 1, 28, 28)
net.blobs["data"].data[...] = image[:, :, :28, :28]
np.save("%s/fc_prob.npy" % out_dir, net.forward()["prob"])
