#!/bin/sh
# Builds every fuzz target and runs each for a short time from freshly generated seeds, so a
# change that makes an input crash the daemon or the host tool fails CI.
#
#   fuzz/ci.sh                      30 s per target, no sanitizer
#   FUZZ_SECONDS=300 fuzz/ci.sh     longer runs
#   FUZZ_SANITIZER=address fuzz/ci.sh   with AddressSanitizer (slower build and runs)
#   FUZZ_JOBS=2 fuzz/ci.sh          two targets at a time (each fuzzer uses one core)
#   FUZZ_STEP=build fuzz/ci.sh      only install, seed and build (FUZZ_STEP=run: only fuzz)
#   fuzz/ci.sh push_files config    only these targets
#   (all of them by default, `cargo fuzz list`: fleet_message is the collector's message check)
#
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets stable accept the -Z flags cargo-fuzz passes.
# Found crashes are left in fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
set -eu

cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
step=${FUZZ_STEP:-all}
# Its own target folder: the sanitizer and coverage flags would otherwise rebuild the main
# build's dependencies back and forth.
fuzz_target_dir=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}

if [ "$step" != run ]; then
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "== installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi

    echo "== writing seed corpora to fuzz/seeds"
    # With the README test command's features, so CI reuses that build instead of compiling the
    # dependencies a third time for another feature set.
    AGECAM_FUZZ_SEEDS="$PWD/fuzz/seeds" \
        cargo test --features onnx-writer --quiet --test fuzz_seeds write_fuzz_seeds -- --ignored --exact >/dev/null

    # Only the fuzz build gets RUSTC_BOOTSTRAP: it is part of cargo's fingerprint, so exporting it
    # for the seed step above would rebuild the main target's dependencies in place.
    export RUSTC_BOOTSTRAP=1
    echo "== building the fuzz targets (sanitizer: $sanitizer)"
    cargo fuzz build --sanitizer "$sanitizer" --target-dir "$fuzz_target_dir"
fi
[ "$step" = build ] && exit 0
export RUSTC_BOOTSTRAP=1

# One target: fuzz it from its seeds; its output goes to a log, printed when it is done.
fuzz_one() {
    target=$1
    corpus=$(mktemp -d)
    log="$corpus.log"
    # New inputs go to the throw-away first folder; the seeds stay as generated.
    if cargo fuzz run --sanitizer "$sanitizer" --target-dir "$fuzz_target_dir" \
        "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        echo "== $target: $(grep -m1 '^Done' "$log" || echo done) (${seconds}s)"
    else
        echo "== $target FAILED:"
        tail -40 "$log"
        touch "$fail_dir/$target"
    fi
    rm -rf "$corpus" "$log"
}

targets=${*:-$(cargo fuzz list)}
fail_dir=$(mktemp -d)
running=0
for target in $targets; do
    fuzz_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done
wait
failed=$(ls "$fail_dir")
rm -rf "$fail_dir"

if [ -n "$failed" ]; then
    echo "fuzzing found crashes in: $failed (inputs in fuzz/artifacts/); add each as a regression test" >&2
    exit 1
fi
echo "== all fuzz targets ran ${seconds}s without a crash"
