#!/usr/bin/env python3
"""JPEG fixtures: small JPEGs of every common kind and what transformers' load_image makes of them.

glimpse decodes JPEG with libjpeg-turbo and PIL's settings (include/glimpse/io/jpeg.hpp) and
applies the EXIF orientation as PIL.ImageOps.exif_transpose does (io/exif.hpp). This script
writes the evidence the tests (tests/io/test_jpeg.cpp, [io][jpeg]) hold it to:

  tests/data/images/jpeg/*.jpg   crops of examples/data/images/astronaut.jpg (NASA, public
                                 domain), 37x23 unless stated, one per kind (KINDS below):
                                 baseline 4:2:0 / 4:2:2 / 4:4:4 / 4:4:0 / 4:1:1, progressive,
                                 restart markers, arithmetic coding, RGB-coded (Adobe transform
                                 0), low quality, greyscale, CMYK (Adobe), YCCK, corrupt scan data
                                 that libjpeg (and so PIL) decodes with a warning, EXIF orientations
                                 1-8, and tower_orient6.jpg (96x64 stored, orientation 6) for the
                                 tower test.
  tests/data/jpeg_expected.safetensors
    rgb.<file>      U8 [h, w, 3]  transformers.image_utils.load_image(path) as an array:
                                  PIL decode -> ImageOps.exif_transpose -> convert("RGB")
    exif.<k>        U8 [n]        crafted APP1 Exif / XMP segments (markers included; hostile
                                  ones too) that, inserted into rgb_420.jpg after its segment
                                  with marker exif.<k>.after (e0: APP0, c0: SOF0), make the JPEG
                                  of case k; exif.<k>.what says what it is, exif.<k>.orientation
                                  is the transposition load_image applied to that JPEG (found
                                  by comparing with the 8 transposes of the plain decode)
    corrupt.<k>     U8 [n]        a JPEG PIL refuses (metadata corrupt.<k>.what / .pil_error)
    cmyk_to_r       U8 [256, 256] PIL's CMYK;I -> RGB for every (k, c) pair of raw libjpeg
                                  samples: R of the pixel (C=c, M=c, Y=c, K=k), row k, column c
  metadata: files, truncate.<file> (byte lengths at which PIL raises "truncated"), bomb
  (PIL's error for a 10000x20000 frame header), versions, and torchvision_agrees.<file>
  (whether torchvision.io.decode_image(..., apply_exif_orientation=True), the decoder behind
  transformers' fetch_images for path inputs, gives the same pixels; for information).

  tests/data/qwen_jpeg_tower_expected.safetensors
    For tower_orient6.jpg through load_image + Qwen2VLImageProcessor (torchvision backend; the
    tiny towers' patch sizes, small pixel bounds) into the tiny checkpoints of
    tools/make_tiny_checkpoints.py, per family f in (qwen2_5_vl, qwen3_vl):
      f.resized        U8 [h', w', 3]  the processor's uint8 resize (checked: normalising and
                                       patchifying it gives its pixel_values exactly)
      f.grid_thw       F32 [3]
      f.hidden / f.merged / f.deepstack.j   the f64 forward (make_tiny_checkpoints' truth:
                                       float32 casts in RMSNorm / rotary removed) of the
                                       processor's pixel_values, stored as F32
    metadata: pixel bounds, torch's own f32 error, and self-checks against the existing tiny
    fixtures (the loaded checkpoints reproduce their case 0).

Needs libjpeg-turbo's cjpeg for the 4:4:0, 4:1:1 and arithmetic-coded files (Debian:
apt install libjpeg-turbo-progs). Deterministic for a given Pillow / libjpeg-turbo (the JPEG
encoders' bytes may change between versions; the tests read everything from the files).

Run from the repo root:  /work/venv/bin/python tools/make_jpeg_fixtures.py
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import PIL
import torch
import transformers
from PIL import Image, ImageOps, features
from safetensors.torch import load_file
from transformers.image_utils import load_image

import provenance
from provenance import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
DATA = os.path.join(ROOT, "tests", "data")
OUT_DIR = os.path.join(DATA, "images", "jpeg")
SOURCE = os.path.join(ROOT, "examples", "data", "images", "astronaut.jpg")

W, H = 37, 23  # odd, and no multiple of any MCU size


def textured(w, h):
    """Top-left corners of the photo's busy patches (grey std >= 45), in raster order: a flat
    patch would hide decoder differences and make every transposition look alike."""
    grey = np.asarray(Image.open(SOURCE).convert("L"), dtype=np.float64)
    return [(x, y) for y in range(20, 512 - h, 40) for x in range(20, 512 - w, 40)
            if grey[y:y + h, x:x + w].std() >= 45]


def crop(k, w=W, h=H):
    src = Image.open(SOURCE).convert("RGB")
    spots = textured(w, h)
    x, y = spots[(7 * k) % len(spots)]  # a different busy patch of the photo per file
    return src.crop((x, y, x + w, y + h))


def pil_save(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def cjpeg(im, *args):
    exe = shutil.which("cjpeg")
    if not exe:
        sys.exit("cjpeg not found: apt install libjpeg-turbo-progs (libjpeg-turbo's command-line tools)")
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.ppm"), os.path.join(d, "out.jpg")
        im.save(src)
        subprocess.run([exe, "-quality", "90", *args, "-outfile", dst, src], check=True)
        return open(dst, "rb").read()


def segments(data):
    """(marker, start, end) of each marker segment before the first SOS, end exclusive."""
    out, i = [], 2
    while i + 4 <= len(data):
        assert data[i] == 0xFF, i
        m = data[i + 1]
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((m, i, i + 2 + n))
        if m == 0xDA:
            break
        i += 2 + n
    return out


def find_segment(data, marker):
    for m, s, e in segments(data):
        if m == marker:
            return s, e
    raise KeyError(hex(marker))


def seg(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def insert_after_app0(data, extra):
    s, e = find_segment(data, 0xE0)
    return data[:e] + extra + data[e:]


def ycck(data):
    """A CMYK JPEG whose Adobe marker says transform 2: libjpeg then reads it as YCCK."""
    s, e = find_segment(data, 0xEE)
    p = bytearray(data)
    assert bytes(p[s + 4:s + 9]) == b"Adobe" and p[s + 4 + 11] == 0
    p[s + 4 + 11] = 2
    return bytes(p)


def scan_cut(data):
    """Half the entropy-coded data dropped, EOI kept: not truncated, but corrupt. libjpeg warns
    ("premature end of data segment") and fills the rest with zero coefficients; PIL returns that."""
    sos_end = find_segment(data, 0xDA)[1]
    assert data[-2:] == b"\xff\xd9"
    return data[:(sos_end + len(data)) // 2] + b"\xff\xd9"


def exif_orientation_jpeg(im, o):
    ex = Image.Exif()
    ex[274] = o
    return pil_save(im, quality=90, exif=ex.tobytes())


# (file, bytes) for every kind; orientation files carry an Exif Orientation tag.
def kinds():
    out = [
        ("rgb_420.jpg", pil_save(crop(0), quality=90)),
        ("rgb_422.jpg", pil_save(crop(1), quality=90, subsampling=1)),
        ("rgb_444.jpg", pil_save(crop(2), quality=95, subsampling=0)),
        ("rgb_440.jpg", cjpeg(crop(3), "-sample", "1x2")),
        ("rgb_411.jpg", cjpeg(crop(4), "-sample", "4x1")),
        ("rgb_420_progressive.jpg", pil_save(crop(5), quality=90, progressive=True)),
        ("rgb_444_progressive.jpg", pil_save(crop(6), quality=75, subsampling=0, progressive=True)),
        ("rgb_420_restart.jpg", pil_save(crop(7), quality=90, restart_marker_rows=1)),
        ("rgb_420_arithmetic.jpg", cjpeg(crop(8), "-arithmetic")),
        ("rgb_coded_rgb.jpg", pil_save(crop(9), quality=90, keep_rgb=True, subsampling=0)),
        ("rgb_420_q15.jpg", pil_save(crop(10), quality=15)),
        ("grey.jpg", pil_save(crop(11).convert("L"), quality=90)),
        ("grey_progressive.jpg", pil_save(crop(12).convert("L"), quality=90, progressive=True)),
        ("cmyk.jpg", pil_save(crop(13).convert("CMYK"), quality=90)),
        ("ycck.jpg", ycck(pil_save(crop(14).convert("CMYK"), quality=90))),
    ]
    out.append(("rgb_420_scan_cut.jpg", scan_cut(pil_save(crop(17), quality=90))))
    for o in range(1, 9):
        out.append((f"orient_{o}.jpg", exif_orientation_jpeg(crop(15), o)))
    out.append(("tower_orient6.jpg", exif_orientation_jpeg(crop(16, 96, 64), 6)))
    return out


TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def hf_rgb_bytes(data):
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(data)
        f.flush()
        return np.asarray(load_image(f.name))


def applied_orientation(data, base):
    got = hf_rgb_bytes(data)
    hits = [o for o in range(1, 9)
            if np.array_equal(got, np.asarray(base if o == 1 else base.transpose(TRANSPOSE[o])))]
    assert len(hits) == 1, hits
    return hits[0]


# ---- hostile and odd Exif / XMP: (what, APP1 payloads) ---------------------------------
def u16(v, be):
    return struct.pack(">H" if be else "<H", v)


def u32(v, be):
    return struct.pack(">I" if be else "<I", v)


def entry(tag, typ, count, value, be):
    """One IFD entry; `value` is the 4 raw bytes (inline data or an offset)."""
    assert len(value) == 4
    return u16(tag, be) + u16(typ, be) + u32(count, be) + value


def tiff(entries_fn, be=False, head=None, ifd=8, count=None, tail=b""):
    """A TIFF block; entries_fn(tail_offset) -> list of entries (tail_offset: where `tail` lands)."""
    n = len(entries_fn(0))
    tail_off = ifd + 2 + 12 * n + 4
    es = entries_fn(tail_off)
    head = head if head is not None else ((b"MM\0*" if be else b"II*\0") + u32(ifd, be))
    body = head + b"\0" * (ifd - len(head)) + u16(len(es) if count is None else count, be) + b"".join(es)
    return body + u32(0, be) + tail


def short(v, be=False):
    return u16(v, be) + b"\0\0"


def exif(t):
    return b"Exif\0\0" + t


def xmp(s):
    return b"http://ns.adobe.com/xap/1.0/\0" + s.encode()


XMP6 = xmp('<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>')


def exif_cases():
    le, be = False, True
    o = lambda v, typ=3, b=le: tiff(lambda _: [entry(274, typ, 1, short(v, b) if typ == 3 else v, b)], be=b)
    ool = lambda typ, cnt, data, b=le: tiff(lambda t: [entry(274, typ, cnt, u32(t, b), b)], be=b, tail=data)
    f32 = lambda v: struct.pack("<f", v)
    f64 = lambda v: struct.pack("<d", v)
    rat = lambda n, d: struct.pack("<II", n, d)
    srat = lambda n, d: struct.pack("<ii", n, d)
    other = entry(0x0131, 2, 4, b"abc\0", le)  # Software, inline
    cases = [
        ("big-endian SHORT 6", [exif(o(6, b=be))]),
        ("little-endian SHORT 3", [exif(o(3))]),
        ("LONG 8", [exif(o(u32(8, le), 4))]),
        ("SSHORT 5", [exif(o(struct.pack("<h", 5) + b"\0\0", 8))]),
        ("SLONG 7", [exif(o(struct.pack("<i", 7), 9))]),
        ("SBYTE 2", [exif(o(b"\x02\0\0\0", 6))]),
        ("IFD-typed 4", [exif(o(u32(4, le), 13))]),
        ("LONG8 6 (out of line)", [exif(ool(16, 1, struct.pack("<Q", 6)))]),
        ("BYTE 6 (PIL: bytes, no match)", [exif(o(b"\x06\0\0\0", 1))]),
        ("UNDEFINED 6 (no match)", [exif(o(b"\x06\0\0\0", 7))]),
        ("ASCII '6' (no match)", [exif(o(b"6\0\0\0", 2))]),
        ("RATIONAL 12/2 (== 6)", [exif(ool(5, 1, rat(12, 2)))]),
        ("RATIONAL 6/0 (NaN)", [exif(ool(5, 1, rat(6, 0)))]),
        ("RATIONAL 13/2", [exif(ool(5, 1, rat(13, 2)))]),
        ("SRATIONAL -14/-2 (== 7)", [exif(ool(10, 1, srat(-14, -2)))]),
        ("FLOAT 6.0", [exif(o(f32(6.0), 11))]),
        ("FLOAT 6.5", [exif(o(f32(6.5), 11))]),
        ("DOUBLE 3.0 (out of line)", [exif(ool(12, 1, f64(3.0)))]),
        ("SHORT count 2 [6, 3] (first value)", [exif(tiff(lambda _: [entry(274, 3, 2, u16(6, le) + u16(3, le), le)]))]),
        ("SHORT count 3 out of line [5, 1, 1]", [exif(ool(3, 3, u16(5, le) + u16(1, le) + u16(1, le)))]),
        ("SHORT 0", [exif(o(0))]),
        ("SHORT 9", [exif(o(9))]),
        ("SHORT 65535", [exif(o(65535))]),
        ("duplicate: 6 then 3 (first stored wins)",
         [exif(tiff(lambda _: [entry(274, 3, 1, short(6), le), entry(274, 3, 1, short(3), le)]))]),
        ("unknown type then 3", [exif(tiff(lambda _: [entry(274, 99, 1, short(6), le), entry(274, 3, 1, short(3), le)]))]),
        ("count 0 then 5", [exif(tiff(lambda _: [entry(274, 3, 0, short(6), le), entry(274, 3, 1, short(5), le)]))]),
        ("other tag then 2", [exif(tiff(lambda _: [other, entry(274, 3, 1, short(2), le)]))]),
        ("IFD offset past the end", [exif(tiff(lambda _: [entry(274, 3, 1, short(6), le)], head=b"II*\0" + u32(4000, le)))]),
        ("IFD offset past the end + XMP 6",
         [exif(tiff(lambda _: [entry(274, 3, 1, short(3), le)], head=b"II*\0" + u32(4000, le))), XMP6]),
        ("not TIFF + XMP 6 (PIL gives up, no XMP)", [exif(b"garbage!\0\0\0\0\0\0"), XMP6]),
        ("header of 4 bytes + XMP 6", [exif(b"MM\0*"), XMP6]),
        ("header of 3 bytes", [exif(b"MM\0")]),
        ("BigTIFF LE (PIL cannot read its offset) + XMP 6", [exif(b"II+\0" + struct.pack("<HHQ", 8, 0, 16)), XMP6]),
        ("BigTIFF-tagged BE read as classic (PIL: byte 2 is 0) orientation 6",
         [exif(tiff(lambda _: [entry(274, 3, 1, short(6, be), be)], be=be, head=b"MM\0+" + u32(8, be)))]),
        ("swapped LE header II\\0* orientation 3", [exif(tiff(lambda _: [entry(274, 3, 1, short(3), le)],
                                                            head=b"II\0*" + u32(8, le)))]),
        ("swapped BE header MM*\\0 orientation 8", [exif(tiff(lambda _: [entry(274, 3, 1, short(8, be), be)], be=be,
                                                             head=b"MM*\0" + u32(8, be)))]),
        ("empty Exif + XMP 8", [exif(b""), xmp('<x tiff:Orientation="8"/>')]),
        ("Exif\\0\\0 twice then TIFF orientation 5", [exif(exif(o(5)))]),
        ("entry count 5, one entry fits (orientation 2)",
         [exif(tiff(lambda _: [entry(274, 3, 1, short(2), le)], count=5)[:8 + 2 + 12])]),
        ("second entry cut short + XMP 6", [exif(tiff(lambda _: [other, entry(274, 3, 1, short(4), le)])[:8 + 2 + 12 + 5]),
                                            XMP6]),
        ("out-of-line data past the end stops the IFD + XMP 6",
         [exif(tiff(lambda _: [entry(0x010E, 2, 50, u32(5000, le), le), entry(274, 3, 1, short(4), le)])), XMP6]),
        ("tag data larger than the block is skipped, orientation after it kept",
         [exif(tiff(lambda _: [entry(0x010E, 2, 100000, u32(0, le), le), entry(274, 3, 1, short(7), le)]))]),
        ("out-of-line orientation after the budget is spent (skipped) + XMP 6",
         [exif(tiff(lambda t: [entry(0x010E, 2, 60, u32(0, le), le), entry(274, 5, 1, u32(t, le), le)],
                    tail=rat(6, 1))), XMP6]),
        ("duplicate tag skipped before accounting, orientation after it kept",
         [exif(tiff(lambda t: [entry(0x010E, 2, 8, u32(t, le), le), entry(0x010E, 2, 100000, u32(0, le), le),
                               entry(274, 5, 1, u32(t + 8, le), le)], tail=b"desc\0\0\0\0" + rat(18, 3)))]),
        ("IFD split across two APP1 Exif segments (concatenated) orientation 6",
         None),  # built below
        ("Exif without orientation + XMP 6", [exif(tiff(lambda _: [other])), XMP6]),
        ("XMP element form 5", [xmp("<tiff:Orientation>5</tiff:Orientation>")]),
        ("XMP single quotes (no match)", [xmp("<x tiff:Orientation='6'/>")]),
        ("XMP digit 9", [xmp('<x tiff:Orientation="9"/>')]),
        ("XMP first form broken, second 7", [xmp('tiff:Orientation=6 tiff:Orientation="7"')]),
        ("two XMP segments, the last (3) wins", [xmp('tiff:Orientation="6"'), xmp('tiff:Orientation="3"')]),
        ("Exif orientation 2 wins over XMP 6", [exif(o(2)), XMP6]),
        ("Exif orientation 1 wins over XMP 6", [exif(o(1)), XMP6]),
    ]
    # The split IFD: the first segment holds the header and the first 4 bytes of IFD0.
    whole = o(6)
    i = [k for k, (w, _) in enumerate(cases) if w.startswith("IFD split")][0]
    cases[i] = (cases[i][0], [exif(whole[:12]), exif(whole[12:])])
    return cases


def corrupt_cases(base):
    s, e = find_segment(base, 0xC0)
    p12 = bytearray(base)
    p12[s + 4] = 12  # sample precision
    h0 = bytearray(base)
    h0[s + 5:s + 7] = b"\0\0"  # height 0
    badlen = bytearray(base)
    badlen[s + 2:s + 4] = b"\0\x05"  # SOF length shorter than its fields
    ncomp = bytearray(base)
    ncomp[s + 9] = 2  # 2 components, the SOF length says 3
    return [
        ("JPEG magic, then garbage", b"\xff\xd8\xff" + b"\x13garbage, not a JPEG at all" * 4),
        ("12-bit samples", bytes(p12)),
        ("zero height", bytes(h0)),
        ("SOF length too short", bytes(badlen)),
        ("component count disagrees with SOF length", bytes(ncomp)),
    ]


def truncation_points(data):
    sos = find_segment(data, 0xDA)[1]
    return sorted({len(data) - 2, len(data) - 1, len(data) - 7, (sos + len(data)) // 2, sos + 12, sos - 3, 120})


def pil_error(data):
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(data)
        f.flush()
        try:
            load_image(f.name)
        except Exception as ex:  # noqa: BLE001 - any refusal counts
            return f"{type(ex).__name__}: {ex}".replace(f.name, "<file>")
    return None


def torchvision_rgb(path):
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None
    return decode_image(path, mode=ImageReadMode.RGB, apply_exif_orientation=True).permute(1, 2, 0).numpy()


def cmyk_table():
    """R of PIL's CMYK;I -> RGB for raw samples c (columns) and k (rows)."""
    c = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    k = c.T.copy()
    raw = np.stack([c, c, c, k], axis=-1)
    im = Image.frombytes("CMYK", (256, 256), raw.tobytes(), "raw", "CMYK;I")
    return np.asarray(im.convert("RGB"))[..., 0].copy()


