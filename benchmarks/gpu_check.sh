#!/usr/bin/env bash
# One GPU check: every path the CPU tests cannot reach, in one run of under 8 minutes on one GPU.
#
# Steps (each under its own `timeout`, each failure recorded without stopping the others):
#   env          torch and CUDA versions, the GPU (nvidia-smi)
#   cuda_tests   the tests that skip without CUDA (pytest -k "cuda or device_plumbing", tests/)
#   train_step   benchmarks/bench_train_step.py: fp32 vs bf16 + channels-last, InfoNCE vs InfoNCE + CLOP
#   loader       benchmarks/bench_loader.py, digits and SimCLR at 32 px: views/s of both loaders and their ratio
#   pretrain     python -m training.pretrain --smoke at 32 px for 2 epochs: images/s (from metrics.csv)
#   lr_bound     python simulations/lr_bound.py on the device (Figure 3) and its time; on CUDA also the
#                CPU run of the same figure, and whether their max_lr columns agree to 1e-12
#   ffn          benchmarks/bench_ffn.py (Table 5's fused FFN training against the plain autograd baseline)
#   table5       simulations/synthetic_ffn.py on the device (20 seeds x 40 epochs, the default engine: fused torch
#                operations on CUDA, the native kernel on a CPU) and its run time; then, in float64 on the device,
#                the fused engine against the autograd one for every loss with CLOP (outputs agree to 1e-9)
#
# Writes one summary (default $OUT/gpu_check.txt where $OUT is set, else ./gpu_check.txt): per step its
# status (ok, FAIL rc=N, TIMEOUT after N s, SKIPPED), seconds and key numbers, then the totals; each
# step's full output goes to gpu_check_logs/<step>.log beside the summary, the runs' own outputs
# (figures, the pre-training run with its checkpoints) to --work. Exit status: 0 when every step that
# ran passed, 1 otherwise.
#
# Usage: bash benchmarks/gpu_check.sh [--dry-run] [--device cuda|cpu] [--summary PATH] [--only a,b,...]
#                                     [--python PY] [--budget SECONDS] [--work DIR]
#   --dry-run   print each step's command and time limit, run nothing (testable on any machine)
#   --device    cuda (default) or cpu: the CPU mode runs the same steps on the CPU (minutes on 2 cores)
#   --only      comma-separated step names (default: all)
#   --python    interpreter (default: $PYTHON, else .venv/bin/python where it exists, else python3)
#   --budget    total seconds for all steps (default 450): each step's limit is its own cap or what is
#               left of the budget, whichever is smaller; a step with under 15 s left is SKIPPED
#   --work      folder for the runs' outputs (default: a new folder under ${TMPDIR:-/tmp})
set -u

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)

DRY=0
DEVICE=cuda
SUMMARY=""
ONLY=""
PY="${PYTHON:-}"
BUDGET=450
WORK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --device) DEVICE="${2:?--device needs a value}"; shift ;;
        --summary) SUMMARY="${2:?--summary needs a path}"; shift ;;
        --only) ONLY="${2:?--only needs step names}"; shift ;;
        --python) PY="${2:?--python needs an interpreter}"; shift ;;
        --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
        --work) WORK="${2:?--work needs a folder}"; shift ;;
        -h|--help) sed -n '2,28p' "$0" | cut -c3-; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$DEVICE" in cuda|cuda:*|cpu) ;; *) echo "gpu_check.sh: --device must be cuda, cuda:N or cpu; got $DEVICE" >&2; exit 2 ;; esac
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check.sh: --budget must be a whole number of seconds; got $BUDGET" >&2; exit 2 ;; esac
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
if [ -z "$SUMMARY" ]; then
    SUMMARY="${OUT:-.}/gpu_check.txt"
fi
SUMMARY_DIR=$(dirname "$SUMMARY")
LOGS="$SUMMARY_DIR/gpu_check_logs"
if [ -z "$WORK" ]; then  # a fresh, unpredictable folder (mktemp); a dry run only names its pattern
    if [ "$DRY" = 1 ]; then WORK="${TMPDIR:-/tmp}/gpu_check_work.XXXXXXXX"
    else WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_work.XXXXXXXX") || { echo "gpu_check.sh: mktemp -d failed" >&2; exit 2; }
    fi
