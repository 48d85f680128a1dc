#!/usr/bin/env bash
# Pi-class cost without a Pi: guest instruction counts of each pipeline stage of the aarch64
# `agecam`, run under qemu-aarch64 with QEMU's own instruction-counting plugin
# (tests/plugin/insn.c). qemu's timings mean nothing, its instruction counts are repeatable.
#
# Difference method: every figure is (count of a run with N2 repetitions − count with N1) /
# (N2 − N1), so start-up, the manifest's hash check and model loading cancel out. The stages
# run through `agecam cost STAGE --repeat N` (src/cli/cost.rs), the stream frame through
# `agecam run --demo --max-frames N` (model.precision = int8, so no timing decides the form),
# with the configured [schedule] and with detection and classification on every frame.
#
# Usage: benches/aarch64-cost.sh [--cpu LIST] [--x86] [--json] [--repeat K] [--no-build]
#   --cpu LIST  qemu CPU models to count on, comma-separated (default cortex-a72,cortex-a76:
#               Raspberry Pi 4 and 5; cortex-a53 is a Pi 3 / Zero 2). tract picks its kernels
#               by the CPU's features (dotprod, fp16), so `max` would count kernels a Pi lacks
#   --stages L  only these rows, comma-separated (names as in the table; default all)
#   --x86       also count the same stages on x86 with valgrind --tool=callgrind (~15 min more)
#   --json      print one JSON object with every figure as the last line
#   --repeat K  extra repetitions per stage (default 4; the difference is over K runs)
#   --no-build  use the aarch64 binary as it is (default: cross/build-aarch64.sh first)
#   --model F   also count one face through the age/gender ONNX model F (repeatable; a row
#               `model:NAME` each, e.g. the width/input-size candidates of the model-size table)
# Env: AGECAM_COST_CACHE (default target/aarch64-cost: the plugin, QEMU's source, the integer
#      models), AGECAM_X86_BIN (default target/release/agecam, else target/debug/agecam),
#      AGECAM_HOST_BIN (agecam-host for the QLinearConv forms; default as AGECAM_X86_BIN).
#
# The plugin is built once into the cache from the QEMU source of the installed qemu-user
# (Debian's source package, fetched with apt-get through a private deb-src list in the cache;
# /etc/apt is not touched). Needs gcc, pkg-config and libglib2.0-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

x86=0 json=0 repeat=4 build=1 cpu_list=cortex-a72,cortex-a76 only=""
extra_models=()
while [ $# -gt 0 ]; do
    case "$1" in
        --x86) x86=1 ;;
        --stages) only="${2:?--stages needs a list such as decode,frame}"; shift ;;
        --cpu) cpu_list="${2:?--cpu needs a list such as cortex-a72,cortex-a76}"; shift ;;
        --json) json=1 ;;
        --repeat) repeat="${2:?--repeat needs a number}"; shift ;;
        --no-build) build=0 ;;
        --model) extra_models+=("${2:?--model needs an ONNX file}"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep -v '^set' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "aarch64-cost.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
IFS=, read -r -a cpus <<<"$cpu_list"
known_cpus=$(qemu-aarch64 -cpu help 2>/dev/null || true)
for c in "${cpus[@]}"; do
    grep -qw -- "$c" <<<"$known_cpus" ||
        { echo "aarch64-cost.sh: qemu-aarch64 knows no CPU '$c' (qemu-aarch64 -cpu help lists them)" >&2; exit 2; }
done
case "$repeat" in ''|*[!0-9]*|0) echo "aarch64-cost.sh: --repeat takes a positive number" >&2; exit 2 ;; esac

cache="${AGECAM_COST_CACHE:-target/aarch64-cost}"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
notes=()
note() { notes+=("$1"); }

