"""Sums an ONNX Runtime profile (WRAPFLOW_ORT_PROFILE=prefix) by operator type, split into
prefill calls (more than one position) and decode steps (one position).

usage: python3 benchmarks/ort_profile.py PROFILE.json [...]
"""

import collections
import json
import sys

for path in sys.argv[1:]:
    totals = collections.Counter()
    # A node whose first input is [batch, positions, ...] tells the phase; the others (the head's
    # Gemm on [batch, hidden], shape ops) belong to the call of the node before them.
    phase = "decode"
    for event in sorted(json.load(open(path)), key=lambda e: e.get("ts", 0)):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        shapes = args.get("input_type_shape") or [{}]
        first = next(iter(shapes[0].values()), [])
        if len(first) == 3:
            phase = "prefill" if first[1] > 1 else "decode"
        totals[(phase, args.get("op_name"))] += event["dur"]
    for phase in ("prefill", "decode"):
        ops = [(op, us) for (p, op), us in totals.most_common() if p == phase]
        print(f"{path} {phase} {sum(us for _, us in ops) / 1e6:.2f} s:",
              ", ".join(f"{op} {us / 1e6:.2f}" for op, us in ops))
