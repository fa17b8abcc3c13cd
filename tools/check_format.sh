#!/usr/bin/env bash
# Every C++ and CUDA source glimpse owns, held to .clang-format (Debian 12's clang-format 14):
#   tools/check_format.sh         list the files that differ and exit 1 (CI runs this)
#   tools/check_format.sh --fix   reformat them in place
# Third-party code is never in the tree, so every tracked source is ours.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
command -v clang-format >/dev/null || { echo "check_format: clang-format not installed (apt-get install clang-format)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.hpp' '*.cpp' '*.inc' '*.cu' '*.cuh')
bad=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
    [ $fix -eq 1 ] && clang-format -i "$f"
  fi
done
if [ ${#bad[@]} -eq 0 ]; then
  echo "check_format: ${#files[@]} sources formatted as .clang-format says"
  exit 0
fi
if [ $fix -eq 1 ]; then
  echo "check_format: reformatted ${#bad[@]} of ${#files[@]} sources: ${bad[*]}"
  exit 0
fi
echo "check_format: ${#bad[@]} of ${#files[@]} sources differ from .clang-format (run tools/check_format.sh --fix):" >&2
printf '  %s\n' "${bad[@]}" >&2
for f in "${bad[@]:0:3}"; do clang-format --dry-run "$f" 2>&1 | head -20 >&2; done
exit 1