# --- the plugin -------------------------------------------------------------------------------
plugin="$cache/libinsn.so"
plugin_help() {
    cat >&2 <<EOF
aarch64-cost.sh: cannot build QEMU's instruction-counting plugin: $1
To build it by hand (any folder; the script looks for $plugin):
  1. QEMU's source of the installed version ($qemu_source_version): with a deb-src line for
     Debian in /etc/apt (or a throwaway file in /etc/apt/sources.list.d/) and apt-get update,
     'apt-get source --download-only qemu=$qemu_source_version' fetches qemu_*.orig.tar.xz
     (or copy it from https://deb.debian.org/debian/pool/main/q/qemu/ onto this machine);
     put the tarball into $cache and run this script again, or:
  2. tar -xJf qemu_*.orig.tar.xz --wildcards '*/tests/plugin/insn.c' '*/include/qemu/qemu-plugin.h'
  3. apt-get install gcc pkg-config libglib2.0-dev
  4. gcc -shared -fPIC -O2 -I qemu-*/include/qemu \$(pkg-config --cflags glib-2.0) \\
       qemu-*/tests/plugin/insn.c -o $plugin \$(pkg-config --libs glib-2.0)
EOF
    exit 1
}
qemu_source_version=$(dpkg-query -W -f='${source:Version}' qemu-user 2>/dev/null || true)
if [ ! -s "$plugin" ]; then
    command -v qemu-aarch64 >/dev/null || plugin_help "qemu-aarch64 is missing (cross/build-aarch64.sh installs qemu-user)"
    upstream=${qemu_source_version#*:}
    upstream=${upstream%%+*}
    upstream=${upstream%%-*}
    orig=$(ls "$cache"/qemu_"$upstream"*.orig.tar.xz 2>/dev/null | head -1 || true)
    if [ -z "$orig" ]; then
        echo "fetching QEMU $qemu_source_version's source through a private deb-src list in $cache/apt" >&2
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
        apt_dir="$cache/apt"
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        {
            echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian $codename main"
            echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian $codename-updates main"
            echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian-security $codename-security main"
        } >"$apt_dir/sources.list"
        apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/none"
                  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Debug::NoLocking=1)
        apt-get -qq "${apt_opts[@]}" update >"$work/apt.log" 2>&1 ||
            plugin_help "apt-get update of the private deb-src list failed: $(tail -2 "$work/apt.log")"
        (cd "$cache" && { apt-get -qq "${apt_opts[@]}" source --download-only "qemu=$qemu_source_version" ||
                          apt-get -qq "${apt_opts[@]}" source --download-only qemu; }) >"$work/apt.log" 2>&1 ||
            plugin_help "apt-get source qemu failed: $(tail -2 "$work/apt.log")"
        orig=$(ls "$cache"/qemu_"$upstream"*.orig.tar.xz 2>/dev/null | head -1 || true)
        [ -n "$orig" ] || plugin_help "no qemu_$upstream*.orig.tar.xz arrived (the archive holds: $(ls "$cache"/qemu_*.orig.tar.* 2>/dev/null))"
    fi
    tar -xJf "$orig" -C "$work" --wildcards '*/tests/plugin/insn.c' '*/include/qemu/qemu-plugin.h' ||
        plugin_help "$orig holds no tests/plugin/insn.c"
    src=$(ls -d "$work"/qemu-*/ | head -1)
    command -v gcc >/dev/null && pkg-config --exists glib-2.0 2>/dev/null ||
        plugin_help "gcc, pkg-config or glib's headers are missing (apt-get install gcc pkg-config libglib2.0-dev)"
    # shellcheck disable=SC2046
    gcc -shared -fPIC -O2 -I "$src/include/qemu" $(pkg-config --cflags glib-2.0) \
        "$src/tests/plugin/insn.c" -o "$plugin.tmp" $(pkg-config --libs glib-2.0) ||
        plugin_help "gcc failed on $src/tests/plugin/insn.c"
    mv "$plugin.tmp" "$plugin"
    echo "built $plugin from $(basename "$orig")" >&2
fi

# --- the aarch64 binary -----------------------------------------------------------------------
target=aarch64-unknown-linux-gnu
bin="${CARGO_TARGET_DIR:-target/debian}/$target/release/agecam"
if [ "$build" = 1 ]; then
    cross/build-aarch64.sh >&2 || { echo "aarch64-cost.sh: cross/build-aarch64.sh failed (see above)" >&2; exit 1; }
fi
[ -x "$bin" ] || { echo "aarch64-cost.sh: no aarch64 binary at $bin: run cross/build-aarch64.sh" >&2; exit 1; }
qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib "$bin" cost --help >/dev/null 2>&1 ||
    { echo "aarch64-cost.sh: $bin has no 'cost' subcommand: rebuild it (drop --no-build)" >&2; exit 1; }
# Measure a snapshot: a build elsewhere in the work tree must not swap the binary mid-run.
bin_built=$bin
cp "$bin" "$work/agecam-aarch64"
bin="$work/agecam-aarch64"

# --- the integer (QLinearConv) forms ----------------------------------------------------------
x86_bin="${AGECAM_X86_BIN:-}"
if [ -z "$x86_bin" ]; then
    for b in target/release/agecam target/debug/agecam; do
        [ -x "$b" ] && { x86_bin=$b; break; }
    done
fi
host_bin="${AGECAM_HOST_BIN:-${x86_bin:+$(dirname "$x86_bin")/agecam-host}}"
x86_built=$x86_bin
if [ -n "$x86_bin" ] && [ -x "$x86_bin" ]; then
    cp "$x86_bin" "$work/agecam-x86"
    x86_bin="$work/agecam-x86"
fi
f32_model=$(python3 -c 'import json; print(next(e["file"] for e in json.load(open("models/manifest.json")) if e["role"] == "age_gender_f32" and e.get("use", "research") == "research"))' 2>/dev/null || echo age_gender_f32.onnx)
qlinear=()
if [ -n "$host_bin" ] && [ -x "$host_bin" ]; then
    for layers in pointwise all; do
        out="$cache/age_gender_qlinear_$layers.onnx"
        if [ ! -s "$out" ] || [ "models/$f32_model" -nt "$out" ]; then
            "$host_bin" quantize --model "models/$f32_model" --calib tests/data/faces --form integer \
                --integer-layers "$layers" --out "$out" >"$work/quantize.log" 2>&1 ||
                { note "QLinearConv ($layers) form not made: agecam-host quantize failed: $(tail -1 "$work/quantize.log")"; continue; }
        fi
        qlinear+=("$layers")
    done
    note "QLinearConv forms: agecam-host quantize --form integer of models/$f32_model, calibrated on the 4 images in tests/data/faces (ranges change accuracy, not cost)"
else
    note "QLinearConv forms not measured: no agecam-host binary (cargo build --workspace --bins, or set AGECAM_HOST_BIN)"
fi

# --- counting ---------------------------------------------------------------------------------
printf '[model]\nprecision = "int8"\n' >"$work/cost.toml"
printf '[model]\nprecision = "int8"\n[schedule]\ndetect_every = 1\nsettle_estimates = 0\n' >"$work/every.toml"
printf '[model]\nprecision = "int8"\n[detector]\nkind = "blazeface"\n' >"$work/short.toml"
printf '[model]\nprecision = "int8"\nuse = "commercial"\n' >"$work/commercial.toml"
# Headless: the demo's camera frames with no display (`run --demo` always writes PNGs).
printf '[model]\nprecision = "int8"\n[camera]\nsource = "demo"\nrepeat = false\n[display]\ntarget = "none"\n[stats]\ndir = "%s"\nk_anonymity = 1\n' \
    "$work/headless-stats" >"$work/headless.toml"
run_env=(env -u CACHE_DIRECTORY -u AGECAM_CONFIG RUST_LOG=warn)

# Guest instructions of one run of the aarch64 binary with the given arguments.
count_aarch64() {
    local log="$work/qemu.$RANDOM"
    set -- "${@/#@FRESH@/$(mktemp -d -p "$work")}"
    "${run_env[@]}" qemu-aarch64 -cpu "$qcpu" -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib \
        -plugin "$plugin,inline=on" -d plugin -D "$log" "$bin" "$@" >"$log.out" 2>&1 ||
        { echo "aarch64-cost.sh: qemu-aarch64 $bin $* failed:" >&2; tail -5 "$log.out" >&2; return 1; }
    awk '/^insns:/ { print $2 }' "$log"
}
# Instructions of one run of the x86 binary under callgrind.
count_x86() {
    local log="$work/cg.$RANDOM"
    set -- "${@/#@FRESH@/$(mktemp -d -p "$work")}"
    "${run_env[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$x86_bin" "$@" >"$log.out" 2>"$log" ||
        { echo "aarch64-cost.sh: callgrind $x86_bin $* failed:" >&2; tail -5 "$log" >&2; return 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log" | tail -1
}
# (count with n2 − count with n1) / (n2 − n1) for a command whose last argument is the count.
per_unit() {
    local counter=$1 n1=$2 n2=$3; shift 3
    local c1 c2
    c1=$("$counter" "$@" "$n1") && c2=$("$counter" "$@" "$n2") || return 1
    [ -n "$c1" ] && [ -n "$c2" ] || { echo "aarch64-cost.sh: no instruction count from $counter $*" >&2; return 1; }
    echo $(( (c2 - c1) / (n2 - n1) ))
}

stages=(decode decode-half decode-quarter decode-eighth decode-image overlay-panel detect-yunet detect-cascade detect detect-full-range detect-back detect-seeta crop pose infer-f32 infer-int8)
for l in "${qlinear[@]}"; do stages+=("infer-qlinear-$l"); done
stages+=(frame frame-headless frame-commercial frame-short-range frame-every)
if [ -n "$only" ]; then
    IFS=, read -r -a wanted <<<"$only"
    for w in "${wanted[@]}"; do
        [[ " ${stages[*]} " == *" $w "* ]] || { echo "aarch64-cost.sh: no stage '$w' (stages: ${stages[*]})" >&2; exit 2; }
    done
    stages=("${wanted[@]}")
fi
declare -A model_file
for f in "${extra_models[@]}"; do
    [ -s "$f" ] || { echo "aarch64-cost.sh: --model $f: no such file (an ONNX model from agecam-host export or quantize)" >&2; exit 2; }
    s="model:$(basename "$f" .onnx)"
    model_file[$s]=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
    stages+=("$s")
done
declare -A what unit arm x86c  # arm is keyed "cpu stage"
for s in "${stages[@]}"; do
    case "$s" in
        decode) what[$s]="MJPEG decode, 640x480 demo frame (libjpeg-turbo)"; unit[$s]=frame ;;
        decode-half) what[$s]="the same at 1/2 (320x240)"; unit[$s]=frame ;;
        decode-quarter) what[$s]="the same at 1/4 (160x120)"; unit[$s]=frame ;;
        decode-eighth) what[$s]="the same at 1/8 (80x60)"; unit[$s]=frame ;;
        decode-image) what[$s]="whole, image crate (zune-jpeg; before)"; unit[$s]=frame ;;
        overlay-panel) what[$s]="overlay onto a 320x240 RGB565 panel buffer"; unit[$s]=frame ;;
        detect-yunet) what[$s]="YuNet 640x480 + short-range check (research default)"; unit[$s]=call ;;
        detect-cascade) what[$s]="BlazeFace back + short-range check (commercial default)"; unit[$s]=call ;;
        detect) what[$s]="BlazeFace short-range"; unit[$s]=call ;;
        detect-full-range) what[$s]="BlazeFace full-range"; unit[$s]=call ;;
        detect-back) what[$s]="BlazeFace back-camera"; unit[$s]=call ;;
        detect-seeta) what[$s]="SeetaFace cascade (fallback)"; unit[$s]=call ;;
        crop) what[$s]="face crop to 128x128"; unit[$s]=face ;;
        pose) what[$s]="head pose from 5 landmarks (YuNet's)"; unit[$s]=face ;;
        infer-f32) what[$s]="age/gender f32 (manifest)"; unit[$s]=face ;;
        infer-int8) what[$s]="age/gender weight-only int8 (manifest)"; unit[$s]=face ;;
        infer-qlinear-pointwise) what[$s]="age/gender QLinearConv, 1x1 convs"; unit[$s]=face ;;
        infer-qlinear-all) what[$s]="age/gender QLinearConv, all convs"; unit[$s]=face ;;
        frame) what[$s]="daemon frame, configured [schedule], YuNet (research)"; unit[$s]=frame ;;
        frame-headless) what[$s]="daemon frame, configured [schedule], YuNet, no display"; unit[$s]=frame ;;
        frame-commercial) what[$s]="daemon frame, configured [schedule], cascade (commercial)"; unit[$s]=frame ;;
        frame-short-range) what[$s]="daemon frame, configured [schedule], BlazeFace short-range"; unit[$s]=frame ;;
        frame-every) what[$s]="daemon frame, detect+classify every frame, YuNet"; unit[$s]=frame ;;
        model:*) what[$s]="age/gender --model ${s#model:}.onnx"; unit[$s]=face ;;
    esac