# ---- the towers on a JPEG ---------------------------------------------------------------
TOWER_CONFIGS = {
    "qwen2_5_vl": dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=3136, max_pixels=28 * 28 * 8,
                       image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711]),
    "qwen3_vl": dict(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=32 * 32 * 3,
                     max_pixels=32 * 32 * 6, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
}


def tower_fixture(path):
    sys.path.insert(0, HERE)
    import make_tiny_checkpoints as mtc
    from torchvision.transforms.v2 import functional as tvF
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor, smart_resize

    mtc.m25.Qwen2_5_VLRMSNorm.forward = mtc._rms_forward
    mtc.m25.apply_rotary_pos_emb_vision = mtc._rotary
    mtc.m3.apply_rotary_pos_emb_vision = mtc._rotary
    tensors, meta = {}, {"image": os.path.basename(path)}
    pil = load_image(path)
    for fam, cls in (("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration), ("qwen3_vl", Qwen3VLForConditionalGeneration)):
        cfg = TOWER_CONFIGS[fam]
        proc = Qwen2VLImageProcessor(**cfg)
        out = proc(images=[pil], return_tensors="pt")
        pv, grid = out["pixel_values"].to(torch.float32), out["image_grid_thw"]
        # The processor's uint8 resize, and the recipe check: normalise + patchify == pixel_values.
        p, T, m = cfg["patch_size"], cfg["temporal_patch_size"], cfg["merge_size"]
        rgb = np.asarray(pil)
        h2, w2 = smart_resize(rgb.shape[0], rgb.shape[1], factor=p * m, min_pixels=cfg["min_pixels"],
                              max_pixels=cfg["max_pixels"])
        chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
        res = tvF.resize(chw, [h2, w2], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        mean = torch.tensor(cfg["image_mean"], dtype=torch.float32).view(3, 1, 1) * 255.0
        std = torch.tensor(cfg["image_std"], dtype=torch.float32).view(3, 1, 1) * 255.0
        x = (res.to(torch.float32) - mean) / std
        gh, gw = h2 // p, w2 // p
        x = x.reshape(3, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
        x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, T, -1, -1).reshape(gh * gw, 3 * T * p * p)
        assert torch.equal(x, pv), f"{fam}: recipe mismatch"
        assert grid.tolist() == [[1, gh, gw]]

        ckpt = os.path.join(DATA, f"{fam}_tiny")
        model = cls.from_pretrained(ckpt, dtype=torch.float32)
        model.eval()
        visual = model.model.visual
        # The loaded checkpoint must be the one the tower fixtures were made with.
        old = load_file(os.path.join(DATA, f"{fam}_tiny_expected.safetensors"))
        with torch.no_grad():
            visual.double()
            chk = mtc.run(visual, old["pixel_values.0"].double(), old["grid_thw.0"].long(), fam)
            ref = mtc.run(visual, pv.double(), grid, fam)
            visual.float()
            f32 = mtc.run(visual, pv, grid, fam)
        e_chk = (chk["hidden"].float() - old["hidden.0"]).abs().max().item()
        assert e_chk <= 1e-6 * old["hidden.0"].abs().max().item(), f"{fam}: checkpoint does not reproduce case 0"
        tensors[f"{fam}.resized"] = res.permute(1, 2, 0).contiguous()
        tensors[f"{fam}.grid_thw"] = grid[0].to(torch.float32)
        for name, t in ref.items():
            tensors[f"{fam}.{name}"] = t.float().contiguous()
            meta[f"{fam}.torch_f32_max_abs.{name}"] = f"{(f32[name].double() - t).abs().max().item():.3e}"
            meta[f"{fam}.max_ref.{name}"] = f"{t.abs().max().item():.6e}"
        meta[f"{fam}.checkpoint_case0_max_abs"] = f"{e_chk:.3e}"
        for k in ("min_pixels", "max_pixels", "patch_size"):
            meta[f"{fam}.{k}"] = str(cfg[k])
        meta[f"{fam}.resized_hw"] = f"{h2}x{w2}"
    return tensors, meta


def main():
    warnings.simplefilter("ignore")  # PIL's "Corrupt EXIF data" / metadata warnings on the hostile cases
    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        os.remove(os.path.join(OUT_DIR, f))
    tensors = {}
    meta = {"pillow": PIL.__version__, "libjpeg_turbo": features.version_feature("libjpeg_turbo"),
            "transformers": transformers.__version__, "torch": torch.__version__,
            "truth": "transformers.image_utils.load_image(path): PIL.Image.open -> ImageOps.exif_transpose -> "
                     "convert('RGB')"}
    files = []
    for name, data in kinds():
        path = os.path.join(OUT_DIR, name)
        with open(path, "wb") as f:
            f.write(data)
        rgb = np.asarray(load_image(path))
        tensors[f"rgb.{name}"] = torch.from_numpy(rgb.copy())
        files.append(name)
        tv = torchvision_rgb(path)
        if tv is not None:
            meta[f"torchvision_agrees.{name}"] = str(bool(tv.shape == rgb.shape and np.array_equal(tv, rgb)))
    meta["files"] = ",".join(files)
    # The YCCK file is read as YCCK: it must not decode like the same bytes as plain CMYK.
    with open(os.path.join(OUT_DIR, "ycck.jpg"), "rb") as f:
        y = f.read()
    plain = bytearray(y)
    s, e = find_segment(y, 0xEE)
    plain[s + 4 + 11] = 0
    assert not np.array_equal(hf_rgb_bytes(bytes(plain)), tensors["rgb.ycck.jpg"].numpy())
    # Orientation files: 1-4 keep 37x23, 5-8 become 23x37.
    for o in range(1, 9):
        assert tensors[f"rgb.orient_{o}.jpg"].shape[:2] == ((H, W) if o <= 4 else (W, H))

    base_bytes = pil_save(crop(0), quality=90)
    with open(os.path.join(OUT_DIR, "rgb_420.jpg"), "rb") as f:
        assert f.read() == base_bytes  # the Exif cases are rgb_420.jpg plus segments
    base = Image.open(io.BytesIO(base_bytes)).convert("RGB")
    cases = [(what, b"".join(seg(0xE1, p) for p in payloads), 0xE0) for what, payloads in exif_cases()]
    # An Exif segment between SOF and SOS is still before the first scan: PIL and libjpeg both see it.
    cases.append(("Exif segment after SOF, orientation 3",
                  seg(0xE1, exif(tiff(lambda _: [entry(274, 3, 1, short(3), False)]))), 0xC0))
    for k, (what, segs, after) in enumerate(cases):
        s, e = find_segment(base_bytes, after)
        data = base_bytes[:e] + segs + base_bytes[e:]
        tensors[f"exif.{k}"] = torch.frombuffer(bytearray(segs), dtype=torch.uint8).clone()
        meta[f"exif.{k}.what"] = what
        meta[f"exif.{k}.after"] = f"{after:02x}"
        meta[f"exif.{k}.orientation"] = str(applied_orientation(data, base))
    meta["exif.count"] = str(len(cases))

    for k, (what, data) in enumerate(corrupt_cases(base_bytes)):
        err = pil_error(data)
        assert err is not None, f"PIL decodes the corrupt case {what!r}"
        tensors[f"corrupt.{k}"] = torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
        meta[f"corrupt.{k}.what"] = what
        meta[f"corrupt.{k}.pil_error"] = err
    meta["corrupt.count"] = str(len(corrupt_cases(base_bytes)))

    for name in ("rgb_420.jpg", "rgb_420_progressive.jpg", "grey.jpg", "cmyk.jpg", "orient_6.jpg"):
        with open(os.path.join(OUT_DIR, name), "rb") as f:
            data = f.read()
        cuts = truncation_points(data)
        for c in cuts:
            err = pil_error(data[:c])
            assert err is not None and "truncated" in err.lower(), (name, c, err)
        meta[f"truncate.{name}"] = ",".join(map(str, cuts))

    # PIL's decompression-bomb rule on a 10000x20000 frame header (the test patches the same bytes).
    bomb = bytearray(base_bytes)
    s, e = find_segment(base_bytes, 0xC0)
    bomb[s + 5:s + 9] = struct.pack(">HH", 10000, 20000)
    meta["bomb"] = pil_error(bytes(bomb))
    assert meta["bomb"].startswith("DecompressionBombError"), meta["bomb"]

    tensors["cmyk_to_r"] = torch.from_numpy(cmyk_table())
    out = os.path.join(DATA, "jpeg_expected.safetensors")
    save_file(tensors, out, metadata=meta)
    print(out, os.path.getsize(out), "bytes;", len(files), "files,", sum(os.path.getsize(os.path.join(OUT_DIR, f))
                                                                       for f in files), "bytes of JPEG")
    agree = [k.split(".", 1)[1] for k, v in meta.items() if k.startswith("torchvision_agrees.") and v == "False"]
    print("torchvision.io.decode_image differs from load_image on:", agree or "none")

    tt, tm = tower_fixture(os.path.join(OUT_DIR, "tower_orient6.jpg"))
    tm.update({k: meta[k] for k in ("pillow", "libjpeg_turbo", "transformers", "torch")})
    out = os.path.join(DATA, "qwen_jpeg_tower_expected.safetensors")
    save_file(tt, out, metadata=tm)
    print(out, os.path.getsize(out), "bytes;", {k: v for k, v in tm.items() if "max_abs" in k or "resized" in k})
    provenance.wrote(OUT_DIR)
    provenance.record()


if __name__ == "__main__":
    sys.exit(main())
