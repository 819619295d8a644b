#!/usr/bin/env python3
"""Medians from criterion's output (target/criterion/<group>/<case>/new/estimates.json) as a
markdown table, for the groups of benches/acs.rs.

usage: criterion_medians.py [TARGET_DIR]     (default: ../target relative to this file)
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "target")
root = os.path.join(target, "criterion")
rows = []
for group in ("verify", "decode_verify", "prescan", "parts"):
    gdir = os.path.join(root, group)
    if not os.path.isdir(gdir):
        continue
    for case in sorted(os.listdir(gdir)):
        est = os.path.join(gdir, case, "new", "estimates.json")
        if not os.path.exists(est):
            continue
        e = json.load(open(est))
        m = e["median"]
        rows.append((group, case, m["point_estimate"], m["confidence_interval"]["lower_bound"],
                     m["confidence_interval"]["upper_bound"], e["mean"]["point_estimate"]))


def fmt(ns):
    return "%.1f µs" % (ns / 1e3) if ns < 1e6 else "%.3f ms" % (ns / 1e6)


print("| bench | median | 95 % CI of the median | mean | per second (1 core, from median) |")
print("|---|---|---|---|---|")
for g, c, med, lo, hi, mean in rows:
    print("| %s/%s | **%s** | %s – %s | %s | %.0f |" % (g, c, fmt(med), fmt(lo), fmt(hi), fmt(mean), 1e9 / med))
