#!/usr/bin/env bash
# Debian's Chromium for the annotation app's end-to-end browser test (Playwright drives it through
# executable_path; Playwright's own browser download cannot work without network). Quiet when already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ]; then echo "install_browser: not root; skipping Chromium (browser tests will say so)"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
