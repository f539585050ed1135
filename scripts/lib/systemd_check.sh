#!/usr/bin/env bash
# `systemd-analyze verify` on packaging/systemd/*.service (run by scripts/packaging-check).
#
# verify insists that ExecStart's binary exists, so each unit is checked as a copy whose
# /usr/local/bin/ points at a stand-in directory; anything verify prints (an unknown key, a
# bad value) counts as a failure. Skipped, with a message, where systemd-analyze is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "skip  systemd-analyze is not installed (Debian: apt-get install systemd)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
passed=0 failed=0
for unit in packaging/systemd/*.service; do
  name="$(basename "$unit")"
  bin="$(sed -n 's#^ExecStart=/usr/local/bin/\([^ ]*\).*#\1#p' "$unit")"
  if [ -z "$bin" ]; then
    echo "FAIL  $name: ExecStart does not start /usr/local/bin/<binary>"
    failed=$((failed + 1))
    continue
  fi
  printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/$bin"
  chmod +x "$tmp/bin/$bin"
  sed "s#/usr/local/bin/#$tmp/bin/#g" "$unit" > "$tmp/$name"
  if out="$(systemd-analyze verify "$tmp/$name" 2>&1)" && [ -z "$out" ]; then
    echo "ok    systemd-analyze verify $name"
    passed=$((passed + 1))
  else
    echo "FAIL  systemd-analyze verify $name"
    printf '%s\n' "$out" | sed "s#$tmp/#packaging/systemd/#g; s/^/      /"
    failed=$((failed + 1))
  fi
done
echo
echo "systemd-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
