#!/usr/bin/env bash
# The aarch64 daemon must give the same answers as the x86 one: runs `agecam predict --json` on
# the bundled portraits with both builds (the aarch64 one under qemu-aarch64, through the
# runner in .cargo/config.toml) and compares boxes, genders and ages (within 0.5 years).
#
# Usage: cross/parity.sh X86_AGECAM AARCH64_AGECAM
set -euo pipefail
cd "$(dirname "$0")/.."
x86=$1
arm=$2
images=(tests/data/faces/astronaut_eileen_collins.jpg tests/data/faces/luis_pedro_coelho.jpg
        tests/data/frames/demo_frame_3.jpg)
# Both on the int8 model: with precision "auto" each build would keep whichever form it timed
# faster, and the two forms differ by ~0.8 years per face.
mkdir -p target
printf '[model]\ndir = "%s/models"\nprecision = "int8"\n' "$PWD" > target/parity.toml
"$x86" --config target/parity.toml predict --json "${images[@]}" > target/parity-x86.jsonl
qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib \
    "$arm" --config target/parity.toml predict --json "${images[@]}" > target/parity-aarch64.jsonl
python3 - target/parity-x86.jsonl target/parity-aarch64.jsonl <<'PY'
import json, sys
x86 = [json.loads(l) for l in open(sys.argv[1])]
arm = [json.loads(l) for l in open(sys.argv[2])]
assert len(x86) == len(arm) and len(x86) >= 4, f"face counts differ or too few: {len(x86)} vs {len(arm)}"
worst = 0.0
for a, b in zip(x86, arm):
    assert a["file"] == b["file"] and a["gender"] == b["gender"], (a, b)
    assert all(abs(p - q) <= 1.0 for p, q in zip(a["box"], b["box"])), (a, b)
    worst = max(worst, abs(a["age"] - b["age"]))
    assert worst <= 0.5, (a, b)
print(f"parity: {len(x86)} faces, same boxes and genders, ages within {worst:.3f} years")
PY
