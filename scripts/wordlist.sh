#!/usr/bin/env bash
# Regenerates operators/data/english-words.txt.gz, the word list of the `unknown words` check:
# the lower-case words of Debian's wamerican and wbritish (SCOWL size 50, 2020.12.07-2), without
# possessives, sorted. Its copyright notice is operators/data/SCOWL-COPYRIGHT.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download wamerican=2020.12.07-2 wbritish=2020.12.07-2 2>/dev/null)
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
cat "$tmp"/x/usr/share/dict/american-english "$tmp"/x/usr/share/dict/british-english \
  | grep -v "'" | grep -v '^[A-Z]' | LC_ALL=C sort -u | gzip -9n > operators/data/english-words.txt.gz
cp "$tmp"/x/usr/share/doc/wamerican/copyright operators/data/SCOWL-COPYRIGHT
zcat operators/data/english-words.txt.gz | wc -l
