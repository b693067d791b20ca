"""pycaffe's Detector: classify windows of images (R-CNN style), each window
cropped (optionally with context around it), warped to the net's input size
and preprocessed as pycaffe does.

    det = caffe.Detector('deploy.prototxt', 'weights.caffemodel', mean=mean, raw_scale=255,
                         channel_swap=(2, 1, 0), context_pad=16)
    dets = det.detect_windows([('img.jpg', [(ymin, xmin, ymax, xmax), ...])])
    # [{'filename': 'img.jpg', 'window': (...), 'prediction': scores}, ...]

Differences: like Classifier, a Detector wraps its caffe.Net (`det.net`)
rather than subclassing it; `images_windows` may be any iterable, a zip
included (pycaffe read it twice, so on Python 3 a zip gave no detections);
window corners are made integers before slicing (pycaffe's context crop
indexed with floats, which current numpy refuses). `detect_selective_search`
needs the external `selective_search_ijcv_with_python` module (and MATLAB),
as in pycaffe; without it, it raises NotImplementedError.
"""
import os

import numpy as np

from . import io as caffe_io
from .classifier import _NetWrapper, _transformer_for


class Detector(_NetWrapper):
    """A TEST-phase net on `model_file` with `pretrained_file`'s weights that
    scores image windows.

    mean, input_scale, raw_scale, channel_swap: the Transformer's settings
        for the first input (see caffe.io.Transformer).
    context_pad: the width, in net-input pixels, of the border of context
        around each window (R-CNN feature extraction uses 16).
    """

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
                 channel_swap=None, context_pad=None):
        self._net = self._open_net(model_file, pretrained_file)
        self.transformer = _transformer_for(self._net, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """Scores (the first output) for each window of each image.

        images_windows: iterable of (image filename, windows), a window being
            (ymin, xmin, ymax, xmax) in pixels.
        Returns a list of {'window', 'prediction', 'filename'} dicts, in order.
        """
        images_windows = [(fname, list(windows)) for fname, windows in images_windows]
        window_inputs = []
        for image_fname, windows in images_windows:
            image = caffe_io.load_image(image_fname).astype(np.float32)
            for window in windows:
                window_inputs.append(self.crop(image, window))
        if not window_inputs:
            raise ValueError('Detector.detect_windows: no windows to score')

        in_ = self.inputs[0]
        caffe_in = np.zeros((len(window_inputs), window_inputs[0].shape[2])
                            + tuple(self.blobs[in_].data.shape[2:]), dtype=np.float32)
        for ix, window_in in enumerate(window_inputs):
            caffe_in[ix] = self.transformer.preprocess(in_, window_in)
        out = self.forward_all(**{in_: caffe_in})
        predictions = out[self.outputs[0]]

        detections = []
        ix = 0
        for image_fname, windows in images_windows:
            for window in windows:
                detections.append({'window': window, 'prediction': predictions[ix], 'filename': image_fname})
                ix += 1
        return detections

    def detect_selective_search(self, image_fnames):
        """detect_windows over Selective Search proposals, as pycaffe computes
        them with the `selective_search_ijcv_with_python` module (which runs
        the original MATLAB code)."""
        try:
            import selective_search_ijcv_with_python as selective_search
        except ImportError as e:
            raise NotImplementedError(
                'Detector.detect_selective_search needs the selective_search_ijcv_with_python module '
                '(https://github.com/sergeyk/selective_search_ijcv_with_python) and MATLAB, which caffe-tch '
                'does not provide (%s); compute windows with another proposal method and call '
                'detect_windows' % e) from None
        # Absolute paths, because MATLAB runs in another working directory.
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows_list = selective_search.get_windows(image_fnames, cmd='selective_search_rcnn')
        return self.detect_windows(list(zip(image_fnames, windows_list)))

    def crop(self, im, window):
        """The window (ymin, xmin, ymax, xmax) of image `im` (H x W x K). With
        `context_pad`, the window is widened so that, once warped to the
        input size, `context_pad` pixels of context surround it; what falls
        outside the image is filled with the mean (in image space)."""
        window = np.asarray(window)
        y0, x0, y1, x1 = (int(v) for v in window[:4])
        crop = im[y0:y1, x0:x1]
        if not self.context_pad:
            return crop

        box = window.astype(np.float64)
        crop_size = int(self.blobs[self.inputs[0]].data.shape[3])  # assumes a square input, as pycaffe
        scale = crop_size / (1. * crop_size - self.context_pad * 2)
        half_h = (box[2] - box[0] + 1) / 2.
        half_w = (box[3] - box[1] + 1) / 2.
        center = (box[0] + half_h, box[1] + half_w)
        scaled_dims = scale * np.array((-half_h, -half_w, half_h, half_w))
        box = np.round(np.tile(center, 2) + scaled_dims)
        full_h = box[2] - box[0] + 1
        full_w = box[3] - box[1] + 1
        scale_h = crop_size / full_h
        scale_w = crop_size / full_w
        pad_y = int(round(max(0, -box[0]) * scale_h))  # how much of the box lies outside the image
        pad_x = int(round(max(0, -box[1]) * scale_w))

        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0., [im_h, im_w, im_h, im_w])
        clip_h = box[2] - box[0] + 1
        clip_w = box[3] - box[1] + 1
        if not (clip_h > 0 and clip_w > 0):
            raise ValueError('Detector.crop: window %s lies outside the %dx%d image' % (tuple(window), im_h, im_w))
        crop_h = int(round(clip_h * scale_h))
        crop_w = int(round(clip_w * scale_w))
        if pad_y + crop_h > crop_size:
            crop_h = crop_size - pad_y
        if pad_x + crop_w > crop_size:
            crop_w = crop_size - pad_x

        b = box.astype(int)
        context_crop = caffe_io.resize_image(im[b[0]:b[2], b[1]:b[3]], (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:(pad_y + crop_h), pad_x:(pad_x + crop_w)] = context_crop
        return crop

    def configure_crop(self, context_pad):
        """Set the crop size (the input's, in image layout H x W x K) and the
        context padding; with padding, also the mean in image space that fills
        the context falling outside an image."""
        in_ = self.inputs[0]
        tpose = self.transformer.transpose[in_]
        inv_tpose = np.argsort(tpose)
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv_tpose]
        self.context_pad = context_pad
        if self.context_pad:
            channel_order = self.transformer.channel_swap.get(in_)
            raw_scale = self.transformer.raw_scale.get(in_)
            mean = self.transformer.mean.get(in_)
            if mean is not None:
                # Undo the preprocessing on the mean: back to H x W x K, the
                # image's channel order, and the image's scale.
                crop_mean = np.array(mean, dtype=np.float64).transpose(inv_tpose)
                if channel_order is not None:
                    crop_mean = crop_mean[:, :, np.argsort(channel_order)]
                if raw_scale is not None:
                    crop_mean /= raw_scale
                self.crop_mean = crop_mean
            else:
                self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
