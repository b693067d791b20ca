"""pycaffe's Classifier: a net that classifies images, with pycaffe's
preprocessing (caffe.io.Transformer) and optional ten-crop oversampling.

    clf = caffe.Classifier('deploy.prototxt', 'weights.caffemodel',
                           mean=np.array([104, 117, 123]), raw_scale=255, channel_swap=(2, 1, 0),
                           image_dims=(256, 256))
    probs = clf.predict([caffe.io.load_image('cat.jpg')])     # N x classes

Differences: a Classifier wraps the caffe.Net it builds instead of
subclassing it. Every attribute of the Net (`blobs`, `params`, `inputs`,
`outputs`, `forward`, `forward_all`...) is reachable on the Classifier, and
the Net itself is `clf.net`; `isinstance(clf, caffe.Net)` is False.
"""
import numpy as np

from . import io as caffe_io


class _NetWrapper(object):
    """Forwards every attribute it does not have to the wrapped caffe.Net."""

    def _open_net(self, model_file, pretrained_file):
        import caffe  # the compiled extension is needed only once a net is built
        return caffe.Net(model_file, caffe.TEST, weights=pretrained_file)

    @property
    def net(self):
        return self.__dict__['_net']

    def __getattr__(self, name):
        net = self.__dict__.get('_net')
        if net is None or name.startswith('__'):
            raise AttributeError(name)
        return getattr(net, name)


def _transformer_for(net, mean, input_scale, raw_scale, channel_swap):
    in_ = net.inputs[0]
    transformer = caffe_io.Transformer({in_: tuple(net.blobs[in_].data.shape)})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(_NetWrapper):
    """A TEST-phase net on `model_file` with `pretrained_file`'s weights that
    predicts class probabilities for images.

    image_dims: (height, width) the images are first resized to (the crops
        are then the net's input size); default: the input size.
    mean, input_scale, raw_scale, channel_swap: the Transformer's settings
        for the first input (see caffe.io.Transformer).
    """

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        self._net = self._open_net(model_file, pretrained_file)
        in_ = self._net.inputs[0]
        self.transformer = _transformer_for(self._net, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self._net.blobs[in_].data.shape[2:])
        if image_dims is None or len(image_dims) == 0:
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs, oversample=True):
        """Class scores (the first output) for a list of H x W x K images:
        N x C. With `oversample` each image's scores are the mean over its ten
        crops (corners, centre, and their mirrors); otherwise over its centre
        crop alone."""
        if len(inputs) == 0:
            raise ValueError('Classifier.predict: no images')
        image_dims = [int(d) for d in self.image_dims]
        channels = np.asarray(inputs[0]).shape[2]
        input_ = np.zeros((len(inputs), image_dims[0], image_dims[1], channels), dtype=np.float32)
        for ix, in_ in enumerate(inputs):
            in_ = np.asarray(in_)
            if in_.ndim != 3 or in_.shape[2] != channels:
                raise ValueError('Classifier.predict: image %d has shape %s; every image must be H x W x %d'
                                 % (ix, in_.shape, channels))
            input_[ix] = caffe_io.resize_image(in_, image_dims)

        crop_dims = np.asarray(self.crop_dims)
        if oversample:
            input_ = caffe_io.oversample(input_, crop_dims)
        else:
            # The centre crop, corners truncated to integers as pycaffe does.
            center = np.array(image_dims) / 2.0
            crop = np.concatenate([center - crop_dims / 2.0, center + crop_dims / 2.0]).astype(int)
            input_ = input_[:, crop[0]:crop[2], crop[1]:crop[3], :]

        in_name = self.inputs[0]
        caffe_in = np.zeros(np.array(input_.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, in_ in enumerate(input_):
            caffe_in[ix] = self.transformer.preprocess(in_name, in_)
        out = self.forward_all(**{in_name: caffe_in})
        predictions = out[self.outputs[0]]

        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions
