"""Classify an image the way Caffe's 00-classification notebook does, as a
pycaffe user writes it: Transformer (transpose, mean, raw scale, channel
swap), a batch of copies, forward, top-5.

    python classify.py DEPLOY WEIGHTS IMAGE OUT_DIR
"""
import sys

import numpy as np

import caffe

model_def, model_weights, image_file, out_dir = sys.argv[1:5]

caffe.set_mode_cpu()
net = caffe.Net(model_def, model_weights, caffe.TEST)

# The mean pixel (BGR), as the notebook gets it from the ImageNet mean.
mu = np.array([113.9, 123.0, 125.3])
transformer = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
transformer.set_transpose("data", (2, 0, 1))  # H x W x C -> C x H x W
transformer.set_mean("data", mu)  # per channel
transformer.set_raw_scale("data", 255)  # [0, 1] -> [0, 255]
transformer.set_channel_swap("data", (2, 1, 0))  # RGB -> BGR

height, width = net.blobs["data"].data.shape[2:]
net.blobs["data"].reshape(5, 3, height, width)  # a batch of five copies

image = caffe.io.load_image(image_file)
image = caffe.io.resize_image(image, (height, width))
net.blobs["data"].data[...] = transformer.preprocess("data", image)

output = net.forward()
output_prob = output["prob"][0]
print("predicted class is:", output_prob.argmax())
top_inds = output_prob.argsort()[::-1][:5]
print("top 5:", list(zip(output_prob[top_inds], top_inds)))

np.save("%s/input.npy" % out_dir, net.blobs["data"].data)
np.save("%s/prob.npy" % out_dir, output["prob"])
np.save("%s/top5.npy" % out_dir, top_inds)
