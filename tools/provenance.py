"""Ties each fixture to the generator that wrote it.

Every generator in tools/ ends by calling `record(files)`: it writes
tests/data/provenance/<generator>.json with

  generator  the script, relative to the repository root
  sources    the script and every module it imported from tools/ (the PyTorch
             reference, shared helpers), sorted
  fnv1a64    FNV-1a 64 over the sources: for each, its path, a NUL, its bytes,
             a NUL (glimpse/core/fnv1a64.hpp computes the same digest)
  versions   python, torch, transformers, safetensors, numpy, pillow (those loaded)
  files      every file the run wrote, relative to the root -> FNV-1a 64 of its bytes

and `save_file` (a drop-in for safetensors.torch.save_file) also stores
generator / generator.fnv1a64 / generator.versions in each safetensors file's
metadata, with the metadata keys sorted so that a rerun is byte-identical.

tests/suite/test_fixture_provenance.cpp fails when a source changed after its
fixtures were written (run the generator again and commit what it writes), when
a file under tests/data is in no manifest, or when a listed file's bytes differ
from the manifest (edited by hand). tools/regenerate_fixtures.py reruns every
generator in a copy of the tree and diffs the result with what is committed.
"""
import json
import os
import struct
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TOOLS = os.path.join(ROOT, "tools")
MANIFESTS = os.path.join(ROOT, "tests", "data", "provenance")


def fnv1a64(data, h=0xCBF29CE484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _rel(path):
    return os.path.relpath(os.path.abspath(path), ROOT).replace(os.sep, "/")


def _main_file():
    main = sys.modules["__main__"]
    return os.path.abspath(main.__file__)


def sources():
    """The generator and every module it loaded from tools/, relative to the root, sorted."""
    files = {_main_file()}
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f and f.endswith(".py") and os.path.abspath(f).startswith(TOOLS + os.sep):
            files.add(os.path.abspath(f))
    return sorted(_rel(f) for f in files)


def sources_hash(srcs):
    h = 0xCBF29CE484222325
    for s in srcs:
        with open(os.path.join(ROOT, s), "rb") as f:
            data = f.read()
        h = fnv1a64(s.encode() + b"\0", h)
        h = fnv1a64(data + b"\0", h)
    return f"{h:016x}"


def versions():
    out = {"python": "%d.%d.%d" % sys.version_info[:3]}
    for mod, name in (("torch", "torch"), ("transformers", "transformers"), ("safetensors", "safetensors"),
                      ("numpy", "numpy"), ("PIL", "pillow")):
        if mod in sys.modules:
            out[name] = getattr(sys.modules[mod], "__version__", "?")
    return out


def stamp():
    srcs = sources()
    return {"generator": _rel(_main_file()), "generator.fnv1a64": sources_hash(srcs),
            "generator.versions": json.dumps(versions(), sort_keys=True, separators=(",", ":"))}


def sort_metadata(path, extra=None):
    """Rewrites a safetensors header with sorted metadata keys (plus `extra`), padded with
    spaces to a multiple of 8 bytes: safetensors writes metadata in hash-map order."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", None) or {}
    meta.update(extra or {})
    new = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    new.update(header)
    text = json.dumps(new, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(body)


_written = []
_stamped = []


def wrote(*paths):
    """Notes files (or whole directories) this run wrote, for `record`."""
    _written.extend(paths)


def save_file(tensors, path, metadata=None):
    from safetensors.torch import save_file as st_save

    st_save(tensors, path, metadata={k: str(v) for k, v in (metadata or {}).items()})
    sort_metadata(path, stamp())
    _stamped.append(path)
    wrote(path)


def record():
    """Writes this generator's manifest: its sources' hash, versions, and each written file's hash."""
    gen = _rel(_main_file())
    srcs = sources()
    out = {"generator": gen, "sources": srcs, "fnv1a64": sources_hash(srcs), "versions": versions(), "files": {}}
    # Modules imported after a file was saved (a lazy import) change the sources: stamp every
    # safetensors file this run saved again, with the final hash.
    final = stamp()
    for f in _stamped:
        sort_metadata(f, final)
    expanded = []
    for f in _written:
        if os.path.isdir(f):
            for d, _, names in os.walk(f):
                expanded += [os.path.join(d, n) for n in names]
        else:
            expanded.append(f)
    for f in sorted(set(_rel(x) for x in expanded)):
        with open(os.path.join(ROOT, f), "rb") as fh:
            out["files"][f] = f"{fnv1a64(fh.read()):016x}"
    os.makedirs(MANIFESTS, exist_ok=True)
    name = os.path.splitext(os.path.basename(gen))[0] + ".json"
    with open(os.path.join(MANIFESTS, name), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, sort_keys=False)
        fh.write("\n")
    print(f"provenance: {len(out['files'])} files -> tests/data/provenance/{name}")
