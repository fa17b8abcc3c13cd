#!/usr/bin/env bash
# submit.sh N [SBATCH_OPTION...]
#
# Submits compare_array.sbatch as an N-task array job (--array=0-(N-1)) and merge.sbatch with
# --dependency=afterok on it, passing this shell's environment (--export=ALL: GLIMPSE_COMPARE,
# BASE_MODEL, FINETUNED_MODEL, BATCH, OUTPUT_DIR, EXTRA_ARGS; see compare_array.sbatch). Further
# arguments go to both sbatch calls before the script, e.g. --partition=cpu --time=2:00:00
# --cpus-per-task=8 (the merge gets them too). Logs (%x-%A_%a.out,
# %x-%j.out) are written in the current directory. Prints:
#   array job: <id>
#   merge job: <id>
# Rerunning it resumes: images done with the same inputs are skipped (their fingerprints).

set -euo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
    echo "usage: $0 N [SBATCH_OPTION...]   (N >= 1 array tasks)" >&2
    exit 2
fi
n=$1
shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${BASE_MODEL:?set BASE_MODEL}" "${FINETUNED_MODEL:?set FINETUNED_MODEL}" "${BATCH:?set BATCH}"
: "${OUTPUT_DIR:?set OUTPUT_DIR}"
export SHARDS=$n

array_id=$(sbatch --parsable --export=ALL --array="0-$((n - 1))" "$@" "$here/compare_array.sbatch")
array_id=${array_id%%;*}  # --parsable prints "id" or "id;cluster"
echo "array job: $array_id"

merge_id=$(sbatch --parsable --export=ALL --dependency="afterok:$array_id" "$@" "$here/merge.sbatch")
merge_id=${merge_id%%;*}
echo "merge job: $merge_id"
