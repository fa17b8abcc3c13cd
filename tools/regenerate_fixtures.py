#!/usr/bin/env python3
"""Reruns every fixture generator in a copy of the tree and diffs the result with what is committed.

    /some/where/venv/bin/python tools/regenerate_fixtures.py          # diff only; exit 1 on a difference
    /some/where/venv/bin/python tools/regenerate_fixtures.py --write  # then copy the fresh files back

Needs the venv of tools/README.md (torch, transformers, safetensors, pillow, numpy). The copy
holds tools/, tests/data/ and examples/data/; the generators run there in dependency order
(images before the checkpoints that are run on them, checkpoints before the fixtures computed
from them), so the working tree is untouched unless --write is given. Differences:

  safetensors  per tensor: missing / extra / dtype or shape / values (max abs difference);
               per metadata key, except the provenance stamp (generator, generator.*)
  manifests    tests/data/provenance/*.json: the sources' hash and the file list
  JSON         per key (config.json, glimpse_head.json, ...)
  other files  byte for byte

Differences that only record the run are listed as "run" and do not fail: library versions,
PyTorch's own f32 error (a diagnostic that moves with the CPU and thread count), and tensors
within 1e-6 relative of the committed ones (f32 rounding: the AdamW fixture's f32 steps,
written on another machine, came out one ulp apart on a Zen 5 rerun). Everything else is
"DIFFERS" and exits 1.

A difference means the committed fixture is not what its generator writes today: either a
source changed without regenerating (commit what --write produces) or the libraries changed
(the versions are in the manifests; say so in the commit).
"""
import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# Order matters: each generator reads what the ones before it wrote.
GENERATORS = [
    "make_preprocess_fixtures.py",  # tests/data/images/*.png, preprocess_*.safetensors
    "make_tiny_checkpoints.py",  # qwen*_tiny/, qwen*_tiny_expected.safetensors
    "make_bf16_matmul_fixtures.py",  # reads the tiny checkpoints' expected inputs
    "make_compare_fixtures.py",  # reads qwen3_vl_tiny, images/tall_240x90.png
    "make_pt_head_fixtures.py",  # reads both tiny checkpoints, images/wide_67x203.png
    "make_fixtures.py",
    "make_grad_fixtures.py",
    "make_train_fixtures.py",
    "make_bootstrap_fixture.py",
    "make_jpeg_fixtures.py",  # reads examples/data/images/astronaut.jpg and the tiny checkpoints
    "make_demo_input.py",  # examples/data/head_demo.safetensors
    "make_train_data.py",  # examples/data/train/
    "make_roundtrip_fixture.py",  # reads the glimpse-written examples/data/qwen3_vl_tiny_finetuned head
]
TREES = ["tools", os.path.join("tests", "data"), os.path.join("examples", "data")]


