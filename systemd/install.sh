#!/usr/bin/env bash
# Installs Switchboard on a systemd host from this repository: the code and its node_modules under a prefix
# (/opt/switchboard), the `switchboard` command on PATH (/usr/local/bin), the system user, /var/lib/switchboard,
# /etc/switchboard (the config, never overwritten), the unit, the sysctl drop-in and the limits drop-in. Idempotent: a
# second run changes nothing. See OPERATIONS.md.

set -euo pipefail
umask 022

usage() {
  cat <<'EOF'
usage: systemd/install.sh [--prefix DIR] [--bin-dir DIR] [--no-npm] [--dry-run]
       systemd/install.sh --uninstall [--purge] [--prefix DIR] [--bin-dir DIR] [--dry-run]

Installs Switchboard from this repository (run as root).

  --prefix DIR   where the code and node_modules go (default /opt/switchboard; the unit's paths follow it)
  --bin-dir DIR  where the `switchboard` command goes (default /usr/local/bin)
  --no-npm       do not run `npm ci --omit=dev` in the prefix (run it yourself before starting)
  --dry-run      print every action, change nothing
  --uninstall    stop and disable the service, remove the unit, the drop-ins and the prefix; keep the data in
                 /var/lib/switchboard and the config in /etc/switchboard
  --purge        with --uninstall: remove the data, the config and the cache too (the user stays: files elsewhere
                 may still belong to its uid)
  --help         this text

Environment: DESTDIR=<dir> installs into that root instead of / (package builds, tests). Then the system user is
created only when <dir>/etc/passwd exists (useradd --root), nothing is chowned (the chown for the target is
printed), and systemctl/sysctl are not run.
EOF
}

prefix=/opt/switchboard
bin_dir=/usr/local/bin
dry_run=0
uninstall=0
purge=0
run_npm=1

while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) [ "$#" -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --bin-dir) [ "$#" -ge 2 ] || { echo "install.sh: --bin-dir needs a directory" >&2; exit 2; }; bin_dir=$2; shift ;;
    --bin-dir=*) bin_dir=${1#--bin-dir=} ;;
    --no-npm) run_npm=0 ;;
    --dry-run) dry_run=1 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# The prefix is written into the unit with sed and removed with rm -rf: only plain absolute paths.
prefix=${prefix%/}
case "$prefix" in
  /?*) ;;
  *) echo "install.sh: --prefix must be an absolute path other than /, got '$prefix'" >&2; exit 2 ;;
esac
if ! [[ "$prefix" =~ ^[A-Za-z0-9/._-]+$ ]] || [[ "$prefix" == *..* ]]; then
  echo "install.sh: --prefix may hold only letters, digits and / . _ -, got '$prefix'" >&2
  exit 2
fi
bin_dir=${bin_dir%/}
if ! [[ "$bin_dir" =~ ^/[A-Za-z0-9/._-]+$ ]] || [[ "$bin_dir" == *..* ]]; then
  echo "install.sh: --bin-dir must be an absolute path of letters, digits and / . _ -, got '$bin_dir'" >&2
  exit 2
fi
if [ "$purge" -eq 1 ] && [ "$uninstall" -eq 0 ]; then
  echo "install.sh: --purge goes with --uninstall" >&2
  exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$repo/package.json" ] && [ -f "$repo/server/cli.ts" ] || {
  echo "install.sh: $repo does not look like the Switchboard repository" >&2
  exit 1
}

destdir=${DESTDIR:-}
destdir=${destdir%/}
if [ -n "$destdir" ] && [ ! -d "$destdir" ]; then
  echo "install.sh: DESTDIR $destdir is not a directory" >&2
  exit 1
