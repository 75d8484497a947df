#!/bin/sh
# switchboard: the Switchboard command on PATH, installed by Switchboard's install.sh (it writes in the paths below).
# Runs the installed code with the installed Bun and, unless --config or SWITCHBOARD_CONFIG names another, the
# installed config, so that `switchboard invite` talks about the same database as the service. Run as root, the
# commands that touch the data directory run as the service user, so that files they create belong to the service.
set -eu

prefix=/opt/switchboard
config=/etc/switchboard/switchboard.toml
user=switchboard
bun=$prefix/node_modules/.bin/bun

if [ ! -x "$bun" ]; then
  echo "switchboard: $bun is missing: run 'npm ci --omit=dev --prefix $prefix' (or install.sh again)" >&2
  exit 2
fi
if [ -z "${SWITCHBOARD_CONFIG:-}" ] && [ -f "$config" ]; then
  SWITCHBOARD_CONFIG=$config
  export SWITCHBOARD_CONFIG
fi
# Bun's transpiler cache would otherwise go to the caller's home, or the service user's (the data directory).
BUN_RUNTIME_TRANSPILER_CACHE_PATH=${BUN_RUNTIME_TRANSPILER_CACHE_PATH:-0}
export BUN_RUNTIME_TRANSPILER_CACHE_PATH

case "${1:-}" in
  start | invite | account | sessions | kick | drain)
    if [ "$(id -u)" -eq 0 ] && id -u "$user" >/dev/null 2>&1; then
      if command -v runuser >/dev/null 2>&1; then
        exec runuser -u "$user" -- "$bun" "$prefix/server/cli.ts" "$@"
      fi
      echo "switchboard: runuser not found: running as root (files created in the data directory belong to root)" >&2
    fi
    ;;
esac
exec "$bun" "$prefix/server/cli.ts" "$@"
