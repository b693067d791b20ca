"""A one-strip, uncompressed RGBA TIFF written field by field, for the
decoding tests (test_image_decoding.py): 16-bit samples with the alpha
declared unassociated or associated (ExtraSamples 2 or 1), which neither
Pillow nor OpenCV writes."""
import struct

import numpy as np


def rgba_tiff(pixels, extra_sample):
    """pixels: H x W x 4 uint16; extra_sample: 1 associated, 2 unassociated."""
    h, w, _ = pixels.shape
    data = pixels.astype("<u2").tobytes()
    # Header, then the pixel data, then the BitsPerSample values, then the IFD.
    bits_at = 8 + len(data)
    ifd_at = bits_at + 8
    short, long_ = 3, 4
    tags = [
        (256, long_, 1, w),  # ImageWidth
        (257, long_, 1, h),  # ImageLength
        (258, short, 4, bits_at),  # BitsPerSample: 16 x 4, stored apart
        (259, short, 1, 1),  # Compression: none
        (262, short, 1, 2),  # PhotometricInterpretation: RGB
        (273, long_, 1, 8),  # StripOffsets
        (277, short, 1, 4),  # SamplesPerPixel
        (278, long_, 1, h),  # RowsPerStrip
        (279, long_, 1, len(data)),  # StripByteCounts
        (284, short, 1, 1),  # PlanarConfiguration: contiguous
        (338, short, 1, extra_sample),  # ExtraSamples
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        packed = struct.pack("<H", value) + b"\0\0" if kind == short and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + data + struct.pack("<4H", 16, 16, 16, 16) + ifd


def random_rgba16(h, w, seed):
    return np.random.default_rng(seed).integers(0, 65536, (h, w, 4)).astype(np.uint16)
