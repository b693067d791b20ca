"""Image decoding against OpenCV's: the pixels caffe-tch's readers give
(ImageData, convert_imageset, encoded Datums) equal cv2.imread's, as Caffe's
ReadImageToCVMat and DecodeDatumToCVMat call it, for every format and layout
read here. Files are written by OpenCV and Pillow; the net's data blob must
equal cv2.imread with IMREAD_COLOR (is_color: true) or IMREAD_GRAYSCALE."""
import io

import numpy as np
import pytest

from conftest import need, run_caffe
from gif_writer import gif_bytes
from tiff_writer import random_rgba16, rgba_tiff

cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")


def _photo(h=37, w=53, seed=0):
    """A photo-like BGR image: gradients, a flat patch, an edge and noise,
    so that JPEG's chroma subsampling and IDCT rounding both show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 5 + y) % 256, (y * 7) % 256, ((x - y) * 3) % 256], -1).astype(np.float64)
    img += rng.normal(0, 25, img.shape)
    img[h // 4 : h // 2, w // 3 : 2 * w // 3] = [30, 200, 90]
    return np.clip(img, 0, 255).astype(np.uint8)


def _grey(img):
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def _cv2_files(d):
    img, rng = _photo(), np.random.default_rng(1)
    deep = (img.astype(np.uint16) * 257 + rng.integers(0, 257, img.shape)).astype(np.uint16)
    J = cv2.IMWRITE_JPEG_SAMPLING_FACTOR
    files = {
        "420.jpg": (img, [cv2.IMWRITE_JPEG_QUALITY, 90]),
        "444.jpg": (img, [J, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
        "422.jpg": (img, [cv2.IMWRITE_JPEG_QUALITY, 70, J, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]),
        "progressive.jpg": (img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "grey.jpg": (_grey(img), []),
        "colour.png": (img, []),
        "grey.png": (_grey(img), []),
        "deep.png": (deep, []),
        "deep_grey.png": (_grey(deep), []),
        "colour.bmp": (img, []),
        "grey.bmp": (_grey(img), []),
        "colour.ppm": (img, []),
        "grey.pgm": (_grey(img), []),
        "deep.pgm": (_grey(deep), []),
        "colour.tif": (img, []),
        "grey.tif": (_grey(img), []),
        "deep.tif": (deep, []),
        "lossless.webp": (img, [cv2.IMWRITE_WEBP_QUALITY, 101]),
        "lossy.webp": (img, [cv2.IMWRITE_WEBP_QUALITY, 75]),
        "colour.jp2": (img, []),
        "grey.jp2": (_grey(img), []),
        "deep.jp2": (deep, []),
        "colour.pam": (img, []),
        "grey.pam": (_grey(img), []),
        "colour.ras": (img, []),
        "grey.ras": (_grey(img), []),
        "odd.ras": (img[:, :-2], []),
        "colour.hdr": (_radiance(img.shape[:2], seed=11), []),
        "flat.hdr": (_radiance((5, 7), seed=12), []),
        "uncompressed.hdr": (_radiance((6, 9), seed=13), [cv2.IMWRITE_HDR_COMPRESSION, cv2.IMWRITE_HDR_COMPRESSION_NONE]),
    }
    for name, (pixels, params) in files.items():
        assert cv2.imwrite(str(d / name), pixels, params), name
    return list(files)


def _radiance(shape, seed):
    """Float BGR pixels over the range an 8-bit read cuts: dark, within
    [0, 1], past 1 (255 after scaling) and past 2^31/255, where OpenCV's
    rounding overflows and it gives 0."""
    rng = np.random.default_rng(seed)
    f = rng.random(shape + (3,)).astype(np.float32) * 1.5
    f[0, 0] = [1e-30, 0.0, 3e-3]
    f[-1, -1] = [9e6, 1.0, 0.5]
    f[-1, -2] = [0.2, 1e30, 0.1]
    return f


def _as_sycc(rgb):
    """A JP2 file whose colour box says sYCC (enumerated colour space 18):
    OpenJPEG hands its three components over as they are, and OpenCV reads
    them as Y, U, V."""
    out = io.BytesIO()
    rgb.save(out, format="JPEG2000", mct=0)
    data = bytearray(out.getvalue())
    colr = data.find(b"colr")
    assert data[colr + 4] == 1 and int.from_bytes(data[colr + 7 : colr + 11], "big") == 16
    data[colr + 7 : colr + 11] = (18).to_bytes(4, "big")
    return bytes(data)


def _sun_raster(width, height, depth, rows, colour_map=b"", kind=1):
    """A Sun raster file: big-endian header, colour map (reds, greens, blues), rows padded to even lengths."""
    pitch = ((width * depth + 7) // 8 + 1) & ~1
    body = b"".join(r.ljust(pitch, b"\0") for r in rows)
    header = [0x59A66A95, width, height, depth, len(body), kind, 1 if colour_map else 0, len(colour_map)]
    return b"".join(v.to_bytes(4, "big") for v in header) + colour_map + body


def _radiance_by_hand(d):
    """RGBE files OpenCV's writer does not make: the #?RGBE signature with a
    comment, and run-length scanlines that stop partway (the rest flat)."""
    rng = np.random.default_rng(14)
    pixels = rng.integers(0, 256, (4, 10, 4), dtype=np.uint8)
    pixels[..., 3] = rng.integers(120, 140, (4, 10))
    head = b"#?RGBE\n# made by hand\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 10\n"
    first = b"\x02\x02\x00\x0a" + b"".join(b"\x0a" + bytes(pixels[0, :, c]) for c in range(4))
    (d / "partly_rle.hdr").write_bytes(head + first + pixels[1:].tobytes())
    return ["partly_rle.hdr"]


def _sun_rasters_by_hand(d):
    """Sun rasters cv2.imwrite does not make: colour maps (colour and grey)
    at depths 1 and 8, and 32-bit pixels."""
    rng = np.random.default_rng(15)
    w, h = 19, 11
    index8 = [bytes(rng.integers(0, 256, w, dtype=np.uint8)) for _ in range(h)]
    index1 = [bytes(rng.integers(0, 256, (w + 7) // 8, dtype=np.uint8)) for _ in range(h)]
    colours = bytes(rng.integers(0, 256, 3 * 200, dtype=np.uint8))
    greys = bytes(rng.integers(0, 256, 256, dtype=np.uint8)) * 3
    files = {
        "map8.ras": _sun_raster(w, h, 8, index8, colours),
        "grey_map8.ras": _sun_raster(w, h, 8, index8, greys),
        "map1.ras": _sun_raster(w, h, 1, index1, bytes([10, 200, 20, 100, 30, 50])),
        "plain1.ras": _sun_raster(w, h, 1, index1),
        "xbgr32.ras": _sun_raster(w, h, 32, [bytes(rng.integers(0, 256, 4 * w, dtype=np.uint8)) for _ in range(h)], kind=0),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return list(files)


def _pam_by_hand(d):
    """A PAM that says TUPLTYPE RGB: OpenCV still copies its samples as B,
    G, R in colour (as for its own files, which have no TUPLTYPE), and weighs
    them as R, G, B in grey. RGBA and 16-bit grey+alpha ones: colour from
    the first samples, grey the first sample alone."""
    px = np.random.default_rng(16).integers(0, 256, (9, 14, 3), dtype=np.uint8)
    head = b"P7\n# by hand\nWIDTH 14\nHEIGHT 9\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n"
    (d / "rgb_tupltype.pam").write_bytes(head + px.tobytes())
    rgba = np.random.default_rng(17).integers(0, 256, (9, 14, 4), dtype=np.uint8)
    head = b"P7\nWIDTH 14\nHEIGHT 9\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
    (d / "rgba.pam").write_bytes(head + rgba.tobytes())
    grey_alpha = (np.random.default_rng(18).integers(0, 65536, (9, 14, 2))).astype(">u2")
    head = b"P7\nWIDTH 14\nHEIGHT 9\nDEPTH 2\nMAXVAL 65535\nTUPLTYPE GRAYSCALE_ALPHA\nENDHDR\n"
    (d / "grey_alpha16.pam").write_bytes(head + grey_alpha.tobytes())
    return ["rgb_tupltype.pam", "rgba.pam", "grey_alpha16.pam"]


def _pillow_files(d):
    rgb = Image.fromarray(_photo(seed=2)[..., ::-1].copy())
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.random.default_rng(3).integers(0, 256, rgb.size[::-1], dtype=np.uint8)))
    files = {
        "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p, quality=90),
        "palette.png": lambda p: rgb.quantize(64).save(p),
        "grey_alpha.png": lambda p: rgba.convert("LA").save(p),
        "rgba.png": lambda p: rgba.save(p),
        "bilevel.png": lambda p: rgb.convert("1").save(p),
        "palette.bmp": lambda p: rgb.quantize(200).save(p),
        "bilevel.pbm": lambda p: rgb.convert("1").save(p),
        "rgba.tif": lambda p: rgba.save(p),
        "rgba.webp": lambda p: rgba.save(p, lossless=True),
        "irreversible.jp2": lambda p: rgb.save(p, irreversible=True, quality_mode="rates", quality_layers=[20]),
        "codestream.j2k": lambda p: rgb.save(p),
        "grey_pillow.jp2": lambda p: rgb.convert("L").save(p),
        "rgba.jp2": lambda p: rgba.save(p),
        "grey_alpha.jp2": lambda p: rgba.convert("LA").save(p),
        "tiled.jp2": lambda p: rgb.save(p, tile_size=(32, 32)),
        "sycc.jp2": lambda p: open(p, "wb").write(_as_sycc(rgb)),
        # 16-bit RGBA: libtiff's RGBA interface narrows, then premultiplies an
        # unassociated alpha.
        "rgba16_unassociated.tif": lambda p: open(p, "wb").write(rgba_tiff(random_rgba16(13, 17, 11), 2)),
        "rgba16_associated.tif": lambda p: open(p, "wb").write(rgba_tiff(random_rgba16(13, 17, 12), 1)),
    }
    for name, write in files.items():
        write(str(d / name))
    return list(files)


def _gif_files(d):
    """GIFs as Pillow writes them (LZW-compressed, interlaced or not, a
    transparent index) and written field by field (a frame offset in a larger
    screen over a background colour, local and global palettes)."""
    rgb = Image.fromarray(_photo(seed=9)[..., ::-1].copy())
    rng = np.random.default_rng(10)
    palette16 = rng.integers(0, 256, 48, dtype=np.uint8).tobytes()
    palette4 = rng.integers(0, 256, 12, dtype=np.uint8).tobytes()
    frame = [int(i) for i in rng.integers(0, 16, 20 * 10)]
    files = {
        "palette.gif": lambda p: rgb.quantize(64).save(p),
        "interlaced.gif": lambda p: rgb.quantize(200).save(p, interlace=True),
        "grey.gif": lambda p: rgb.convert("L").save(p),
        "transparent.gif": lambda p: rgb.quantize(32).save(p, transparency=5),
        "offset.gif": lambda p: open(p, "wb").write(
            gif_bytes((40, 30), (7, 5, 20, 10), frame, palette16, background=3, local_palette=palette4, transparent=2)
        ),
        "offset_global.gif": lambda p: open(p, "wb").write(
            gif_bytes((23, 31), (0, 21, 20, 10), frame, palette16, background=15, transparent=0)
        ),
        "local_only.gif": lambda p: open(p, "wb").write(
            gif_bytes((20, 10), (0, 0, 20, 10), [i % 4 for i in frame], local_palette=palette4)
        ),
    }
    for name, write in files.items():
        write(str(d / name))
    return list(files)


def _oriented_files(d):
    """One JPEG per Exif orientation (1 to 8), as a camera writes them, and
    PNG and WebP files with one (OpenCV 4 turns those upright too)."""
    rgb = Image.fromarray(_photo(29, 41, seed=4)[..., ::-1].copy())
    names = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        name = "exif%d.jpg" % orientation
        rgb.save(str(d / name), exif=exif.tobytes(), quality=92)
        names.append(name)
    for name, options in (("exif6.png", {}), ("exif8.webp", {"lossless": True}), ("exif3.webp", {"quality": 70})):
        exif = Image.Exif()
        exif[0x0112] = int(name[4])
        rgb.save(str(d / name), exif=exif.tobytes(), **options)
        names.append(name)
    return names


def _read_with_image_data(d, name, is_color, resize=None):
    import caffe

    (d / "list.txt").write_text("%s 0\n" % name)
    net_file = d / "net.prototxt"
    size = "new_height: %d new_width: %d" % resize if resize else ""
    net_file.write_text(
        'layer { name: "d" type: "ImageData" top: "data" top: "label" '
        'image_data_param { source: "%s" root_folder: "%s/" batch_size: 1 is_color: %s %s } }'
        % (d / "list.txt", d, "true" if is_color else "false", size)
    )
    net = caffe.Net(str(net_file), caffe.TEST)
    net.forward()
    return net.blobs["data"].data[0].copy()


# Sun rasters without a colour map that OpenCV reads as black in grey (its
# grey path fills its lookup table only from a map); caffe-tch gives the
# pixels, OpenCV's colour read turned grey (a grey ramp, so the same values).
_BLACK_IN_OPENCV_GREY = {"grey.ras", "plain1.ras"}


def _expected(path, is_color):
    flags = cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE
    if not is_color and path.name in _BLACK_IN_OPENCV_GREY:
        assert not cv2.imread(str(path), flags).any(), "OpenCV now reads %s in grey" % path.name
        flags = cv2.IMREAD_COLOR
        ref = cv2.imread(str(path), flags)[..., 0]
        return ref[None].astype(np.float32)
    ref = cv2.imread(str(path), flags)
    assert ref is not None, path
    return (ref.transpose(2, 0, 1) if ref.ndim == 3 else ref[None]).astype(np.float32)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    names = _cv2_files(d) + _pillow_files(d) + _gif_files(d) + _oriented_files(d)
    names += _sun_rasters_by_hand(d) + _radiance_by_hand(d) + _pam_by_hand(d)
    return d, names


@pytest.mark.parametrize("is_color", [True, False], ids=["colour", "grey"])
def test_every_format_decodes_as_opencv_does(image_dir, is_color):
    d, names = image_dir
    wrong = []
    for name in names:
        got = _read_with_image_data(d, name, is_color)
        want = _expected(d / name, is_color)
        if got.shape != want.shape:
            wrong.append("%s: shape %s, OpenCV %s" % (name, got.shape, want.shape))
        elif not np.array_equal(got, want):
            diff = np.abs(got - want)
            wrong.append("%s: %d pixels differ, by up to %d" % (name, (diff > 0).sum(), diff.max()))
    assert not wrong, "\n".join(wrong)


def test_resized_reads_equal_opencv_resize(image_dir):
    """ImageData's new_height/new_width (ReadImageToCVMat: imread, then
    cv::resize with INTER_LINEAR) give OpenCV's pixels, bit for bit, shrinking
    and enlarging, by exact halves and by odd ratios, in colour and grey."""
    d, _ = image_dir
    src = _photo(61, 83, seed=8)
    cv2.imwrite(str(d / "big.png"), src)
    wrong = []
    for h, w in [(227, 227), (30, 41), (61, 40), (31, 42), (1, 1), (7, 200), (122, 166), (256, 256)]:
        for is_color in (True, False):
            got = _read_with_image_data(d, "big.png", is_color, (h, w))
            ref = cv2.imread(str(d / "big.png"), cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
            ref = cv2.resize(ref, (w, h), interpolation=cv2.INTER_LINEAR)
            ref = (ref.transpose(2, 0, 1) if ref.ndim == 3 else ref[None]).astype(np.float32)
            if got.shape != ref.shape or not np.array_equal(got, ref):
                wrong.append("%dx%d colour=%s: %d pixels differ" % (h, w, is_color, (got != ref).sum() if got.shape == ref.shape else -1))
    assert not wrong, "\n".join(wrong)


def test_exif_orientation_turns_the_image_upright(image_dir):
    d, _ = image_dir
    upright = _read_with_image_data(d, "exif1.jpg", True)
    for orientation in (6, 8):
        turned = _read_with_image_data(d, "exif%d.jpg" % orientation, True)
        assert turned.shape == (3, upright.shape[2], upright.shape[1])


def test_encoded_datums_decode_as_imdecode_with_anycolor(tmp_path):
    """convert_imageset -encoded keeps the files' bytes; the Data layer decodes
    them as Caffe's DecodeDatumToCVMatNative (imdecode, IMREAD_ANYCOLOR): a
    grey JPEG stays one channel, a colour one is BGR."""
    import caffe

    need(True, "")
    img = _photo(32, 32, seed=5)
    cv2.imwrite(str(tmp_path / "a.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    (tmp_path / "list.txt").write_text("a.jpg 3\n")
    run_caffe("convert_imageset", "-encoded", str(tmp_path) + "/", tmp_path / "list.txt", tmp_path / "db")
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "d" type: "Data" top: "data" top: "label" '
        'data_param { source: "%s" backend: LMDB batch_size: 1 } }' % (tmp_path / "db")
    )
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST)
    net.forward()
    data = (tmp_path / "a.jpg").read_bytes()
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR).transpose(2, 0, 1)
    np.testing.assert_array_equal(net.blobs["data"].data[0], want)
    assert net.blobs["label"].data[0] == 3


def test_grey_codestream_read_in_colour_fails_as_in_opencv(tmp_path):
    """A bare JPEG 2000 codestream declares no colour space; OpenCV takes it
    as sRGB and cannot make colour of one component, so Caffe could not load
    it with is_color: true. caffe-tch refuses it with an error naming the
    file; in grey both read it."""
    Image.fromarray(_photo(40, 40, seed=7)).convert("L").save(str(tmp_path / "grey.j2k"))
    assert cv2.imread(str(tmp_path / "grey.j2k"), cv2.IMREAD_COLOR) is None
    with pytest.raises(ValueError, match=r"grey\.j2k: JPEG 2000 image not read \(OpenCV refuses it too\): a colour read of 1 components"):
        _read_with_image_data(tmp_path, "grey.j2k", True)
    np.testing.assert_array_equal(_read_with_image_data(tmp_path, "grey.j2k", False), _expected(tmp_path / "grey.j2k", False))


def test_truncated_jpeg_decodes_what_is_there_as_opencv(tmp_path):
    """A JPEG cut short: libjpeg warns and fills the rest, and OpenCV returns
    the image; so does caffe-tch (Caffe trained on such files)."""
    data = io.BytesIO()
    Image.fromarray(_photo(40, 40, seed=6)).save(data, format="JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) * 2 // 3])
    got = _read_with_image_data(tmp_path, "cut.jpg", True)
    np.testing.assert_array_equal(got, _expected(tmp_path / "cut.jpg", True))
