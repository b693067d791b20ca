"""pycaffe's `caffe.io`: images in and out of nets, and numpy arrays to and
from Caffe's protobuf messages (BlobProto, BlobProtoVector, Datum).

The interface and results are pycaffe's. pycaffe used scikit-image and SciPy
for image loading and resizing; here Pillow decodes images and the nearest and
bilinear resizing is written with numpy, reproducing what
`skimage.transform.resize` (scikit-image 0.19 and later) and
`scipy.ndimage.zoom` compute for pycaffe's calls; the spline orders (2 to 5)
make the SciPy calls scikit-image makes. What
differs is listed in each function's docstring under "Differences".
"""
import numpy as np

from .proto import caffe_pb2

__all__ = [
    'blobproto_to_array', 'array_to_blobproto', 'arraylist_to_blobprotovector_str',
    'blobprotovector_str_to_arraylist', 'array_to_datum', 'datum_to_array',
    'Transformer', 'load_image', 'resize_image', 'oversample',
]


# ---------------------------------------------------------------- protobuf <-> numpy

def blobproto_to_array(blob, return_diff=False):
    """A BlobProto's data (or its diff, with `return_diff=True`) as a float64
    array of the blob's shape: the legacy num/channels/height/width when any
    of them is set, else `shape.dim`.

    Differences: a blob stored in `double_data`/`double_diff` (which pycaffe
    ignores) or in NVIDIA Caffe's `raw_data` is read too, and a size that does
    not fit the shape is a ValueError naming both.
    """
    values = blob.diff if return_diff else blob.data
    if len(values) == 0:
        # Caffe writes double blobs to the double_* fields; read them rather than return nothing.
        doubles = blob.double_diff if return_diff else blob.double_data
        if len(doubles):
            values = doubles
        elif not return_diff and blob.HasField('raw_data'):
            # NVIDIA Caffe's Type enum: DOUBLE, FLOAT, FLOAT16, INT, UINT.
            dtype = ('<f8', '<f4', '<f2', '<i4', '<u4')[blob.raw_data_type]
            values = np.frombuffer(blob.raw_data, dtype=dtype)
    data = np.array(values, dtype=np.float64)
    if any(blob.HasField(f) for f in ('num', 'channels', 'height', 'width')):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError('BlobProto holds %d %s values, which do not fit its shape %s'
                         % (data.size, 'diff' if return_diff else 'data', shape))
    return data.reshape(shape)


def array_to_blobproto(arr, diff=None):
    """A BlobProto with `arr`'s shape (in `shape.dim`) and values, and `diff`'s
    values when given (it must have `arr`'s shape)."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float64).flat)
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise ValueError('diff has shape %s but the data has shape %s' % (diff.shape, arr.shape))
        blob.diff.extend(diff.astype(np.float64).flat)
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    """The serialized BlobProtoVector of a list of arrays."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


# The misspelt name older pycaffe releases exported.
arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str