done

# Arguments of one measurement, up to the repeat count appended by per_unit.
stage_args() {
    case "$1" in
        frame) echo "--config $work/cost.toml run --demo --models models --out @FRESH@ --max-frames" ;;
        frame-every) echo "--config $work/every.toml run --demo --models models --out @FRESH@ --max-frames" ;;
        frame-headless) echo "--config $work/headless.toml run --models models --max-frames" ;;
        frame-short-range) echo "--config $work/short.toml run --demo --models models --out @FRESH@ --max-frames" ;;
        frame-commercial) echo "--config $work/commercial.toml run --demo --models models --out @FRESH@ --max-frames" ;;
        infer-qlinear-*) echo "cost infer --model $cache/age_gender_qlinear_${1#infer-qlinear-}.onnx --models models --repeat" ;;
        model:*) echo "cost infer --model ${model_file[$1]} --models models --repeat" ;;
        *) echo "cost $1 --models models --repeat" ;;
    esac
}
# The daemon's frames: the demo shows 3 stills for P frames each (DEMO_FRAMES_PER_STILL) and
# writes a PNG every P frames; frames P/2+1 to P/2+2P span all three stills, two still changes
# and two PNGs. `frame` with the configured [schedule], `frame-every` with the every-frame one.
per_still=$(sed -n 's/.*DEMO_FRAMES_PER_STILL: u32 = \([0-9]*\);.*/\1/p' src/daemon.rs)
per_still=${per_still:-10}
n1_of() { case "$1" in frame*) echo $((per_still / 2)) ;; *) echo 1 ;; esac; }
# pose is a few thousand instructions: 1000 calls per repetition so that it is counted at all.
n2_of() { case "$1" in frame*) echo $((per_still / 2 + 2 * per_still)) ;; pose) echo $((1 + 1000 * $2)) ;; *) echo $((1 + $2)) ;; esac; }

