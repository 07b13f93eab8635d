#!/usr/bin/env bash
# Builds the thumbnailer component into $1, skipping the (slow) build when neither the
# source, the WIT nor the toolchain changed since the last one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
cd "$here"
TMPDIR_LOCK=$(mktemp -d)
trap 'rm -rf "$TMPDIR_LOCK"' EXIT
stamp_of() { cat thumbnailer.js build.mjs package-lock.json ../../wit/*.wit | sha256sum | cut -d' ' -f1; }
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
  # npm >= 11 refuses `npm ci` on this lock (it lists per-platform optional binaries that
  # newer npm resolves differently). Fall back to `npm install`, which honours the pinned
  # versions in the lock, and put the committed lock back so the tree stays clean.
  if ! npm ci --no-audit --no-fund --loglevel=silent; then
    cp package-lock.json "$TMPDIR_LOCK/package-lock.json"
    npm install --no-audit --no-fund --loglevel=error
    cp "$TMPDIR_LOCK/package-lock.json" package-lock.json
  fi
fi
stamp=$(stamp_of)
if [ -f "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$stamp" ]; then
  exit 0
fi
node build.mjs "$out"
echo "$stamp" > "$out.stamp"
