#!/usr/bin/env bash
# Back-to-back MobileNetV2 training/inference throughput: agecam's candle custom ops, plain
# candle, PyTorch CPU (2 threads). Not run by CI (PyTorch is not installed there).
# Usage: benches/compare.sh [sizes...]   (default: 96)
# Env: BATCH (32), STEPS (10), WARMUP (2), PLAIN_STEPS (3), SKIP_PLAIN (unset),
#      PYTHON (python3 with torch), LOG_DIR (default: a new benches/logs/<timestamp>).
#
# Every run writes into its own fresh log folder and reads results only from logs it wrote
# itself: the old script reused bench/logs, so with SKIP_PLAIN (or after a failed step) it
# printed a stale RESULT line from an earlier run next to fresh ones.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH="${BATCH:-32}"; STEPS="${STEPS:-10}"; WARMUP="${WARMUP:-2}"; PLAIN_STEPS="${PLAIN_STEPS:-3}"
SIZES=("${@:-96}")
PY="${PYTHON:-python3}"
LOG_DIR="${LOG_DIR:-benches/logs/$(date +%Y%m%d-%H%M%S)}"
if [ -e "$LOG_DIR" ] && [ -n "$(ls -A "$LOG_DIR")" ]; then
  echo "log folder $LOG_DIR is not empty; give a new LOG_DIR" >&2; exit 1
fi
mkdir -p "$LOG_DIR"
cargo build --release --quiet -p agecam-host
BIN="${CARGO_TARGET_DIR:-target}/release/agecam-host"
# The RESULT field of a log this run wrote; fails loudly when the run produced none.
field() {
  local v
  v=$(sed -n "s/^RESULT .*$2=\([0-9.]*\).*/\1/p" "$1" | tail -1)
  if [ -z "$v" ]; then echo "no RESULT $2 in $1:" >&2; tail -5 "$1" >&2; exit 1; fi
  echo "$v"
}
summary=()
for S in "${SIZES[@]}"; do
  echo "=== size $S batch $BATCH (logs in $LOG_DIR) ==="
  "$PY" benches/torch_bench.py --size "$S" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --threads 2 \
      > "$LOG_DIR/torch_$S.log" 2>&1
  "$BIN" bench-train --backend custom --size "$S" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" \
      > "$LOG_DIR/custom_$S.log" 2>&1
  logs=("$LOG_DIR/torch_$S.log" "$LOG_DIR/custom_$S.log")
  if [ -z "${SKIP_PLAIN:-}" ]; then
    "$BIN" bench-train --backend plain --size "$S" --batch "$BATCH" --steps "$PLAIN_STEPS" --warmup 1 \
        > "$LOG_DIR/plain_$S.log" 2>&1
    logs+=("$LOG_DIR/plain_$S.log")
  fi
  grep -h '^RESULT' "${logs[@]}"
  tt=$(field "$LOG_DIR/torch_$S.log" train_ips); ti=$(field "$LOG_DIR/torch_$S.log" infer_ips)
  ct=$(field "$LOG_DIR/custom_$S.log" train_ips); ci=$(field "$LOG_DIR/custom_$S.log" infer_ips)
  line="size $S: train custom/pytorch = $(echo "scale=3; $ct/$tt" | bc)  infer custom/pytorch = $(echo "scale=3; $ci/$ti" | bc)"
  if [ -z "${SKIP_PLAIN:-}" ]; then
    pt=$(field "$LOG_DIR/plain_$S.log" train_ips); pi=$(field "$LOG_DIR/plain_$S.log" infer_ips)
    line="$line  plain/pytorch train = $(echo "scale=3; $pt/$tt" | bc) infer = $(echo "scale=3; $pi/$ti" | bc)  custom/plain train = $(echo "scale=1; $ct/$pt" | bc)x"
  fi
  summary+=("$line")
  echo "$line"
done
echo "=== summary (images/s ratios) ==="
printf '%s\n' "${summary[@]}"
