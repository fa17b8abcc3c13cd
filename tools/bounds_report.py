#!/usr/bin/env python3
"""Lists every tolerance check of the C++ suite beside the error it meets.

    GLIMPSE_BOUNDS_LOG=/tmp/bounds.log ctest --preset dev
    python3 tools/bounds_report.py /tmp/bounds.log [--slack 10]

The log is written by tests/test_util.hpp (record_bound): one line per check
run, "<file>:<line> <what> <measured> <bound>". A site checked several times
(template instances, fixture lists) is reported with its largest measured
error. Sites whose bound is more than --slack times that error are marked
"loose", unless the bound is at or below --floor (1e-6, 8 f32 ulps of the
reference's largest value: an error under an ulp moves with any change of
summation order, so a tighter bound tests the order, not the kernel). A site
whose measured error is 0 is exact and marked so. Exits 1 when a
site is loose, so the rule (bounds within ~10x of the measured error) can be
checked by hand after a kernel change. Python 3 only, no third-party modules.
"""
import argparse
import collections
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--slack", type=float, default=12.0)  # "~10x"
    ap.add_argument("--floor", type=float, default=1e-6)
    a = ap.parse_args()
    sites = collections.OrderedDict()
    for line in open(a.log, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            continue
        where, what, measured, bound = parts[0], parts[1], float(parts[2]), float(parts[3])
        s = sites.setdefault(where, {"what": what, "measured": 0.0, "bound": bound, "runs": 0})
        s["measured"] = max(s["measured"], measured)
        s["bound"] = min(s["bound"], bound)
        s["runs"] += 1
    loose = 0
    print(f"{'site':48} {'runs':>5} {'measured':>10} {'bound':>10} {'ratio':>8}  check")
    for where, s in sorted(sites.items()):
        if s["measured"] == 0:
            ratio, mark = "exact", ""
        else:
            r = s["bound"] / s["measured"]
            ratio = f"{r:.1f}"
            mark = "  LOOSE" if r > a.slack and s["bound"] > a.floor * (1 + 1e-9) else ""
            loose += bool(mark)
        print(f"{where:48} {s['runs']:5d} {s['measured']:10.3g} {s['bound']:10.3g} {ratio:>8}  {s['what'][:60]}{mark}")
    print(f"\n{len(sites)} sites, {loose} with a bound more than {a.slack:g}x their measured error "
          f"and above the {a.floor:g} floor")
    return 1 if loose else 0


if __name__ == "__main__":
    sys.exit(main())
