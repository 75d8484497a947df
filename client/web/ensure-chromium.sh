#!/usr/bin/env bash
# Browser setup for the web chat's end-to-end test (`npm run setup:browser`; .ci/run calls it before the tests): the
# test drives Debian's Chromium (/usr/bin/chromium) through playwright-core. An explicit step, never part of
# `npm test`: installing a system package is the user's decision. Installs the `chromium` package with apt-get when it
# is missing and this runs as root; otherwise says what to run. Exit 0 when Chromium is there afterwards, 1 otherwise.
# Without it `npm test` skips the browser test and prints why.
set -uo pipefail
chromium=/usr/bin/chromium
if [ -x "$chromium" ]; then
  echo "setup:browser: $chromium is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup:browser: $chromium is missing; install Debian's package: sudo apt-get install -y --no-install-recommends chromium" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup:browser: $chromium is missing and there is no apt-get: install Chromium at $chromium by hand" >&2
  exit 1
fi
echo "setup:browser: installing Debian's chromium (apt-get install -y --no-install-recommends chromium)"
if ! apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; then
  apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1
fi
if [ -x "$chromium" ]; then
  echo "setup:browser: $chromium is installed"
  exit 0
fi
echo "setup:browser: could not install chromium (see apt-get install -y chromium)" >&2
exit 1
