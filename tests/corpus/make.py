"""Rebuilds the bad-input corpus (needs Pillow and numpy: ../../target/python-test-venv/bin/python
make.py, the environment python/test.sh makes). Run from this folder; models/ uses
../../models/mlp.safetensors for realistic metadata."""

import gzip
import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def write(name, data):
    os.makedirs(os.path.dirname(name), exist_ok=True)
    with open(name, "wb") as f:
        f.write(data)


def png_bytes(img):
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def saved(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def seven(size=120):
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).line([(25, 25), (95, 25), (50, 100)], fill="black", width=10)
    return img


def chunk(kind, data):
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(w, h, idat=None):
    if idat is None:
        idat = zlib.compress(b"\x00" * 64)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


good_png, good_jpg = png_bytes(seven()), saved(seven(), "JPEG", quality=90)
write("images/zero-bytes.png", b"")
write("images/zero-bytes.jpg", b"")
write("images/truncated.png", good_png[: len(good_png) // 2])
write("images/truncated.jpg", good_jpg[: len(good_jpg) // 2])
write("images/wrong-magic.png", b"\x89PNX" + good_png[4:])
write("images/text-named.png", b"this is a text file, not an image\n")
write("images/html-named.jpg", b"<!doctype html><html><body>not an image</body></html>\n")
write("images/bomb-30000x30000.png", png_claiming(30000, 30000))
write("images/bomb-100000x100000.png", png_claiming(100000, 100000))
write("images/bomb-1x2000000000.png", png_claiming(1, 2000000000))
write(
    "images/bomb-8000x8000-real.png",
    png_claiming(8000, 8000, zlib.compress((b"\x00" * 8001) * 8000, 9)),
)
bad = bytearray(good_png)
bad[29] ^= 0xFF
write("images/bad-crc.png", bytes(bad))
write("images/one-pixel.png", png_bytes(Image.new("L", (1, 1), 0)))
write("images/blank-white.png", png_bytes(Image.new("RGB", (200, 200), "white")))
write("images/blank-black.png", png_bytes(Image.new("RGB", (200, 200), "black")))
write("images/blank-transparent.png", png_bytes(Image.new("RGBA", (200, 200), (0, 0, 0, 0))))
wide = Image.new("L", (5000, 10), 255)
ImageDraw.Draw(wide).line([(100, 5), (4900, 5)], fill=0, width=3)
write("images/wide-5000x10.png", png_bytes(wide))
tall = Image.new("L", (10, 5000), 255)
ImageDraw.Draw(tall).line([(5, 100), (5, 4900)], fill=0, width=3)
write("images/tall-10x5000.png", png_bytes(tall))
gif = saved(
    seven(),
    "GIF",
    save_all=True,
    append_images=[seven().rotate(20, fillcolor="white")],
    duration=100,
    loop=0,
)
write("images/animated.gif", gif)
write("images/truncated.gif", gif[:200])
write("images/cmyk.jpg", saved(seven().convert("CMYK"), "JPEG"))
write(
    "images/sixteen-bit.png",
    png_bytes(Image.fromarray(np.array(seven().convert("L"), dtype=np.uint16) * 257)),
)
write("images/truncated.bmp", saved(seven(), "BMP")[:300])
write("images/garbage.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(range(32)))
write("images/truncated.tif", saved(seven(), "TIFF")[:400])
write("images/random-bytes.png", bytes((i * 7919 + 13) % 256 for i in range(4096)))

write("json/empty.json", b"")
write("json/bad-utf8.json", b'{"pixels": [0.5, "\xff\xfe"]}')
write("json/deeply-nested.json", b"[" * 10000 + b"]" * 10000)
write("json/not-json.json", b"pixels = 1, 2, 3")
write("json/pixels-783.json", json.dumps({"pixels": [0.0] * 783}).encode())
write("json/pixels-785.json", json.dumps({"pixels": [0.0] * 785}).encode())
write("json/pixels-nan.json", b'{"pixels": [NaN' + b", 0" * 783 + b"]}")
write("json/pixels-infinity.json", b'{"pixels": [1e999' + b", 0" * 783 + b"]}")
write("json/pixels-out-of-range.json", json.dumps({"pixels": [2.0] * 784}).encode())
write("json/pixels-negative.json", json.dumps({"pixels": [-0.5] * 784}).encode())
write("json/pixels-strings.json", json.dumps({"pixels": ["0"] * 784}).encode())
write("json/pixels-missing.json", json.dumps({"image": [0.0] * 784}).encode())
write("json/pixels-blank.json", json.dumps({"pixels": [0.0] * 784}).encode())


def hdr(magic, *dims):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)


write("idx/bad-magic-idx3-ubyte", hdr(0x804, 2, 28, 28) + bytes(2 * 784))
write("idx/short-data-idx3-ubyte", hdr(0x803, 10, 28, 28) + bytes(100))
write("idx/huge-count-idx3-ubyte", hdr(0x803, 4000000000, 28, 28) + bytes(784))
write("idx/wrong-dims-idx3-ubyte", hdr(0x803, 2, 29, 28) + bytes(2 * 29 * 28))
write("idx/count-mismatch-images-idx3-ubyte", hdr(0x803, 10, 28, 28) + bytes(10 * 784))
write("idx/count-mismatch-labels-idx1-ubyte", hdr(0x801, 9) + bytes(9))
write("idx/label-out-of-range-idx1-ubyte", hdr(0x801, 3) + bytes([1, 2, 12]))
write("idx/empty-idx1-ubyte", b"")
full = gzip.compress(hdr(0x801, 1000) + bytes(1000), mtime=0)
write("idx/truncated-idx1-ubyte.gz", full[: len(full) // 2])

src = open("../../models/mlp.safetensors", "rb").read()
meta = json.loads(src[8 : 8 + struct.unpack("<Q", src[:8])[0]])["__metadata__"]
base = {k: v for k, v in meta.items() if k != "digits.sha256"}


def safetensors(tensors, metadata):
    """A safetensors file whose digits checksum is right, so only the other checks can object."""
    h, data, entries = hashlib.sha256(), b"", {}
    for name, shape, values in sorted(tensors):
        raw = struct.pack(f"<{len(values)}f", *values)
        h.update(struct.pack("<Q", len(name)))
        h.update(name.encode())
        for d in shape:
            h.update(struct.pack("<Q", d))
        h.update(raw)
        entries[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    entries["__metadata__"] = dict(metadata, **{"digits.sha256": h.hexdigest()})
    head = json.dumps(entries, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    return struct.pack("<Q", len(head)) + head + data


write("models/truncated.safetensors", src[:4096])
write("models/png-named.safetensors", b"\x89PNG\r\n\x1a\n" + bytes(64))
write("models/empty.safetensors", b"")
write("models/wrong-shapes.safetensors", safetensors([("layer0.weight", [3, 3], [0.0] * 9)], base))
write(
    "models/bad-metadata.safetensors",
    safetensors([("x", [1], [0.0])], dict(base, **{"digits.meta": "{not json"})),
)
write(
    "models/future-format.safetensors",
    safetensors([("x", [1], [0.0])], dict(base, **{"digits.format": "99"})),
)
write(
    "models/svm-bad-metadata.safetensors",
    safetensors([("pca.mean", [784], [0.0] * 784)], dict(base, **{"digits.kind": "svm"})),
)
ok = safetensors([("x", [1], [0.0])], base)
write("models/checksum-mismatch.safetensors", ok[:-4] + struct.pack("<f", 1.0))
