#!/bin/sh
# Renders site/*.html.in into $1, substituting @TITLE@; leaves a build cache in /src/.cache
# (a stand-in for compilers and wheel caches that multi-stage builds keep out of the runtime).
set -eu
out=$1
title=$2
mkdir -p "$out" /src/.cache
head -c 4194304 /dev/urandom >/src/.cache/toolchain.bin
for page in site/*.html.in; do
  name=$(basename "$page" .in)
  sed "s|@TITLE@|$title|g" "$page" >"$out/$name"
done
cp site/style.css "$out/"
echo "rendered $(ls "$out" | wc -l) files into $out"
