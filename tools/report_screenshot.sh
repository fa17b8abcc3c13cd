#!/bin/sh
# Screenshot of a glimpse-compare batch report (OUT/index.html) with headless Chromium:
# what docs/images/batch_report.png is made with.
#
#   tools/report_screenshot.sh out/index.html docs/images/batch_report.png [WIDTH,HEIGHT]
#
# Debian's package is `chromium`; set CHROMIUM to use another binary. The profile goes to a
# temporary HOME, so a machine without a writable home (CI, root in a container) works too.
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 PAGE.html OUT.png [WIDTH,HEIGHT]  (default 1400,1000)" >&2
    exit 2
fi
page=$1
png=$2
size=${3:-1400,1000}
[ -f "$page" ] || { echo "$0: no such page: $page" >&2; exit 1; }

chromium=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$chromium" ] || { echo "$0: chromium not found (apt-get install chromium, or set CHROMIUM)" >&2; exit 1; }

# Absolute paths: Chromium runs in the temporary HOME, and a file:// URL must be absolute.
page_abs=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
case $png in /*) png_abs=$png ;; *) png_abs=$(pwd)/$png ;; esac

home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
# --virtual-time-budget: let the lazy thumbnails in the first screen load before the shot.
HOME=$home timeout 120 "$chromium" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$home/profile" --window-size="$size" --virtual-time-budget=5000 \
    --screenshot="$png_abs" "file://$page_abs" >"$home/chromium.log" 2>&1 || {
    cat "$home/chromium.log" >&2
    exit 1
}
[ -s "$png_abs" ] || { cat "$home/chromium.log" >&2; echo "$0: no screenshot written" >&2; exit 1; }
echo "$png_abs: $(wc -c <"$png_abs") bytes"