def st_load(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


# Metadata that records the run rather than the fixture: library versions, and PyTorch's own
# f32 error (a diagnostic that moves with the CPU's kernels and thread count).
INFO_KEYS = ("torch", "transformers", "transformers_version", "torch_version", "pillow", "libjpeg_turbo")
# Tensors that differ by f32 rounding only (another CPU's kernels, another summation order).
ROUNDING = 1e-6


def is_info_key(k):
    return k.split(".")[-1] in INFO_KEYS or "torch_f32_max_abs" in k or "torch_bf16_max_abs" in k


def diff_safetensors(a, b):
    """(real, info): differences that change a fixture, and those that only record the run."""
    import torch

    ta, ma = st_load(a)
    tb, mb = st_load(b)
    real, info = [], []
    # A tensor that is zero in exact arithmetic (k_proj.bias's gradient without RoPE) holds
    # rounding noise: its differences are measured against the file's largest value.
    scale = max([t.double().abs().max().item() for t in tb.values() if t.numel()] + [1e-30])
    for k in sorted(set(ta) | set(tb)):
        if k not in ta or k not in tb:
            real.append(f"tensor {k}: only in {'fresh' if k in ta else 'committed'}")
        elif ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape:
            real.append(f"tensor {k}: {ta[k].dtype}{list(ta[k].shape)} vs {tb[k].dtype}{list(tb[k].shape)}")
        elif not torch.equal(ta[k], tb[k]):
            d = (ta[k].double() - tb[k].double()).abs().max().item()
            ref = max(tb[k].double().abs().max().item(), 1e-30)
            if ref < ROUNDING * scale:
                ref = scale
            (info if d <= ROUNDING * ref else real).append(f"tensor {k}: max abs {d:.3g} (rel {d / ref:.2g})")
    keep = lambda m: {k: v for k, v in m.items() if k != "generator" and not k.startswith("generator.")}
    ma, mb = keep(ma), keep(mb)
    for k in sorted(set(ma) | set(mb)):
        if ma.get(k) != mb.get(k):
            (info if is_info_key(k) else real).append(f"metadata {k}: {mb.get(k)!r} -> {ma.get(k)!r}")
    return real, info


def diff_json(a, b):
    ja, jb = json.load(open(a)), json.load(open(b))
    if isinstance(ja, dict) and isinstance(jb, dict):
        real = [f"{k}: {jb.get(k)!r} -> {ja.get(k)!r}" for k in sorted(set(ja) | set(jb))
                if ja.get(k) != jb.get(k) and k not in INFO_KEYS]
        info = [f"{k}: {jb.get(k)!r} -> {ja.get(k)!r}" for k in sorted(set(ja) | set(jb))
                if ja.get(k) != jb.get(k) and k in INFO_KEYS]
        return real, info
    return (["contents differ"], []) if ja != jb else ([], ["formatting only"])


def diff_tree(fresh, committed):
    """(path, real, info) for every file of the data trees that differs."""
    found = []
    for tree in TREES[1:]:
        names = set()
        for base in (fresh, committed):
            for d, _, fs in os.walk(os.path.join(base, tree)):
                names |= {os.path.relpath(os.path.join(d, f), base) for f in fs}
        for rel in sorted(names):
            a, b = os.path.join(fresh, rel), os.path.join(committed, rel)
            if not os.path.exists(a) or not os.path.exists(b):
                found.append((rel, ["only in " + ("fresh" if os.path.exists(a) else "committed")], []))
            elif filecmp.cmp(a, b, shallow=False):
                continue
            elif rel.endswith(".safetensors"):
                real, info = diff_safetensors(a, b)
                found.append((rel, real, info or ["provenance stamp only"]))
            elif rel.startswith(os.path.join("tests", "data", "provenance")):
                ja, jb = json.load(open(a)), json.load(open(b))
                real = [f"{k}: {jb.get(k)!r} -> {ja.get(k)!r}" for k in ("fnv1a64", "sources") if ja.get(k) != jb.get(k)]
                info = [f"versions: {jb.get('versions')} -> {ja.get('versions')}"] if ja.get("versions") != jb.get("versions") else []
                changed = sorted(f for f in set(ja.get("files", {})) | set(jb.get("files", {}))
                                 if ja.get("files", {}).get(f) != jb.get("files", {}).get(f))
                info += [f"file hash: {f}" for f in changed]
                found.append((rel, real, info))
            elif rel.endswith(".json"):
                real, info = diff_json(a, b)
                found.append((rel, real, info))
            else:
                found.append((rel, ["bytes differ"], []))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="copy the fresh data trees into the working tree")
    ap.add_argument("--only", nargs="*", default=None, help="run only these generators (still in order)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="glimpse-fixtures-")
    try:
        for t in TREES:
            shutil.copytree(os.path.join(ROOT, t), os.path.join(tmp, t),
                            ignore=shutil.ignore_patterns("__pycache__"))
        for g in GENERATORS:
            if a.only is not None and g not in a.only:
                continue
            print(f"== {g}", flush=True)
            r = subprocess.run([sys.executable, os.path.join(tmp, "tools", g)], cwd=tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                print(r.stdout)
                print(f"{g} failed (exit {r.returncode}); the copy is in {tmp}")
                a.keep = True
                return 2
        found = diff_tree(tmp, ROOT)
        for p, real, info in found:
            print(f"{p}:")
            for line in real:
                print(f"    DIFFERS  {line}")
            for line in info:
                print(f"    run      {line}")
        nreal = sum(1 for _, real, _ in found if real)
        print(f"\n{len(found)} files differ; {nreal} in what they hold (DIFFERS), the rest only in versions, "
              f"diagnostics, f32 rounding (<= {ROUNDING:g} relative) or the provenance stamp (run)")
        if a.write:
            for t in TREES[1:]:
                shutil.copytree(os.path.join(tmp, t), os.path.join(ROOT, t), dirs_exist_ok=True)
            print("copied the fresh tests/data and examples/data into the working tree")
        return 1 if nreal and not a.write else 0
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
