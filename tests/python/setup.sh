#!/usr/bin/env bash
# Installs what tests/python needs (the `requests` library) when it is absent.
set -euo pipefail
if ! python3 -c 'import requests' 2>/dev/null; then
    python3 -m pip install --quiet requests || python3 -m pip install --quiet --break-system-packages requests
fi
