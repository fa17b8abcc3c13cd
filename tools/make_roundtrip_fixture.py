#!/usr/bin/env python3
"""glimpse-written safetensors, read by Python's safetensors: the round trip.

Reads the head glimpse-train wrote (examples/data/qwen3_vl_tiny_finetuned/heatmap_head.safetensors,
a file no Python code touched) with `safetensors.safe_open`, and writes what it read, tensor for
tensor with its dtype, shape and metadata, into tests/data/roundtrip_glimpse_to_python.safetensors
(with safetensors' own writer). tests/io/test_safetensors.cpp holds the two files to each other:
every tensor bit-identical, the same names, dtypes and shapes, and the metadata Python saw.
Needs safetensors and torch.
"""
import json
import os
import sys

from safetensors import safe_open

import provenance

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
SOURCE = os.path.join(ROOT, "examples", "data", "qwen3_vl_tiny_finetuned", "heatmap_head.safetensors")
OUT = os.path.join(ROOT, "tests", "data", "roundtrip_glimpse_to_python.safetensors")


def main():
    with safe_open(SOURCE, framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k).contiguous() for k in f.keys()}
    with open(SOURCE, "rb") as fh:
        src_hash = f"{provenance.fnv1a64(fh.read()):016x}"
    out_meta = {"source": "examples/data/qwen3_vl_tiny_finetuned/heatmap_head.safetensors",
                "source.fnv1a64": src_hash, "source.metadata": json.dumps(meta, sort_keys=True),
                "source.tensors": str(len(tensors))}
    provenance.save_file(tensors, OUT, out_meta)
    provenance.record()
    print(f"read {len(tensors)} tensors ({sorted({str(t.dtype) for t in tensors.values()})}) and "
          f"{len(meta)} metadata keys from the glimpse-written file")


if __name__ == "__main__":
    sys.exit(main())
