#!/usr/bin/env bash
# The cuda backend's whole GPU verification in one call: configure with GLIMPSE_CUDA=ON, build,
# `ctest -L cuda`, compute-sanitizer memcheck on the cuda tests, the benchmarks
# (glimpse_bench_cuda; glimpse_bench_encoders' 448 rows first, which cache the random
# full-size checkpoints) and the PyTorch peer (bench/torch_cuda_peer.py) on the same GPU.
#
#   bench/run_cuda.sh --fetch-deps   # HERE (Debian 12, apt): the build dependencies as .debs
#                                    # into .deps/ (ignored by git: .git/info/exclude)
#   bench/run_cuda.sh                # THERE (the GPU machine, no network): unpacks .deps/*.deb
#                                    # into /tmp/glimpse-deps when the libraries are missing
#
# From the device tool (10 minutes a call: two calls, back to back so the build is kept warm;
# the second rebuilds incrementally, or from scratch on a fresh machine):
#   run(command="GLIMPSE_RUN_STEPS=build,test,memcheck bench/run_cuda.sh", carry=[".deps"], timeout_s=600)
#   run(command="GLIMPSE_RUN_STEPS=build,encoders,bench,peer bench/run_cuda.sh", carry=[".deps"], timeout_s=600)
# Writes to $OUT (or build/gpu-out): run_cuda.log (everything), ctest_cuda.log, memcheck.log,
# bench_cuda.json, torch_peer.json, summary.txt (the last lines printed). Environment:
# GLIMPSE_RUN_STEPS (default "build,test,memcheck,bench,peer,encoders"; drop steps to fit a lease),
# GLIMPSE_CUDA_ARCH (default 90).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

deb_pkgs=(libeigen3-dev xtensor-dev xtl-dev libxsimd-dev nlohmann-json3-dev catch2 libbenchmark-dev
          libbenchmark1debian libstb-dev libstb0)
if [ "${1:-}" = "--fetch-deps" ]; then
  mkdir -p .deps
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.deps/' "$exclude" 2>/dev/null || echo '/.deps/' >> "$exclude"
  (cd .deps && apt-get download "${deb_pkgs[@]}")
  du -sh .deps
  exit 0
fi

OUT=${OUT:-$root/build/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run_cuda.log") 2>&1
steps=${GLIMPSE_RUN_STEPS:-build,test,memcheck,bench,peer,encoders}
has() { [[ ",$steps," == *",$1,"* ]]; }
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start ))s] $*"; }
summary=()
note() { summary+=("$*"); echo "$*"; }

stamp "device"
nvidia-smi -L || true
nvcc --version | tail -1

# Dependencies: the system's, else the carried .debs unpacked into a private prefix.
prefix_args=()
if ! [ -f /usr/include/eigen3/Eigen/Core ] && compgen -G ".deps/*.deb" >/dev/null; then
  stamp "unpacking .deps/*.deb into /tmp/glimpse-deps"
  mkdir -p /tmp/glimpse-deps
  for f in .deps/*.deb; do dpkg-deb -x "$f" /tmp/glimpse-deps; done
  prefix_args=(-DCMAKE_PREFIX_PATH=/tmp/glimpse-deps/usr "-DCMAKE_CXX_FLAGS=-I/tmp/glimpse-deps/usr/include")
  export LD_LIBRARY_PATH=/tmp/glimpse-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi

build=build/gpu
if has build; then
  stamp "configure + build ($build, sm_${GLIMPSE_CUDA_ARCH:-90})"
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGLIMPSE_CUDA=ON -DGLIMPSE_BUILD_TESTS=ON \
    -DGLIMPSE_BUILD_BENCH=ON -DGLIMPSE_BUILD_EXAMPLES=OFF -DGLIMPSE_BUILD_APPS=OFF -DGLIMPSE_HEADER_CHECK=OFF -DGLIMPSE_BLAS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="${GLIMPSE_CUDA_ARCH:-90}" "${prefix_args[@]}" || { note "configure FAILED"; exit 1; }
  cmake --build $build -j"$(nproc)" --target glimpse_cuda_tests glimpse_bench_cuda glimpse_bench_encoders \
    || { note "build FAILED"; exit 1; }
fi

if has test; then
  stamp "ctest -L cuda"
  if ctest --test-dir $build -L cuda --output-on-failure --timeout 600 > "$OUT/ctest_cuda.log" 2>&1; then
    note "ctest -L cuda: PASSED ($(grep -c 'Passed' "$OUT/ctest_cuda.log") tests)"
  else
    note "ctest -L cuda: FAILED: $(grep -E 'tests passed|Failed' "$OUT/ctest_cuda.log" | tr '\n' ' ')"
  fi
  grep -q "no CUDA device" "$OUT/ctest_cuda.log" && note "WARNING: the tests saw no CUDA device (skipped)"
fi

if has memcheck; then
  stamp "compute-sanitizer --tool memcheck"
  # Catch2's "~[models]" would skip the towers; they are small enough to check too.
  if compute-sanitizer --tool memcheck --error-exitcode 99 --leak-check full \
      $build/tests/glimpse_cuda_tests > "$OUT/memcheck.log" 2>&1; then
    note "memcheck: clean ($(tail -1 "$OUT/memcheck.log"))"
  else
    note "memcheck: ERRORS: $(grep -m3 -E 'ERROR SUMMARY|Invalid|failed' "$OUT/memcheck.log" | tr '\n' ' ')"
  fi
fi

if has encoders; then
  stamp "glimpse_bench_encoders 448 rows (CPU; writes the full-size random checkpoints)"
  $build/bench/glimpse_bench_encoders --benchmark_filter='encode/.*/448' \
    || note "bench_encoders FAILED"
fi

if has bench; then
  stamp "glimpse_bench_cuda"
  $build/bench/glimpse_bench_cuda --benchmark_out="$OUT/bench_cuda.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true || note "bench_cuda FAILED"
fi

if has peer; then
  stamp "PyTorch peer"
  PYTHONUNBUFFERED=1 python3 bench/torch_cuda_peer.py --out "$OUT/torch_peer.json" || note "torch peer FAILED"
fi

stamp "done"
{
  echo "glimpse cuda run, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  for s in "${summary[@]}"; do echo "  $s"; done
  if [ -f "$OUT/bench_cuda.json" ] && [ -f "$OUT/torch_peer.json" ]; then
    python3 - "$OUT/bench_cuda.json" "$OUT/torch_peer.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["benchmarks"]
t = {r["name"]: r for r in json.load(open(sys.argv[2]))["rows"] if "tflops" in r}
print(f"  {'row':<28} {'glimpse TF/s':>12} {'x_peak':>7}   best torch SDPA (TF/s)")
for r in g:
    n = r["name"].split("/iterations")[0]
    if "TFLOP/s" not in r:
        continue
    peers = {k.rsplit("/", 1)[1]: v["tflops"] for k, v in t.items() if k.rsplit("/", 1)[0] == n}
    best = max(peers.items(), key=lambda kv: kv[1]) if peers else ("-", 0.0)
    print(f"  {n:<28} {r['TFLOP/s']:12.1f} {r.get('x_peak', 0):7.3f}   {best[0]} {best[1]:.1f}")
PY
  fi
} | tee "$OUT/summary.txt"