fi
if [ -z "$destdir" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: installing into / needs root (or use --dry-run, or DESTDIR=<dir>)" >&2
  exit 1
fi

user=switchboard
prefix_dir=$destdir$prefix
unit=$destdir/etc/systemd/system/switchboard.service
dropin_dir=$destdir/etc/systemd/system/switchboard.service.d
low_port_dropin=$dropin_dir/low-port.conf
sysctl_file=$destdir/etc/sysctl.d/99-switchboard.conf
limits_file=$destdir/etc/security/limits.d/switchboard.conf
config_dir=$destdir/etc/switchboard
config_file=$config_dir/switchboard.toml
state_dir=$destdir/var/lib/switchboard
cache_dir=$destdir/var/cache/switchboard
command_file=$destdir$bin_dir/switchboard
# The line that marks the command as ours: a `switchboard` of some other package is neither replaced nor removed.
command_marker="installed by Switchboard's install.sh"
# What goes into the prefix: the package manifest and lockfile, Bun's settings, and the source folders the server
# and CLI import. systemd/ comes too, for the notes and the low-port drop-in. Tests and what only tests, the fuzzer
# and the browser-test setup use stay behind (excluded below); install.test.ts checks that every import of an
# installed file resolves inside the install.
top_files=(package.json package-lock.json bunfig.toml OPERATIONS.md)
source_dirs=(protocol storage server client systemd)

# Whether a path of the repository (relative, "server/auth.test.ts") stays out of the prefix.
excluded() {
  case "$1" in
    *.test.ts | *test-kit.ts | client/delivery-suite.ts | storage/store-conformance.ts) return 0 ;;
    protocol/fuzz.ts | protocol/noise-fuzz.ts | protocol/vectors/* | client/web/ensure-chromium.sh) return 0 ;;
    server/tls-test-certificate.ts) return 0 ;;
  esac
  return 1
}

changes=0
unit_changed=0
sysctl_changed=0
code_changed=0

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

say() { printf '%s\n' "$*"; }

# Runs one changing action, or only prints it under --dry-run. Every change goes through here.
act() {
  changes=$((changes + 1))
  if [ "$dry_run" -eq 1 ]; then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    "$@"
  fi
}

mode_of() { stat -c %a "$1"; }
same_mode() { [ "$((8#$(mode_of "$1")))" -eq "$((8#$2))" ]; }

# Installs source as target with mode unless target already has that content and mode. Returns 0 when it changed
# something, 1 when nothing needed doing (so callers can note what changed).
put_file() {
  local source=$1 target=$2 mode=$3
  if [ -f "$target" ] && cmp -s "$source" "$target"; then
    if same_mode "$target" "$mode"; then return 1; fi
    act chmod "$mode" "$target"
    return 0
  fi
  act install -D -m "$mode" "$source" "$target"
  return 0
}

# Creates a directory with mode, or fixes the mode of an existing one.
put_dir() {
  local target=$1 mode=$2
  if [ -d "$target" ]; then
    same_mode "$target" "$mode" || act chmod "$mode" "$target"
  else
    act install -d -m "$mode" "$target"
  fi
}

remove_path() {
  local target=$1
  if [ -e "$target" ] || [ -L "$target" ]; then act rm -rf "$target"; fi
}

write_stamp() { printf '%s\n' "$2" >"$1"; }

systemd_running() { [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# Applies every sysctl.d file in order (so a later file still wins over ours). systemd-sysctl skips keys marked "-"
# that this kernel lacks (nf_conntrack_max without conntrack); procps sysctl reports them, which is harmless.
apply_sysctl() {
  if [ -x /usr/lib/systemd/systemd-sysctl ]; then
    act /usr/lib/systemd/systemd-sysctl
  elif command -v sysctl >/dev/null; then
    act sysctl --quiet --system || say "warning: sysctl --system reported errors (see above); the other keys are set"
  else
    say "warning: neither systemd-sysctl nor sysctl found; the settings apply at next boot"
  fi
}

# Same content as the unit in the repository, with the install prefix in place of /opt/switchboard.
render_unit() {
  sed "s#/opt/switchboard#$prefix#g" "$repo/systemd/switchboard.service" >"$scratch/switchboard.service"
}

# The `switchboard` command: systemd/switchboard.sh with the prefix written in.
render_command() {
  sed "s#/opt/switchboard#$prefix#g" "$repo/systemd/switchboard.sh" >"$scratch/switchboard"
}

command_is_ours() { grep -qs "$command_marker" "$command_file"; }

create_user() {
  local nologin=/usr/sbin/nologin
  if [ -z "$destdir" ]; then
    getent group "$user" >/dev/null || act groupadd --system "$user"
    getent passwd "$user" >/dev/null ||
      act useradd --system --gid "$user" --home-dir /var/lib/switchboard --no-create-home --shell "$nologin" \
        --comment "Switchboard messaging server" "$user"
  elif [ -f "$destdir/etc/passwd" ] && [ -f "$destdir/etc/group" ]; then
    # A whole root file system (an image being built): useradd --root writes that root's passwd and group.
    grep -q "^$user:" "$destdir/etc/group" || act groupadd --root "$destdir" --system "$user"
    grep -q "^$user:" "$destdir/etc/passwd" ||
      act useradd --root "$destdir" --system --gid "$user" --home-dir /var/lib/switchboard --no-create-home \
        --shell "$nologin" --comment "Switchboard messaging server" "$user"
  else
    # A staging directory (package build, tests): there is no passwd to add to, and a uid picked here would not be
    # the target's. The package's postinst or the operator creates the user on the target.
    say "DESTDIR has no etc/passwd: not creating user $user (on the target: useradd --system --user-group" \
      "--home-dir /var/lib/switchboard --no-create-home --shell $nologin $user)"
  fi
}

# Mirrors one source folder into the prefix: copies new and changed files, removes files that are gone from the
# source (an upgrade must not leave a deleted module behind), keeps the executable bit.
mirror_dir() {
  local name=$1 source target relative mode
  [ -d "$repo/$name" ] && while IFS= read -r -d '' source; do
    relative=${source#"$repo/"}
    excluded "$relative" && continue
    target=$prefix_dir/$relative
    mode=0644
    [ -x "$source" ] && mode=0755
    put_file "$source" "$target" "$mode" && code_changed=1
  done < <(find "$repo/$name" -type f -print0 | sort -z)
  [ -d "$prefix_dir/$name" ] || return 0
  while IFS= read -r -d '' target; do
    relative=${target#"$prefix_dir/"}
    if [ ! -e "$repo/$relative" ] || excluded "$relative"; then
      act rm -f "$target"
      code_changed=1
    fi
  done < <(find "$prefix_dir/$name" -type f -print0 | sort -z)
  # Nothing installed is an empty directory: one left over held only removed or excluded files.
  while IFS= read -r -d '' target; do
    act rmdir "$target"
  done < <(find "$prefix_dir/$name" -mindepth 1 -depth -type d -empty -print0)
}

install_npm() {
  local stamp=$prefix_dir/node_modules/.switchboard-npm-ci wanted
  if [ "$run_npm" -eq 0 ]; then
    if [ ! -x "$prefix_dir/node_modules/.bin/bun" ]; then
      say "--no-npm: no $prefix/node_modules yet; run 'npm ci --omit=dev' in $prefix before starting the service"
    fi
    return 0
  fi
  # npm ci deletes and rebuilds node_modules; run it only when the lockfile changed since the last install.
  wanted="$(sha256sum <"$repo/package-lock.json" | cut -d' ' -f1) npm ci --omit=dev"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$prefix_dir/node_modules/.bin/bun" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "install.sh: npm not found (install Node.js and npm, or use --no-npm)" >&2
    exit 1
  fi
  act npm ci --prefix "$prefix_dir" --omit=dev --no-audit --no-fund
  act write_stamp "$stamp" "$wanted"
  code_changed=1
  if [ "$dry_run" -eq 0 ] && [ ! -x "$prefix_dir/node_modules/.bin/bun" ]; then
    echo "install.sh: npm ci did not install node_modules/.bin/bun in $prefix" >&2
    exit 1
  fi
}

do_install() {
  create_user

  put_dir "$prefix_dir" 0755
  local file
  for file in "${top_files[@]}"; do
    [ -f "$repo/$file" ] || continue
    put_file "$repo/$file" "$prefix_dir/$file" 0644 && code_changed=1
  done
  local name
  for name in "${source_dirs[@]}"; do mirror_dir "$name"; done
  install_npm

  # The data directory: only the service user may enter (queued messages). systemd's StateDirectory= creates and
  # chowns it at start as well; doing it here lets `switchboard invite` run before the first start.
  put_dir "$state_dir" 0700
  if [ -n "$destdir" ]; then
    [ "$changes" -gt 0 ] && say "DESTDIR: not chowning (on the target: chown $user:$user /var/lib/switchboard)"
  elif getent passwd "$user" >/dev/null || [ "$dry_run" -eq 1 ]; then
    # A dry run lists the chown even when the user is only about to be created.
    [ "$(stat -c %U:%G "$state_dir" 2>/dev/null || true)" = "$user:$user" ] || act chown "$user:$user" "$state_dir"
  fi

  # The command on PATH. Another package's `switchboard` is left alone, with a word.
  render_command
  if [ -e "$command_file" ] && ! command_is_ours; then
    say "warning: $command_file exists and is not Switchboard's: not replacing it (--bin-dir DIR puts ours elsewhere)"
  else
    put_file "$scratch/switchboard" "$command_file" 0755 || true
  fi

  # The config: an operator's file is never overwritten; the shipped example stays in $prefix/systemd for diffing.
  put_dir "$config_dir" 0755
  if [ -e "$config_file" ]; then
    cmp -s "$repo/systemd/switchboard.toml" "$config_file" ||
      say "keeping $config_file (the shipped example is $prefix/systemd/switchboard.toml)"
  else
    act install -m 0644 "$repo/systemd/switchboard.toml" "$config_file"
  fi

  render_unit
  put_file "$scratch/switchboard.service" "$unit" 0644 && unit_changed=1
  if [ -f "$low_port_dropin" ]; then
    put_file "$repo/systemd/switchboard-low-port.conf" "$low_port_dropin" 0644 && unit_changed=1
  fi
  put_file "$repo/systemd/99-switchboard.conf" "$sysctl_file" 0644 && sysctl_changed=1
  put_file "$repo/systemd/limits.conf" "$limits_file" 0644 || true

  if [ "$unit_changed" -eq 1 ]; then
    if systemd_running; then
      act systemctl daemon-reload
    elif [ -z "$destdir" ]; then
      say "systemd is not running here: skipping systemctl daemon-reload"
    fi
  fi
  if [ "$sysctl_changed" -eq 1 ] && [ -z "$destdir" ]; then apply_sysctl; fi

  if [ "$changes" -eq 0 ]; then
    say "switchboard is installed in ${destdir:-}$prefix; nothing to change"
  elif [ "$dry_run" -eq 1 ]; then
    say "dry run: $changes actions listed, nothing changed"
  else
    say "switchboard installed in ${destdir:-}$prefix ($changes changes)"
    if [ -z "$destdir" ]; then
      say "next: edit $config_file, then: systemctl enable --now switchboard; switchboard doctor checks the host"
      if [ "$code_changed" -eq 1 ] && systemd_running && systemctl is-active --quiet switchboard; then
        say "the running server still has the old code: systemctl reload switchboard (handlers) or restart"
      fi
    fi
  fi
}

do_uninstall() {
  if [ -f "$unit" ] && systemd_running; then
    act systemctl disable --now switchboard.service
  fi
  remove_path "$unit"
  if [ "$purge" -eq 1 ]; then
    remove_path "$dropin_dir"
  else
    # Our drop-in goes; an operator's own drop-ins (systemctl edit) stay with the config.
    remove_path "$low_port_dropin"
    if [ -d "$dropin_dir" ] && [ -z "$(ls -A "$dropin_dir")" ]; then act rmdir "$dropin_dir"; fi
  fi
  remove_path "$sysctl_file"
  remove_path "$limits_file"
  if [ -e "$command_file" ]; then
    if command_is_ours; then act rm -f "$command_file"; else say "keeping $command_file: it is not Switchboard's"; fi
  fi
  if [ -e "$prefix_dir" ]; then
    # rm -rf only what is recognisably ours: a wrong --prefix must not take a directory with it.
    if grep -qs '"name": "switchboard"' "$prefix_dir/package.json"; then
      act rm -rf "$prefix_dir"
    else
      echo "install.sh: not removing $prefix_dir: it has no Switchboard package.json" >&2
      exit 1
    fi
  fi
  if [ "$purge" -eq 1 ]; then
    remove_path "$state_dir"
    remove_path "$config_dir"
    remove_path "$cache_dir"
  else
    [ -e "$state_dir" ] && say "keeping the data in $state_dir (--purge removes it)"
    [ -e "$config_dir" ] && say "keeping the config in $config_dir (--purge removes it)"
  fi
  if systemd_running && [ "$changes" -gt 0 ]; then act systemctl daemon-reload; fi
  if [ -z "$destdir" ] && [ "$changes" -gt 0 ]; then
    say "sysctl values set by 99-switchboard.conf stay in effect until reboot"
  fi
  getent passwd "$user" >/dev/null 2>&1 && [ -z "$destdir" ] && say "user $user kept (userdel $user removes it)"
  if [ "$changes" -eq 0 ]; then
    say "switchboard is not installed in ${destdir:-}$prefix; nothing to remove"
  elif [ "$dry_run" -eq 1 ]; then
    say "dry run: $changes actions listed, nothing changed"
  else
    say "switchboard removed from ${destdir:-}$prefix"
  fi
}

if [ "$uninstall" -eq 1 ]; then do_uninstall; else do_install; fi