for qcpu in "${cpus[@]}"; do
    for s in "${stages[@]}"; do
        echo "counting $s under qemu-aarch64 -cpu $qcpu ..." >&2
        # shellcheck disable=SC2046
        arm[$qcpu $s]=$(per_unit count_aarch64 "$(n1_of "$s")" "$(n2_of "$s" "$repeat")" $(stage_args "$s")) ||
            arm[$qcpu $s]=failed
        echo "  ${arm[$qcpu $s]} per ${unit[$s]}" >&2
    done
done
x86_note=""
if [ "$x86" = 1 ]; then
    if ! command -v valgrind >/dev/null; then
        note "--x86: valgrind is not installed (apt-get install valgrind)"; x86=0
    elif [ -z "$x86_bin" ] || ! "$x86_bin" cost --help >/dev/null 2>&1; then
        note "--x86: no x86 agecam with the cost subcommand (cargo build --workspace --bins, or set AGECAM_X86_BIN)"; x86=0
    else
        case "$x86_built" in *debug*) x86_note=" (dev profile: dependencies -O3, agecam's own code -O1)" ;; esac
        x86_repeat=$(( repeat < 2 ? repeat : 2 ))
        for s in "${stages[@]}"; do
            echo "counting $s under callgrind ..." >&2
            # shellcheck disable=SC2046
            x86c[$s]=$(per_unit count_x86 "$(n1_of "$s")" "$(n2_of "$s" "$x86_repeat")" $(stage_args "$s")) || x86c[$s]=failed
            echo "  ${x86c[$s]} per ${unit[$s]}" >&2
        done
    fi
