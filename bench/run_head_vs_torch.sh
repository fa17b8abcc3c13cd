#!/usr/bin/env bash
# The heatmap head, ours and PyTorch's, in one session (docs/benchmarks.md has the table).
#
#   PYTHON=/path/to/venv/bin/python bench/run_head_vs_torch.sh [out-dir]
#
# Runs, one after the other on an otherwise idle machine:
#   1. build/release/bench/glimpse_bench_head: GEMM peak rows and every head row except the
#      S = 16384 generic ones (JSON in out-dir/ours.json);
#   2. the S = 16384 generic rows, each in a process of its own, so their peak RSS is the
#      head's own and not the high-water mark of everything that ran before;
#   3. the PyTorch peer ../shared/bench/head_bench.py (SDPA fp32 and the folded fast path;
#      every configuration in its own process), out-dir/torch.json.
# The host is shared and noisy: compare figures from the same run only, and look at each
# row's `others` counter (cores used by other processes while it ran).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
BENCH=${BENCH:-$ROOT/build/release/bench/glimpse_bench_head}
PEER=${PEER:-$ROOT/../shared/bench/head_bench.py}
SIZES=${SIZES:-1024,4096,16384}
OUT=${1:-$ROOT/build/release/bench/head_vs_torch}
mkdir -p "$OUT"

if [[ ! -x $BENCH ]]; then
  echo "no $BENCH: cmake --preset release && cmake --build --preset release" >&2
  exit 1
fi

# Waits until the other processes leave the CPUs alone: three 2-s samples in a row in which
# all processes together kept less than 0.3 of a core busy (the peer script does the same
# before each of its configurations). Gives up after IDLE_MAX_WAIT seconds and says so.
IDLE_MAX_WAIT=${IDLE_MAX_WAIT:-3600}
wait_idle() {
  local start=$SECONDS ok=0 a b
  while (( ok < 3 )); do
    read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
    sleep 2
    read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
    a=$(( (b1 + b2 + b3 + b6 + b7) - (a1 + a2 + a3 + a6 + a7) ))
    b=$(( (b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8) - (a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8) ))
    if (( b > 0 && a * 10 * $(nproc) < 3 * b )); then ok=$((ok + 1)); else ok=0; sleep 10; fi
    if (( SECONDS - start > IDLE_MAX_WAIT )); then
      echo "   (still busy after ${IDLE_MAX_WAIT} s: measuring anyway; load $(cat /proc/loadavg))"
      return
    fi
  done
  (( SECONDS - start > 10 )) && echo "   (waited $((SECONDS - start)) s for an idle machine)"
  return 0
}

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $(date -Is)"
echo "== load: $(cat /proc/loadavg)"

echo "== glimpse (cpu backend)"
wait_idle
"$BENCH" --benchmark_filter='^peak/|^head/(generic|generic\+pooled|generic\+mean)/(1024|4096)/|^head/(dedup|folded)/' \
  --benchmark_out="$OUT/ours.json" --benchmark_out_format=json

for row in 'generic' 'generic\+pooled'; do
  echo "== glimpse, S = 16384 $row, own process"
  name=${row//\\/}
  wait_idle
  "$BENCH" --benchmark_filter="^head/$row/16384/" \
    --benchmark_out="$OUT/ours_16384_${name//+/_}.json" --benchmark_out_format=json
done

echo "== PyTorch peer ($PYTHON, $PEER)"
"$PYTHON" "$PEER" --sizes "$SIZES" --methods sdpa,folded --out "$OUT/torch.json"

echo "== results in $OUT"