def blobprotovector_str_to_arraylist(s):
    """The arrays of a serialized BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(s)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum of a C x H x W array: uint8 arrays go to `data` as bytes (as
    Caffe's image tools store them), any other type to `float_data`. The
    label is set only when given."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError('array_to_datum needs a 3-D (channels, height, width) array, got shape %s'
                         % (arr.shape,))
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).flat)
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum):
    """A Datum's values as a C x H x W array: uint8 from `data`, float64 from
    `float_data` (the label is `datum.label`).

    Differences: an encoded Datum (JPEG/PNG bytes, `encoded: true`) is a
    ValueError rather than a reshape failure.
    """
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        if datum.encoded:
            raise ValueError('datum_to_array: this Datum holds an encoded image (%d bytes of '
                             'JPEG/PNG), not raw pixels; decode datum.data with an image library'
                             % len(datum.data))
        if len(datum.data) != int(np.prod(shape)):
            raise ValueError('Datum holds %d bytes, which do not fit its shape %s' % (len(datum.data), shape))
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    if len(datum.float_data) != int(np.prod(shape)):
        raise ValueError('Datum holds %d float values, which do not fit its shape %s'
                         % (len(datum.float_data), shape))
    return np.array(datum.float_data, dtype=np.float64).reshape(shape)


# ---------------------------------------------------------------- preprocessing

class Transformer:
    """Turns H x W x K images into a net's K x H x W inputs and back, as
    pycaffe's Transformer does.

    `inputs` maps each input blob's name to its shape (N, K, H, W), usually
    `{name: net.blobs[name].data.shape}`. `preprocess` applies, in this order:
    cast to float32, resize to the input's H x W, transpose, channel swap,
    raw scale, mean subtraction, input scale. `deprocess` undoes them in
    reverse (except the resize).

    Differences: `preprocess` never writes into the caller's array (pycaffe's
    may, when the image is already float32 at the right size); a mean whose
    channel count is not the input's is a ValueError at `set_mean`.
    """

    def __init__(self, inputs):
        self.inputs = inputs
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def __check_input(self, in_):
        if in_ not in self.inputs:
            raise ValueError('{} is not one of the net inputs: {}'.format(in_, self.inputs))

    def preprocess(self, in_, data):
        """The net input (K x H x W, float32) for image `data` (H' x W' x K)."""
        self.__check_input(in_)
        caffe_in = np.array(data, dtype=np.float32)  # a copy: the steps below work in place
        in_dims = tuple(self.inputs[in_][2:])
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[list(channel_swap), :, :]
        if raw_scale is not None:
            caffe_in *= raw_scale
        if mean is not None:
            caffe_in -= mean
        if input_scale is not None:
            caffe_in *= input_scale
        return caffe_in

    def deprocess(self, in_, data):
        """The image (H x W x K) for net input `data` (K x H x W, or 1 x K x H x W):
        `preprocess`'s steps undone, last first."""
        self.__check_input(in_)
        decaf_in = np.array(data).squeeze()
        if not np.issubdtype(decaf_in.dtype, np.floating):
            decaf_in = decaf_in.astype(np.float32)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_, order):
        """The axis order taking an image to the input's, e.g. (2, 0, 1) for
        H x W x K to K x H x W."""
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError('Transpose order needs to have the same number of dimensions as the '
                             'input: %s has %d, the order %s has %d'
                             % (in_, len(self.inputs[in_]) - 1, tuple(order), len(order)))
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """The channel order after the transpose, e.g. (2, 1, 0) for RGB to BGR."""
        self.__check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError('Channel swap needs to have the same number of dimensions as the input '
                             'channels: %s has %d channels, the order %s has %d'
                             % (in_, self.inputs[in_][1], tuple(order), len(order)))
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """Multiply the image by `scale` before the mean is subtracted (255 for
        models trained on [0, 255] pixels, since load_image gives [0, 1])."""
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean to subtract: one value per channel (shape (K,)), or a K x H x W
        (or H x W) array, resized to the input's H x W when its size differs."""
        self.__check_input(in_)
        mean = np.asarray(mean)
        in_shape = tuple(self.inputs[in_][1:])
        if mean.ndim == 1:
            if mean.shape[0] != in_shape[0]:
                raise ValueError('Mean channels incompatible with input: the mean has %d values, '
                                 '%s has %d channels' % (mean.shape[0], in_, in_shape[0]))
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if mean.ndim == 2:
                mean = mean[np.newaxis]
            if mean.ndim != 3:
                raise ValueError('Mean shape invalid: %s (expected (K,), (H, W) or (K, H, W))' % (mean.shape,))
            if mean.shape[0] != in_shape[0]:
                raise ValueError('Mean shape %s incompatible with input %s of shape %s'
                                 % (mean.shape, in_, in_shape))
            if mean.shape != in_shape:
                # pycaffe resizes a mean of another size (e.g. a 256x256
                # ImageNet mean for a 227x227 input) through [0, 1].
                m_min, m_max = mean.min(), mean.max()
                if m_max > m_min:
                    normal = (mean - m_min) / (m_max - m_min)
                    mean = resize_image(normal.transpose((1, 2, 0)), in_shape[1:]).transpose((2, 0, 1)) \
                        * (m_max - m_min) + m_min
                else:
                    mean = np.full(in_shape, m_min, dtype=np.float32)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply the input by `scale` after the mean is subtracted."""
        self.__check_input(in_)
        self.input_scale[in_] = scale


# ---------------------------------------------------------------- images

# ITU-R 709 luma weights, the ones skimage's rgb2gray uses for pycaffe's
# `load_image(color=False)`.
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


def load_image(filename, color=True):
    """An image file as float32 in [0, 1]: H x W x 3 RGB when `color`, else
    H x W x 1 intensity (an RGB file is converted with RGB-to-gray luma
    weights). Gray files are tiled to three channels when `color`; an alpha
    channel is dropped.

    Differences: files are decoded by Pillow (pycaffe used scikit-image's
    imageio). Palette images become RGB, gray+alpha files are gray (pycaffe
    returned H x W x 2), a multi-frame file gives its first frame.
    """
    from PIL import Image  # imported here so that `caffe.io` imports without Pillow

    try:
        with Image.open(filename) as im:
            im.load()
            arr = _pil_to_float(im)
    except FileNotFoundError:
        raise FileNotFoundError('load_image: no such file: %s' % (filename,)) from None
    except Image.UnidentifiedImageError as e:
        raise ValueError('load_image: %s is not an image file Pillow can read (%s)' % (filename, e)) from None
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if not color and arr.ndim == 3:
        arr = arr @ _GRAY_WEIGHTS
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
        if color:
            arr = np.tile(arr, (1, 1, 3))
    return arr.astype(np.float32)


def _pil_to_float(im):
    """A decoded Pillow image as float64 in [0, 1] (2-D gray or H x W x 3/4),
    scaled by its integer type's maximum as skimage's img_as_float does."""
    mode = im.mode
    if mode == 'P':
        mode = 'RGBA' if 'transparency' in im.info else 'RGB'
        im = im.convert(mode)
    elif mode == 'PA':
        im, mode = im.convert('RGBA'), 'RGBA'
    elif mode == '1':
        im, mode = im.convert('L'), 'L'
    elif mode == 'LA':
        im, mode = im.convert('L'), 'L'
    elif mode in ('CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBX', 'RGBa'):
        im, mode = im.convert('RGB'), 'RGB'
    arr = np.asarray(im)
    if mode.startswith('I;16'):
        return arr.astype(np.float64) / 65535.0
    if mode == 'I':
        return arr.astype(np.float64) / 2147483647.0
    if mode == 'F':
        return arr.astype(np.float64)
    if arr.dtype != np.uint8:
        raise ValueError('load_image: unsupported image mode %s' % im.mode)
    return arr.astype(np.float64) / 255.0


def resize_image(im, new_dims, interp_order=1):
    """`im` (H x W x K) resized to `new_dims` (height, width), as float32.

    With 1 or 3 channels the result is scikit-image's `resize` of the image
    mapped to [0, 1] (and back), with zero padding at the borders in that
    range, i.e. pixels near the border are pulled towards the image's minimum
    when upsampling, and with its Gaussian anti-aliasing when an axis shrinks,
    exactly as pycaffe's call computes it on scikit-image >= 0.19. Other channel
    counts use SciPy's `zoom` mapping (corners aligned). A constant image
    stays constant.

    `interp_order`: 0 (nearest), 1 (bilinear, the default), or 2 to 5 (the
    splines of that order, computed by SciPy's `ndimage` as scikit-image
    and pycaffe compute them).
    """
    im = np.asarray(im)
    if im.ndim != 3:
        raise ValueError('resize_image needs an H x W x K array, got shape %s' % (im.shape,))
    new_dims = tuple(int(d) for d in new_dims)
    if len(new_dims) != 2 or min(new_dims) < 1:
        raise ValueError('resize_image: new_dims must be (height, width) of positive sizes, got %s' % (new_dims,))
    if interp_order not in (0, 1, 2, 3, 4, 5):
        raise ValueError('resize_image: interp_order must be 0 to 5 (a spline order), got %r' % (interp_order,))
    if min(im.shape[:2]) < 1:
        raise ValueError('resize_image: cannot resize an empty image of shape %s' % (im.shape,))
    if im.shape[-1] in (1, 3):
        im_min, im_max = float(im.min()), float(im.max())
        if not im_max > im_min:
            return np.full(new_dims + (im.shape[-1],), im_min, dtype=np.float32)
        im_std = (im.astype(np.float64) - im_min) / (im_max - im_min)
        if interp_order > 1:
            resized = np.clip(_spline_grid_resize(im_std, new_dims, interp_order), 0.0, 1.0)
            return (resized * (im_max - im_min) + im_min).astype(np.float32)
        # scikit-image's resize(im_std, new_dims, order, mode='constant').
        ops = [_grid_operator(n, size, interp_order) for n, size in zip(im.shape[:2], new_dims)]
        resized = np.clip(_apply_separable(im_std, *ops), 0.0, 1.0)
        return (resized * (im_max - im_min) + im_min).astype(np.float32)
    if interp_order > 1:
        scale = tuple(np.array(new_dims, dtype=float) / np.array(im.shape[:2]))
        return _ndimage().zoom(im, scale + (1,), order=interp_order).astype(np.float32)
    ops = [_corner_operator(n, size, interp_order) for n, size in zip(im.shape[:2], new_dims)]
    return _apply_separable(im.astype(np.float64), *ops).astype(np.float32)


def _ndimage():
    """SciPy's ndimage, which the spline orders need (as pycaffe's did)."""
    try:
        from scipy import ndimage
    except ImportError as e:
        raise ImportError('resize_image: interp_order 2 to 5 needs SciPy (pip install scipy): %s' % e) from e
    return ndimage


def _spline_grid_resize(im, new_dims, order):
    """scikit-image's resize (>= 0.19) of an H x W x K float image with
    mode='constant' at spline order 2 to 5, by the SciPy calls it makes:
    when an axis shrinks, Gaussian anti-aliasing of sigma (n/size - 1)/2 on
    every axis; then ndimage.zoom with grid_mode=True; both padding with
    zeros ('grid-constant')."""
    ndimage = _ndimage()
    factors = np.array(im.shape, dtype=float) / np.array(tuple(new_dims) + (im.shape[2],), dtype=float)
    if np.any(factors > 1):
        im = ndimage.gaussian_filter(im, np.maximum(0, (factors - 1) / 2), cval=0, mode='grid-constant')
    return ndimage.zoom(im, 1 / factors, order=order, mode='grid-constant', cval=0, grid_mode=True)


# Both resizes are separable and linear along each axis, so each axis is one
# (new size x old size) matrix, and an image costs two matrix products
# however wide the anti-aliasing Gaussian is.

def _apply_separable(im, rows, cols):
    """`rows` (h x H) applied along axis 0 and `cols` (w x W) along axis 1 of
    an H x W x K image."""
    h, w, k = im.shape
    out = (rows @ im.reshape(h, w * k)).reshape(rows.shape[0], w, k)
    return np.einsum('ywk,xw->yxk', out, cols, optimize=True)


def _taps(coords, order):
    """(index, weight) pairs sampling positions `coords`: nearest (order 0,
    ties rounding up, as ndimage) or linear (order 1)."""
    if order == 0:
        return [(np.floor(coords + 0.5).astype(np.int64), np.ones_like(coords))]
    i0 = np.floor(coords).astype(np.int64)
    w = coords - i0
    return [(i0, 1.0 - w), (i0 + 1, w)]


def _operator(n, coords, order, kernel=None):
    """The matrix sampling a length-n signal, first filtered with `kernel`
    (centred, zero padding), at `coords`; samples outside [0, n) read zero."""
    size = len(coords)
    op = np.zeros((size, n))
    rows = np.arange(size)
    if kernel is None:
        kernel = np.ones(1)
    radius = len(kernel) // 2
    for idx, weight in _taps(coords, order):
        valid = (idx >= 0) & (idx < n)
        for k, g in enumerate(kernel, start=-radius):
            cols = idx + k
            ok = valid & (cols >= 0) & (cols < n)
            np.add.at(op, (rows[ok], cols[ok]), weight[ok] * g)
    return op


def _grid_operator(n, size, order):
    """One axis of scikit-image's resize (>= 0.19) with mode='constant': when
    the axis shrinks, a Gaussian of sigma (n/size - 1)/2 (scipy's
    gaussian_filter: truncated at 4 sigma, zero padding); then ndimage.zoom
    with grid_mode=True and 'grid-constant' padding: output pixel centres map
    to input positions (o + 0.5) * n/size - 0.5, outside reading zero."""
    kernel = None
    if size < n:
        sigma = (n / size - 1) / 2
        radius = int(4.0 * sigma + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 / (sigma * sigma) * x * x)
        kernel /= kernel.sum()
    coords = (np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5
    return _operator(n, coords, order, kernel)


def _corner_operator(n, size, order):
    """One axis of ndimage.zoom without grid_mode: the first and last pixels
    of input and output coincide."""
    scale = (n - 1) / (size - 1) if size > 1 else 0.0
    # The last position can land a rounding error past n - 1; it is the last pixel.
    coords = np.minimum(np.arange(size, dtype=np.float64) * scale, n - 1)
    return _operator(n, coords, order)


def oversample(images, crop_dims):
    """The ten crops of each image, as pycaffe's Classifier uses them: the four
    corners and the centre, then the same five mirrored left-right.

    `images`: a sequence (or N x H x W x K array) of same-sized H x W x K
    images; `crop_dims`: (height, width). Returns 10*N x h x w x K float32.
    """
    if len(images) == 0:
        raise ValueError('oversample: no images')
    im_shape = np.asarray(images[0]).shape
    if len(im_shape) != 3:
        raise ValueError('oversample needs H x W x K images, got shape %s' % (im_shape,))
    ch, cw = (int(d) for d in crop_dims)
    h, w = im_shape[:2]
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError('oversample: crop %dx%d does not fit images of %dx%d' % (ch, cw, h, w))
    # Centre crop: pycaffe truncates centre +- crop/2 towards zero.
    cy, cx = int(h / 2.0 - ch / 2.0), int(w / 2.0 - cw / 2.0)
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (cy, cx)]
    crops = np.empty((10 * len(images), ch, cw, im_shape[2]), dtype=np.float32)
    ix = 0
    for im in images:
        im = np.asarray(im)
        if im.shape != im_shape:
            raise ValueError('oversample: images differ in shape (%s and %s)' % (im_shape, im.shape))
        for y, x in corners:
            crops[ix] = im[y:y + ch, x:x + cw, :]
            crops[ix + 5] = crops[ix, :, ::-1, :]
            ix += 1
        ix += 5
    return crops
