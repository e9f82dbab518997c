#!/bin/sh
# The test stage: every page is rendered and links only to pages that exist.
set -eu
out=$1
status=0
for page in "$out"/*.html; do
  if grep -q '@TITLE@' "$page"; then
    echo "FAIL $page: unrendered placeholder"; status=1
  fi
  for link in $(grep -o 'href="[^"]*"' "$page" | sed 's/href="\(.*\)"/\1/'); do
    [ -e "$out/$link" ] || { echo "FAIL $page: broken link $link"; status=1; }
  done
done
[ "$status" = 0 ] && echo "PASS all pages"
exit "$status"
