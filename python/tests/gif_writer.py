"""A one-frame GIF written field by field, for the decoding tests
(test_image_decoding.py) and the fixtures tests/data.rs reads
(tests/fixtures/images/make.py): what Pillow and OpenCV never write, such as
a frame smaller than the screen and offset in it over a background colour,
or a local palette shorter than the global one."""


def lzw_blocks(indices, min_size):
    """GIF's LZW code stream for the indices, as 255-byte sub-blocks."""
    clear, size = 1 << min_size, min_size + 1
    table, next_code = {(i,): i for i in range(clear)}, clear + 2
    bits, n_bits, out = 0, 0, bytearray()

    def emit(code):
        nonlocal bits, n_bits
        bits |= code << n_bits
        n_bits += size
        while n_bits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            n_bits -= 8

    emit(clear)
    run = ()
    for k in indices:
        if run + (k,) in table:
            run += (k,)
            continue
        emit(table[run])
        if next_code < 4096:
            table[run + (k,)] = next_code
            next_code += 1
            if next_code - 1 == 1 << size and size < 12:
                size += 1
        run = (k,)
    emit(table[run])
    emit(clear + 1)
    if n_bits:
        out.append(bits & 0xFF)
    blocks = bytearray([min_size])
    for i in range(0, len(out), 255):
        blocks += bytes([len(out[i : i + 255])]) + out[i : i + 255]
    return bytes(blocks + b"\0")


def gif_bytes(screen, frame, indices, global_palette=None, background=0, local_palette=None, transparent=None):
    """A one-frame GIF written field by field, so that what Pillow never
    writes is covered: a frame smaller than the screen and offset in it, a
    background colour, a local palette shorter than the global one."""
    (sw, sh), (left, top, fw, fh) = screen, frame

    def table_bits(palette):
        return max(1, (len(palette) // 3 - 1).bit_length()) - 1

    flags = 0x80 | 0x70 | table_bits(global_palette) if global_palette else 0x70
    data = b"GIF89a" + bytes([sw & 255, sw >> 8, sh & 255, sh >> 8, flags, background, 0])
    data += bytes(global_palette or b"")
    if transparent is not None:
        data += bytes([0x21, 0xF9, 4, 1, 0, 0, transparent, 0])
    local_flags = 0x80 | table_bits(local_palette) if local_palette else 0
    data += bytes([0x2C, left & 255, left >> 8, top & 255, top >> 8, fw & 255, fw >> 8, fh & 255, fh >> 8, local_flags])
    data += bytes(local_palette or b"")
    return data + lzw_blocks(indices, 8 if max(indices) > 15 else 4) + b"\x3b"