fi
CUDA=0
case "$DEVICE" in cuda*) CUDA=1 ;; esac

ALL_STEPS="env cuda_tests train_step loader pretrain lr_bound ffn table5"
STEP_NAMES=()
STEP_CAPS=()
STEP_CMDS=()
add_step() {  # name, cap in seconds, command (one string, run by bash -c in the repository root)
    STEP_NAMES+=("$1")
    STEP_CAPS+=("$2")
    STEP_CMDS+=("$3")
}

q() { printf '%q' "$1"; }  # shell-quote one word
P=$(q "$PY")
D=$(q "$DEVICE")
W=$(q "$WORK")

add_step env 30 "$P -c 'import torch, platform; print(\"python\", platform.python_version(), \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available(), \"devices\", torch.cuda.device_count()); print(\"gpu\", torch.cuda.get_device_name() if torch.cuda.is_available() else \"none\")' && { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo 'nvidia-smi: not found'; }"
add_step cuda_tests 150 "$P -m pytest -q -rs -p no:cacheprovider -k 'cuda or device_plumbing' tests"
add_step train_step 150 "$P benchmarks/bench_train_step.py --device $D"
add_step loader 90 "$P benchmarks/bench_loader.py --device $D --dataset digits && $P benchmarks/bench_loader.py --device $D --dataset synthetic"
add_step pretrain 120 "$P -m training.pretrain --smoke --image-size 32 --epochs 2 --device $D --out $W/pretrain --overwrite --no-progress && tail -n 3 $W/pretrain/metrics.csv"
if [ "$CUDA" = 1 ]; then
    # the CUDA engine (torch ops) and the CPU engine (native kernel) sum in other orders: the searched rates agree
    # to the last bits where every collapse decision agrees; a different decision moves a rate by the resolution
    add_step lr_bound 150 "$P simulations/lr_bound.py --device $D --out $W/figure3_$DEVICE && $P simulations/lr_bound.py --device cpu --out $W/figure3_cpu && $P -c 'import sys, pandas as pd; a, b = (pd.read_csv(f) for f in sys.argv[1:3]); d = (a.max_lr - b.max_lr).abs(); print(\"figure3_max_lr.csv: %s vs cpu: %d of %d max_lr differ, largest by %.3g\" % (sys.argv[3], (d > 0).sum(), len(d), d.max())); sys.exit(int(d.max() > 1e-12))' $W/figure3_$DEVICE/figure3_max_lr.csv $W/figure3_cpu/figure3_max_lr.csv $D"
else
    add_step lr_bound 120 "$P simulations/lr_bound.py --device $D --out $W/figure3_$DEVICE"
fi
add_step ffn 120 "$P benchmarks/bench_ffn.py --device $D --rounds 1"
add_step table5 120 "$P simulations/synthetic_ffn.py --device $D --seeds 20 --epochs 40 --no-progress --out $W/table5_$DEVICE | grep -E '^(Device|Runtime)' && $P -c 'import sys, torch; from simulations.ffn import data as fd, train as ft; d = fd.stack_data([fd.make_data(s, **fd.REGIMES[\"overlapping\"]) for s in range(4)]); kw = dict(epochs=3, dtype=torch.float64, device=sys.argv[1]); diffs = {n: float((ft.train_runs(n, True, d, engine=\"fused\", **kw) - ft.train_runs(n, True, d, engine=\"autograd\", **kw)).abs().max()) for n in ft.LOSSES}; print(\"fused vs autograd, float64 on %s: max |output difference| %s\" % (sys.argv[1], diffs)); sys.exit(int(max(diffs.values()) > 1e-9))' $D"

