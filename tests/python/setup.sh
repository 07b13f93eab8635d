#!/usr/bin/env bash
# Installs what the integration tests need from PyPI when absent: `requests`
# (third-party client test) and `moto[server]` (a local S3-compatible server
# for the S3 blob-store test).
set -euo pipefail
pip_install() {
    python3 -m pip install --quiet "$@" || python3 -m pip install --quiet --break-system-packages "$@"
}
python3 -c 'import requests' 2>/dev/null || pip_install requests
command -v moto_server >/dev/null 2>&1 || pip_install 'moto[server]'
