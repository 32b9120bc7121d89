"""1 process x 2 workers (the reference) against 2 processes x 1 worker on loopback: same plan,
same input. Prints rows/s and the bytes that crossed the loopback interface during each run
(timely's TCP between the processes; 0 expected for one process), per input GB.

usage: python3 benchmarks/cluster.py [INPUT_DIR] [PLAN]
  INPUT_DIR  default target/bench-data/bbc-100mb (made by `cargo run --example bench_chunk_stage -- 100`)
  PLAN       default plans/chunk.sql

Loopback counters are machine-wide: run on a quiet machine. Needs target/debug/wrapflow.
"""

import json
import os
import shutil
import subprocess
import sys
import time

data = sys.argv[1] if len(sys.argv) > 1 else "target/bench-data/bbc-100mb"
plan = sys.argv[2] if len(sys.argv) > 2 else "plans/chunk.sql"
binary = "target/debug/wrapflow"


def loopback_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[0])
    raise SystemExit("no loopback interface in /proc/net/dev")



size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))
rows = []
for mode, args in [
    ("1 process x 2 workers", ["run", plan, "-q", "--workers", "2"]),
    ("2 processes x 1 worker", ["cluster", "local", "2", plan, "-q", "--workers", "1"]),
]:
    out = f"target/bench-out/cluster-{mode.split()[0]}p"
    shutil.rmtree(out, ignore_errors=True)
    before, t0 = loopback_bytes(), time.time()
    subprocess.run([binary, *args, "--set", f"input={data}", "--set", f"output={out}"], check=True,
                   stdout=subprocess.DEVNULL)
    wall, moved = time.time() - t0, loopback_bytes() - before
    m = json.load(open(f"{out}/manifest.json"))
    c = m["counts"]
    rows.append((mode, c["read"], c["chunks"], wall, moved))

print(f"input: {data} ({size / 1e6:.0f} MB), plan {plan}")
print(f"{'mode':<24} {'docs':>8} {'chunks':>8} {'wall s':>8} {'docs/s':>9} {'MB/s':>7} {'loopback MB':>12} {'MB per input GB':>16}")
for mode, docs, chunks, wall, moved in rows:
    print(f"{mode:<24} {docs:>8} {chunks:>8} {wall:>8.1f} {docs / wall:>9.0f} {size / 1e6 / wall:>7.1f} "
          f"{moved / 1e6:>12.1f} {moved / 1e6 / (size / 1e9):>16.0f}")
ref, two = rows[0], rows[1]
print(f"2 processes / 1 process throughput: {ref[3] / two[3]:.2f}x")
