"""Seeds that need building rather than copying (called by fuzz/seeds.sh):
Datum records in the datum target's input layout, and packed LevelDB folders
for the leveldb target. Usage: seeds_built.py CORPUS_DIR [LEVELDB_DIR ...]"""
import io
import os
import struct
import sys
import zlib

corpus = sys.argv[1]


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def datum(channels=0, height=0, width=0, data=None, label=3, floats=None, encoded=False):
    out = b""
    if channels:
        out += field(1, 0, varint(channels)) + field(2, 0, varint(height)) + field(3, 0, varint(width))
    if data is not None:
        out += field(4, 2, varint(len(data)) + data)
    out += field(5, 0, varint(label))
    for v in floats or []:
        out += field(6, 5, struct.pack("<f", v))
    if encoded:
        out += field(7, 0, varint(1))
    return out


def png(width, height, channels):
    """A minimal PNG (8-bit grey or RGB) written by hand."""
    color = {1: 0, 3: 2}[channels]
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + c) % 256 for x in range(width) for c in range(channels)) for y in range(height))
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def pillow_images():
    """Small files in every format the decoder reads beyond hand-made PNG:
    JPEG (baseline, progressive, CMYK, with an Exif orientation), BMP, PNM,
    TIFF, WebP, GIF, a 16-bit PNG and JPEG 2000 (file and codestream; none
    when Pillow is missing)."""
    try:
        from PIL import Image
    except ImportError:
        return []
    rgb = Image.new("RGB", (8, 6), (200, 100, 50))
    rgb.putpixel((3, 2), (10, 250, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    saves = [
        (rgb, "JPEG", {}),
        (rgb, "JPEG", {"progressive": True}),
        (rgb.convert("CMYK"), "JPEG", {}),
        (rgb, "JPEG", {"exif": exif.tobytes()}),
        (rgb, "BMP", {}),
        (rgb.quantize(8), "BMP", {}),
        (rgb, "PPM", {}),
        (rgb.convert("L"), "PPM", {}),
        (rgb.convert("RGBA"), "TIFF", {}),
        (rgb, "WEBP", {"lossless": True}),
        (rgb, "WEBP", {"quality": 50}),
        (rgb.convert("I;16"), "PNG", {}),
        (rgb.quantize(8), "GIF", {}),
        (rgb.quantize(8), "GIF", {"interlace": True, "transparency": 2}),
        (rgb.resize((33, 32)), "JPEG2000", {"irreversible": True}),
        (rgb.resize((32, 32)).convert("L"), "JPEG2000", {"no_jp2": True}),
    ]
    out = []
    for image, kind, options in saves:
        buf = io.BytesIO()
        image.save(buf, format=kind, **options)
        out.append(buf.getvalue())
    return out


def sun_raster(width, height, depth, colour_map=b""):
    """A Sun raster (standard type) with even-padded rows of a ramp."""
    pitch = ((width * depth + 7) // 8 + 1) & ~1
    body = bytes(i % 251 for i in range(pitch * height))
    header = [0x59A66A95, width, height, depth, len(body), 1, 1 if colour_map else 0, len(colour_map)]
    return b"".join(struct.pack(">I", v) for v in header) + colour_map + body


def radiance(width, height, rle):
    """A Radiance HDR file: flat RGBE pixels, or run-length scanlines."""
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width)
    if not rle:
        return head + bytes((i * 37) % 256 for i in range(4 * width * height))
    line = b"\x02\x02" + struct.pack(">H", width) + b"".join(bytes([128 + width, 100 + c]) for c in range(4))
    return head + line * height


def pam_rgba(width, height):
    """A PAM of RGBA samples (TUPLTYPE RGB_ALPHA)."""
    head = b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n" % (width, height)
    return head + bytes(range(4 * width * height))


def datum_input(record):
    """The datum target's Arbitrary layout: crop 0, no mirror, TEST, scale 1
    (16/16), no mean values (a 0 continue-flag), no force_*, no mean file,
    then the record's bytes as they are."""
    return bytes([0, 0, 0, 16, 0, 0, 0, 0]) + record


records = [
    datum(1, 4, 4, bytes(range(16))),
    datum(3, 2, 2, floats=[0.5 * i for i in range(12)]),
    datum(data=png(5, 4, 1), encoded=True),
    datum(data=png(6, 6, 3), encoded=True),
]
records += [datum(data=image, encoded=True) for image in pillow_images()]
records += [
    datum(data=image, encoded=True)
    for image in (sun_raster(5, 3, 8, bytes(range(12))), sun_raster(7, 2, 1), sun_raster(3, 2, 32), radiance(3, 2, False), radiance(9, 2, True), pam_rgba(3, 2))
]
os.makedirs(f"{corpus}/datum", exist_ok=True)
for i, r in enumerate(records):
    with open(f"{corpus}/datum/built_{i}", "wb") as f:
        f.write(datum_input(r))

os.makedirs(f"{corpus}/leveldb", exist_ok=True)
for i, folder in enumerate(sys.argv[2:]):
    packed = b""
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            body = f.read()
        packed += name.encode() + b"\n" + struct.pack("<I", len(body)) + body
    with open(f"{corpus}/leveldb/built_{i}", "wb") as f:
        f.write(packed)
