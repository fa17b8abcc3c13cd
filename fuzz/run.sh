#!/usr/bin/env bash
# Builds every libFuzzer harness in fuzz/ with clang (-fsanitize=fuzzer,address,undefined),
# replays every reproducer in fuzz/regressions/<harness>/, then fuzzes each harness from its
# committed seed corpus (fuzz/corpus/<harness>/, copied: the repository is not written).
#
#   fuzz/run.sh                 CI: a fixed-seed run of --runs inputs per harness (default 20000)
#   fuzz/run.sh --minutes N     by hand: N minutes per harness, time-bounded, new seeds
#   fuzz/run.sh --only NAME     one harness (fuzz_safetensors, ...)
#
# A crash, a leak, a sanitizer report or a timeout fails the script, prints the reproducer's
# path, and leaves it in $GLIMPSE_FUZZ_OUT (default build/fuzz/out): add it to
# fuzz/regressions/<harness>/ with the fix.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
runs=20000 minutes=0 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "fuzz/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cxx="${CXX_FUZZ:-clang++}"
command -v "$cxx" >/dev/null || { echo "fuzz/run.sh: $cxx not found (apt-get install clang)" >&2; exit 2; }
bin="$root/build/fuzz"
out="${GLIMPSE_FUZZ_OUT:-$bin/out}"
mkdir -p "$bin" "$out"
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -I"$root/include" -I/usr/include/stb
       -I/usr/include/eigen3
       -DGLIMPSE_FUZZ_IMAGE="\"$root/tests/data/images/square_100x100.png\""
       -DGLIMPSE_FUZZ_MODEL_DIR="\"$root/tests/data/qwen3_vl_tiny\""
       -DGLIMPSE_FUZZ_HEAD_DIR="\"$root/examples/data/qwen3_vl_tiny_finetuned\"")
status=0
for src in "$here"/fuzz_*.cpp; do
  name="$(basename "$src" .cpp)"
  [ -n "$only" ] && [ "$only" != "$name" ] && continue
  echo "== $name: build"
  "$cxx" "${flags[@]}" "$src" -o "$bin/$name" -ljpeg
  corpus="$out/corpus_$name"
  rm -rf "$corpus" && mkdir -p "$corpus"
  [ -d "$here/corpus/$name" ] && cp "$here/corpus/$name"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "$here/dict/$name.dict" ] && dict=(-dict="$here/dict/$name.dict")
  if [ -d "$here/regressions/$name" ] && [ -n "$(ls -A "$here/regressions/$name")" ]; then
    echo "== $name: replay $(ls "$here/regressions/$name" | wc -l) regressions"
    if ! "$bin/$name" -runs=1 "$here/regressions/$name"/* >"$out/$name.replay.log" 2>&1; then
      tail -40 "$out/$name.replay.log"; echo "fuzz/run.sh: $name fails on a regression input" >&2; status=1; continue
    fi
  fi
  if [ "$minutes" != 0 ]; then
    limit=(-max_total_time=$((minutes * 60)))
  else
    limit=(-runs="$runs" -seed=1)
  fi
  echo "== $name: fuzz (${limit[*]})"
  if ! (cd "$out" && "$bin/$name" "${limit[@]}" "${dict[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$out/$name-" "$corpus" >"$out/$name.log" 2>&1); then
    tail -40 "$out/$name.log"
    echo "fuzz/run.sh: $name found a failure; reproducer: $(ls "$out/$name-"* 2>/dev/null | head -1)" >&2
    status=1
    continue
  fi
  grep -E "stat::number_of_executed_units|cov:" "$out/$name.log" | tail -2 | sed "s/^/   /"
done
exit $status
