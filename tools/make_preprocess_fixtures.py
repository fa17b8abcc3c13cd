#!/usr/bin/env python3
"""Write the image-preprocessing fixtures for tests/models/test_preprocess.cpp.

Usage (from the repository root, in the venv with transformers 5.23 + torchvision):
    python tools/make_preprocess_fixtures.py [--out tests/data]

1. Draws 7 deterministic synthetic images (smooth gradients + shapes + noise) and saves them
   as PNG under <out>/images/: several aspect ratios, shrink and grow, one axis shrinking
   while the other grows, a tiny image that is upscaled, an RGBA image with transparency and
   a greyscale image.
2. Runs transformers' `Qwen2VLImageProcessor` (the torchvision backend, v5.23's default) on
   them, configured like Qwen2.5-VL-7B (patch 14, CLIP mean/std, min_pixels 3136) and like
   Qwen3-VL-8B (patch 16, mean/std 0.5) but with small pixel bounds so the files stay small.
3. Writes <out>/preprocess_qwen2_5_vl.safetensors and <out>/preprocess_qwen3_vl.safetensors.
   Per image k (in the order of the `images` metadata entry):
     pixel_values.k  F32 [N_k, 3*T*p*p]   what the processor returns for image k
     grid_thw.k      F32 [3]              image_grid_thw row of image k
     resized.k       F32 [h', w', 3]      the uint8 image after torchvision's antialiased
                                          bicubic resize (HWC), before normalisation
     input.k         F32 [h, w, 3]        only for the RGBA and grey images, only in the
                                          qwen2_5_vl file: the RGB image the processor starts
                                          from (alpha composited onto white, grey expanded)
   Metadata: processor settings, image file names, and for information the max abs difference
   between the PIL backend (`backend="pil"`) and the torchvision backend, in pixel_values and
   in resized uint8 levels.

The script checks its own bookkeeping: the stored resized images, normalised as the torchvision
path does ((x - 255*mean) / (255*std) in float32) and patchified, must equal pixel_values
exactly; a batch run must equal the per-image runs.
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from PIL import Image
from torchvision.transforms.v2 import functional as tvF
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor, smart_resize

import provenance
from provenance import save_file

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# (file name, height, width, mode). Sizes chosen so that, with the bounds below, both families
# see shrinking, growing, and one axis shrinking while the other grows.
IMAGES = [
    ("square_100x100.png", 100, 100, "RGB"),
    ("wide_67x203.png", 67, 203, "RGB"),
    ("tall_240x90.png", 240, 90, "RGB"),
    ("tiny_31x45.png", 31, 45, "RGB"),
    ("shrink_200x330.png", 200, 330, "RGB"),
    ("rgba_70x98.png", 70, 98, "RGBA"),
    ("grey_60x110.png", 60, 110, "L"),
]

CONFIGS = {
    "qwen2_5_vl": dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=3136,
                       max_pixels=28 * 28 * 8, image_mean=CLIP_MEAN, image_std=CLIP_STD),
    "qwen3_vl": dict(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=32 * 32 * 3,
                     max_pixels=32 * 32 * 6, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
}


def draw(h, w, mode, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = y / max(h - 1, 1), x / max(w - 1, 1)
    r = 255 * xx
    g = 255 * (0.5 + 0.5 * np.sin(6.0 * yy + 3.0 * xx))
    b = 255 * (1 - yy) * (0.3 + 0.7 * xx)
    img = np.stack([r, g, b], axis=-1)
    # a disc and a rectangle with hard edges (ringing, clamping at 0/255)
    cy, cx, rad = 0.45 * h, 0.6 * w, 0.25 * min(h, w)
    img[(y - cy) ** 2 + (x - cx) ** 2 < rad ** 2] = [250, 20, 40]
    img[int(0.1 * h): int(0.35 * h) + 1, int(0.1 * w): int(0.3 * w) + 1] = [0, 0, 255]
    img[int(0.7 * h): int(0.9 * h) + 1, int(0.2 * w): int(0.5 * w) + 1] = [255, 255, 255]
    img += rng.normal(0, 12, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if mode == "RGB":
        return Image.fromarray(img, "RGB")
    if mode == "L":
        return Image.fromarray(img.mean(axis=-1).round().astype(np.uint8), "L")
    # RGBA: alpha ramps 0 -> 255 left to right, a fully transparent hole and an opaque band
    a = np.clip(np.rint(255 * xx + rng.normal(0, 8, (h, w))), 0, 255)
    a[int(0.3 * h): int(0.6 * h), int(0.3 * w): int(0.5 * w)] = 0
    a[:, -max(w // 8, 1):] = 255
    rgba = np.concatenate([img, a.astype(np.uint8)[..., None]], axis=-1)
    return Image.fromarray(rgba, "RGBA")


def processor(cfg, backend=None):
    kw = dict(cfg)
    if backend is not None:
        kw["backend"] = backend
    if backend == "pil":
        from transformers import AutoImageProcessor  # noqa: F401  (backend= handled by the auto class)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        kw.pop("backend")
        return Qwen2VLImageProcessorPil(**kw)
    return Qwen2VLImageProcessor(**kw)


def hf_rgb(img):
    """The HWC uint8 RGB array transformers starts from (alpha composited onto white)."""
    from transformers.image_transforms import convert_to_rgb
    return convert_to_rgb(img, return_numpy=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    args = ap.parse_args()
    img_dir = os.path.join(args.out, "images")
    os.makedirs(img_dir, exist_ok=True)

    pil_images = []
    for k, (name, h, w, mode) in enumerate(IMAGES):
        path = os.path.join(img_dir, name)
        draw(h, w, mode, seed=1000 + k).save(path, optimize=True)
        provenance.wrote(path)
        im = Image.open(path)
        im.load()
        assert im.size == (w, h) and im.mode == mode, (name, im.size, im.mode)
        pil_images.append(im)

    for fam, cfg in CONFIGS.items():
        tv = processor(cfg)
        pil = processor(cfg, "pil")
        p, T, m = cfg["patch_size"], cfg["temporal_patch_size"], cfg["merge_size"]
        factor = p * m
        batch = tv(images=pil_images, return_tensors="pt")
        tensors, meta = {}, {}
        offset = 0
        max_pil_pv, max_pil_levels = 0.0, 0
        mean32 = torch.tensor(cfg["image_mean"], dtype=torch.float32) * 255.0
        std32 = torch.tensor(cfg["image_std"], dtype=torch.float32) * 255.0
        sizes = []
        for k, im in enumerate(pil_images):
            one = tv(images=[im], return_tensors="pt")
            pv = one["pixel_values"].to(torch.float32)
            thw = one["image_grid_thw"][0]
            n = int(thw.prod())
            assert torch.equal(batch["pixel_values"][offset: offset + n], pv), f"batch != single for image {k}"
            assert torch.equal(batch["image_grid_thw"][k], thw)
            offset += n

            rgb = hf_rgb(im)  # HWC uint8
            h, w = rgb.shape[:2]
            h2, w2 = smart_resize(h, w, factor=factor, min_pixels=cfg["min_pixels"], max_pixels=cfg["max_pixels"])
            chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
            res = tvF.resize(chw, [h2, w2], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
            assert res.dtype == torch.uint8

            # self-check: normalise + patchify the stored uint8 image and compare bit-exactly
            x = (res.to(torch.float32) - mean32.view(3, 1, 1)) / std32.view(3, 1, 1)
            gh, gw = h2 // p, w2 // p
            x = x.reshape(3, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
            x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, T, -1, -1).reshape(gh * gw, 3 * T * p * p)
            assert torch.equal(x, pv), f"recipe mismatch for image {k}"
            assert thw.tolist() == [1, gh, gw]

            # for information: the PIL backend
            pone = pil(images=[im], return_tensors="pt")
            max_pil_pv = max(max_pil_pv, float((pone["pixel_values"].float() - pv).abs().max()))
            pil_res = np.asarray(Image.fromarray(rgb).resize((w2, h2), Image.Resampling.BICUBIC), dtype=np.int32)
            max_pil_levels = max(max_pil_levels, int(np.abs(pil_res - res.permute(1, 2, 0).numpy()).max()))

            tensors[f"pixel_values.{k}"] = pv.contiguous()
            tensors[f"grid_thw.{k}"] = thw.to(torch.float32).contiguous()
            tensors[f"resized.{k}"] = res.permute(1, 2, 0).to(torch.float32).contiguous()
            if IMAGES[k][3] != "RGB" and fam == "qwen2_5_vl":  # once is enough: same input
                tensors[f"input.{k}"] = torch.from_numpy(rgb.astype(np.float32)).contiguous()
            sizes.append(f"{h}x{w}->{h2}x{w2}")

        meta.update({
            "family": fam,
            "processor": "transformers.Qwen2VLImageProcessor (torchvision backend)",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "images": ",".join(n for n, *_ in IMAGES),
            "count": str(len(IMAGES)),
            "sizes": ",".join(sizes),
            "patch_size": str(p),
            "temporal_patch_size": str(T),
            "merge_size": str(m),
            "min_pixels": str(cfg["min_pixels"]),
            "max_pixels": str(cfg["max_pixels"]),
            "image_mean": json.dumps(cfg["image_mean"]),
            "image_std": json.dumps(cfg["image_std"]),
            "pil_vs_torchvision_max_abs_pixel_values": repr(max_pil_pv),
            "pil_vs_torchvision_max_abs_levels": str(max_pil_levels),
        })
        out = os.path.join(args.out, f"preprocess_{fam}.safetensors")
        save_file(tensors, out, metadata=meta)
        print(out, os.path.getsize(out), "bytes;", ", ".join(sizes),
              f"; PIL vs torchvision: {max_pil_pv:.4g} (pixel_values), {max_pil_levels} levels")
    provenance.record()


if __name__ == "__main__":
    main()
