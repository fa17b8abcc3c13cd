#!/usr/bin/env python3
"""Print every tensor (name, dtype, shape) and the metadata of the fixtures in tests/data."""
import glob
import json
import os
import sys

from safetensors import safe_open

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
paths = sys.argv[1:] or sorted(glob.glob(os.path.join(root, "tests", "data", "*.safetensors")))
for path in paths:
    print(f"== {os.path.basename(path)}  ({os.path.getsize(path)} bytes)")
    with safe_open(path, framework="pt") as f:
        print("   meta: " + json.dumps(f.metadata(), sort_keys=True))
        for k in sorted(f.keys()):
            sl = f.get_slice(k)
            print(f"   {k:32s} {sl.get_dtype():5s} {list(sl.get_shape())}")
