#!/usr/bin/env bash
# Builds the thumbnailer component into $1, skipping the (slow) build when neither the
# source, the WIT nor the toolchain changed since the last one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
cd "$here"
stamp_of() { cat thumbnailer.js build.mjs package-lock.json ../../wit/*.wit | sha256sum | cut -d' ' -f1; }
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
stamp=$(stamp_of)
if [ -f "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$stamp" ]; then
  exit 0
fi
node build.mjs "$out"
echo "$stamp" > "$out.stamp"