fi

# --- report -----------------------------------------------------------------------------------
human() { case "$1" in ''|failed) echo "${1:--}" ;; *) awk -v n="$1" 'BEGIN { printf "%.1f M", n / 1e6 }' ;; esac; }
echo
echo "Guest instructions per unit, difference of runs with N1 and N2 repetitions (aarch64: qemu-aarch64 $(qemu-aarch64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') -cpu MODEL + QEMU's insn plugin; M = million)"
row=$(printf '%-24s %-42s %-6s' stage what per)
for c in "${cpus[@]}"; do row+=$(printf ' %12s' "$c"); done
[ "$x86" = 1 ] && row+=$(printf ' %12s' x86)
echo "$row"
for s in "${stages[@]}"; do
    row=$(printf '%-24s %-42s %-6s' "$s" "${what[$s]}" "${unit[$s]}")
    for c in "${cpus[@]}"; do row+=$(printf ' %12s' "$(human "${arm[$c $s]}")"); done
    [ "$x86" = 1 ] && row+=$(printf ' %12s' "$(human "${x86c[$s]:-}")")
    echo "$row"
done
[ "$x86" = 1 ] && note "x86: valgrind --tool=callgrind on $x86_built$x86_note, N2 - N1 = $x86_repeat"
note "aarch64: $bin_built; N2 - N1 = $repeat per stage, $((2 * per_still)) for the daemon frames"
note "daemon frames: run --demo frames $((per_still / 2 + 1))-$((per_still / 2 + 2 * per_still)) (model.precision = int8): its decoded stills change every $per_still frames (2 JPEG decodes, 2 PNG writes in the $((2 * per_still))), so each still is a short new visit"
for n in "${notes[@]}"; do echo "note: $n"; done
echo "took $((SECONDS - started)) s"
if [ "$json" = 1 ]; then
    {
        printf '{"unit":{'
        sep=""; for s in "${stages[@]}"; do printf '%s"%s":"%s"' "$sep" "$s" "${unit[$s]}"; sep=","; done
        printf '},"aarch64":{'
        csep=""
        for c in "${cpus[@]}"; do
            printf '%s"%s":{' "$csep" "$c"; csep=","
            sep=""; for s in "${stages[@]}"; do v=${arm[$c $s]}; [ "$v" = failed ] && v=null; printf '%s"%s":%s' "$sep" "$s" "$v"; sep=","; done
            printf '}'
        done
        printf '}'
        if [ "$x86" = 1 ]; then
            printf ',"x86":{'
            sep=""; for s in "${stages[@]}"; do v=${x86c[$s]:-null}; [ "$v" = failed ] && v=null; printf '%s"%s":%s' "$sep" "$s" "$v"; sep=","; done
            printf '}'
        fi
        printf ',"repeat":%s,"seconds":%s,"notes":[' "$repeat" "$((SECONDS - started))"
        sep=""; for n in "${notes[@]}"; do printf '%s"%s"' "$sep" "$(printf '%s' "$n" | sed 's/[\\"]/\\&/g')"; sep=","; done
        printf ']}\n'

    }
fi