selected() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *,"$1",*) return 0 ;; esac
    return 1
}
if [ -n "$ONLY" ]; then
    for s in ${ONLY//,/ }; do
        case " $ALL_STEPS " in *" $s "*) ;; *) echo "gpu_check.sh: unknown step in --only: $s (steps: $ALL_STEPS)" >&2; exit 2 ;; esac
    done
fi

if [ "$DRY" = 1 ]; then
    echo "gpu_check.sh --dry-run: device $DEVICE, python $PY, budget ${BUDGET} s, summary $SUMMARY, work $WORK"
    for i in "${!STEP_NAMES[@]}"; do
        selected "${STEP_NAMES[$i]}" || continue
        echo "[${STEP_NAMES[$i]}] (limit ${STEP_CAPS[$i]} s) ${STEP_CMDS[$i]}"
    done
    exit 0
fi

mkdir -p "$LOGS" "$WORK" || { echo "gpu_check.sh: cannot create $LOGS" >&2; exit 2; }

# key numbers of a step, from its log: a few lines, joined with " | "
key_numbers() {
    local name=$1 log=$2
    case "$name" in
        env) grep -E '^(python|gpu) |, ' "$log" | head -n 3 ;;
        cuda_tests) grep -E '[0-9]+ (passed|failed|skipped|error)' "$log" | tail -n 1
                    grep -c '^SKIPPED' "$log" | sed 's/^/skipped lines: /' ;;
        train_step) grep -E 'images/s|overhead|speed-up|CLOP term' "$log" ;;
        loader) grep -E 'views/s|ratio' "$log" ;;
        pretrain) grep -oE '[0-9.]+ img/s' "$log" | tail -n 2 ;;
        lr_bound) grep -E '^time:|figure3_max_lr.csv:' "$log" ;;
        ffn) grep -E 'compute limit|workers|per-regime' "$log" | tail -n 6 ;;
        table5) grep -E '^Runtime|fused vs autograd' "$log" ;;
    esac | sed 's/^ *//' | paste -sd '|' - | sed 's/|/ | /g' | cut -c1-600
}

START=$(date +%s)
N_OK=0
N_FAIL=0
N_SKIP=0
{
    echo "gpu_check  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(hostname)  device $DEVICE  python $PY"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')  budget ${BUDGET} s"
    printf '%-11s %-20s %8s  %s\n' step status seconds "key numbers"
} > "$SUMMARY"
for i in "${!STEP_NAMES[@]}"; do
    name=${STEP_NAMES[$i]}
    selected "$name" || continue
    log="$LOGS/$name.log"
    left=$(( BUDGET - ($(date +%s) - START) ))
    limit=${STEP_CAPS[$i]}
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 15 ]; then
        status="SKIPPED (budget)"
        secs=0
        keys=""
        N_SKIP=$((N_SKIP + 1))
    else
        echo "[$name] (limit $limit s) ${STEP_CMDS[$i]}"
        t0=$(date +%s.%N)
        timeout --kill-after=10 "$limit" bash -c "${STEP_CMDS[$i]}" > "$log" 2>&1
        rc=$?
        t1=$(date +%s.%N)
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
        if [ "$rc" = 0 ]; then
            status=ok
            N_OK=$((N_OK + 1))
        elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            status="TIMEOUT after $limit s"
            N_FAIL=$((N_FAIL + 1))
        else
            status="FAIL rc=$rc"
            N_FAIL=$((N_FAIL + 1))
        fi
        keys=$(key_numbers "$name" "$log")
        if [ "$status" != ok ]; then
            keys="$keys${keys:+ | }last: $(tail -n 2 "$log" | tr '\n' ' ' | cut -c1-300)"
        fi
        echo "[$name] $status in $secs s"
    fi
    printf '%-11s %-20s %8s  %s\n' "$name" "$status" "$secs" "$keys" >> "$SUMMARY"
done
TOTAL=$(( $(date +%s) - START ))
echo "total: $N_OK ok, $N_FAIL failed, $N_SKIP skipped, $TOTAL s; logs in $LOGS, outputs in $WORK" >> "$SUMMARY"
cat "$SUMMARY"
[ "$N_FAIL" = 0 ]
