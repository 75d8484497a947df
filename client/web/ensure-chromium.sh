#!/usr/bin/env bash
# Test setup (npm's pretest): the web client's end-to-end test drives Debian's Chromium through playwright-core.
# Installs the `chromium` package when it is missing and we are root; otherwise says what to do. Never fails the
# run by itself: without a browser the end-to-end test fails and names the missing package.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test setup: Chromium is missing; install Debian's package: sudo apt-get install -y chromium" >&2
  exit 0
fi
echo "test setup: installing Debian's chromium for the browser test" >&2
apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
  { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } ||
  echo "test setup: could not install chromium; the browser test will fail and say why" >&2
exit 0
