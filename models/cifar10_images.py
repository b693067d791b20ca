#!/usr/bin/env python3
"""CIFAR-10's binary version (cifar-10-batches-bin/) to PNG files and the list
files `caffe convert_imageset` reads (`path label` per line).

    python3 models/cifar10_images.py cifar-10-batches-bin data/cifar10

writes data/cifar10/{train,test}/NNNNN.png, data/cifar10/train.txt (the five
data batches, 50,000 images, in file order) and data/cifar10/test.txt
(test_batch.bin, 10,000 images). Standard library only.
"""
import os
import struct
import sys
import zlib

SIDE = 32
RECORD = 1 + 3 * SIDE * SIDE  # label byte, then the R, G and B planes


def png_rgb(planes):
    """A 32×32 8-bit RGB PNG from the three colour planes."""
    r, g, b = planes
    rows = bytearray()
    for y in range(SIDE):
        rows.append(0)  # filter: none
        for x in range(SIDE):
            i = y * SIDE + x
            rows += bytes((r[i], g[i], b[i]))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(
        b"IEND", b"")


def convert(batches, out_dir, split):
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    lines = []
    for path in batches:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) % RECORD:
            sys.exit("%s: size %d is not a multiple of %d: not CIFAR-10's binary version" % (path, len(data), RECORD))
        for off in range(0, len(data), RECORD):
            label = data[off]
            px = data[off + 1:off + RECORD]
            n = SIDE * SIDE
            name = "%s/%05d.png" % (split, len(lines))
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(png_rgb((px[:n], px[n:2 * n], px[2 * n:])))
            lines.append("%s %d\n" % (name, label))
    with open(os.path.join(out_dir, split + ".txt"), "w") as f:
        f.writelines(lines)
    print("%s: %d images" % (split, len(lines)))


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: cifar10_images.py CIFAR10_BIN_DIR OUT_DIR")
    src, out = argv[1], argv[2]
    train = [os.path.join(src, "data_batch_%d.bin" % i) for i in range(1, 6)]
    test = [os.path.join(src, "test_batch.bin")]
    for p in train + test:
        if not os.path.exists(p):
            sys.exit("missing %s (download CIFAR-10's binary version and extract it)" % p)
    convert(train, out, "train")
    convert(test, out, "test")


if __name__ == "__main__":
    main(sys.argv)
