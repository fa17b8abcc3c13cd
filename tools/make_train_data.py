#!/usr/bin/env python3
"""Write the bundled training set examples/data/train/ from the two bundled photographs.

Usage (from the repository root):  python tools/make_train_data.py [--out examples/data/train]

Every image is a crop, a downscale and/or a mirror flip of examples/data/images/astronaut.jpg
(NASA, public domain) or cameraman.png (CC0), at most 320 px a side, saved as JPEG (quality 90).
The boxes are the hand-written boxes of examples/data/README.md carried through the same
transforms: clipped to the crop, shifted, scaled (0.625 or 0.8: exact in decimal) and mirrored
(x -> W - x). A (person, object) pair is kept in an image only when each clipped box keeps at
least a quarter of its area and 32 px a side, so no box is a sliver.

Writes train.jsonl and heldout.jsonl (one line per kept pair) and images/*.jpg. Deterministic
given the Pillow version (JPEG encoder bytes may differ between versions; boxes never do).
"""
import argparse
import json
import os

from PIL import Image

import provenance

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "examples", "data", "images")

# Hand-written boxes of the 512x512 originals (examples/data/README.md), [x1, y1, x2, y2].
PHOTOS = {
    "astronaut": {
        "file": "astronaut.jpg",
        "person": (20, 15, 362, 512),
        "objects": {"helmet": (276, 342, 512, 512), "shuttle": (355, 0, 470, 285), "flag": (0, 0, 95, 512)},
    },
    "cameraman": {
        "file": "cameraman.png",
        "person": (0, 62, 335, 512),
        "objects": {"camera": (248, 136, 332, 210), "tripod": (228, 180, 410, 512)},
    },
}

# (photo, crop (x0, y0, w, h) in original pixels, scale, mirror)
TRAIN = [
    ("astronaut", (0, 0, 512, 512), 0.625, False),
    ("astronaut", (0, 0, 512, 512), 0.625, True),
    ("astronaut", (0, 0, 320, 320), 1.0, False),
    ("astronaut", (192, 192, 320, 320), 1.0, False),
    ("astronaut", (96, 96, 320, 320), 1.0, True),
    ("astronaut", (0, 112, 400, 400), 0.8, False),
    ("astronaut", (112, 0, 400, 400), 0.8, True),
    ("astronaut", (0, 192, 320, 320), 1.0, True),
    ("astronaut", (0, 112, 400, 320), 0.8, False),
    ("cameraman", (0, 0, 512, 512), 0.625, False),
    ("cameraman", (0, 0, 512, 512), 0.625, True),
    ("cameraman", (96, 96, 320, 320), 1.0, False),
    ("cameraman", (192, 64, 320, 320), 1.0, True),
    ("cameraman", (0, 0, 400, 400), 0.8, False),
    ("cameraman", (112, 112, 400, 400), 0.8, True),
]
HELDOUT = [
    ("astronaut", (80, 48, 400, 400), 0.8, True),
    ("astronaut", (192, 160, 320, 320), 1.0, False),
    ("cameraman", (56, 56, 400, 400), 0.8, False),
]

MIN_AREA_KEPT = 0.25
MIN_SIDE = 32.0


def num(v):
    """Exact short decimal (every value here is a multiple of 1/1000)."""
    r = round(v, 3)
    assert abs(r - v) < 1e-9, v
    return int(r) if r == int(r) else r


def transform(box, crop, scale, mirror):
    """Box of the original -> box of the derived image, or None when too little of it is left."""
    x0, y0, w, h = crop
    bx1, by1, bx2, by2 = box
    cx1, cy1 = max(bx1, x0), max(by1, y0)
    cx2, cy2 = min(bx2, x0 + w), min(by2, y0 + h)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    if (cx2 - cx1) * (cy2 - cy1) < MIN_AREA_KEPT * (bx2 - bx1) * (by2 - by1):
        return None
    x1, y1, x2, y2 = [(v - o) * scale for v, o in ((cx1, x0), (cy1, y0), (cx2, x0), (cy2, y0))]
    if mirror:
        W = w * scale
        x1, x2 = W - x2, W - x1
    if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
        return None
    return [num(x1), num(y1), num(x2), num(y2)]


def make(entries, split, out_dir, lines):
    for photo, crop, scale, mirror in entries:
        p = PHOTOS[photo]
        img = Image.open(os.path.join(SRC, p["file"]))
        img = img.convert("L") if img.mode in ("L", "P", "I;16") else img.convert("RGB")
        x0, y0, w, h = crop
        assert x0 + w <= img.width and y0 + h <= img.height
        out = img.crop((x0, y0, x0 + w, y0 + h))
        size = (num(w * scale), num(h * scale))
        assert all(isinstance(s, int) and s <= 320 for s in size), size
        if scale != 1.0:
            out = out.resize(size, Image.Resampling.LANCZOS)
        if mirror:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        name = f"{photo}_{x0}_{y0}_{w}x{h}_s{int(scale * 1000)}{'_m' if mirror else ''}.jpg"
        out.save(os.path.join(out_dir, "images", name), quality=90)
        person = transform(p["person"], crop, scale, mirror)
        kept = 0
        for obj, ob in p["objects"].items():
            o = transform(ob, crop, scale, mirror)
            if person is None or o is None:
                continue
            lines[split].append({"image": f"images/{name}", "person_box": person, "object_box": o, "object": obj})
            kept += 1
        print(f"{split:8s} {name:44s} {size[0]}x{size[1]}  {kept} pair(s)")
        assert kept > 0, name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "examples", "data", "train"))
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    lines = {"train": [], "heldout": []}
    make(TRAIN, "train", args.out, lines)
    make(HELDOUT, "heldout", args.out, lines)
    for split, rows in lines.items():
        with open(os.path.join(args.out, f"{split}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(", ", ": ")) + "\n")
        print(f"wrote {split}.jsonl: {len(rows)} examples")
    provenance.wrote(args.out)
    provenance.record()


if __name__ == "__main__":
    main()
