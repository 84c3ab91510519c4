#!/usr/bin/env bash
# Installs the QEMU of sev keeps: SEV-SNP guests need QEMU >= 9.1
# (`sev-snp-guest`), and Debian bookworm ships 7.2, so this takes
# qemu-system-x86 from bookworm-backports (10.0 there) and nothing else that
# it can avoid.
#
# What it changes on the machine (root, or sudo):
#   - /etc/apt/sources.list.d/enarx-bookworm-backports.sources: a deb entry
#     for bookworm-backports, signed by the Debian archive keyring, with the
#     mirror URI copied from this machine's own Debian entry;
#   - /etc/apt/preferences.d/enarx-bookworm-backports: pins every
#     bookworm-backports package to -1 (never installed nor upgraded from
#     there) except the ones named in QEMU_BACKPORTS below, at 500;
#   - installs qemu-system-x86 without recommended packages. Its exact-version
#     dependencies come along (qemu-system-common, qemu-system-data) and so
#     does the newer seabios it requires; apt removes the 7.2 GUI module
#     (qemu-system-gui), which only works with the QEMU it was built with.
#
# Idempotent: with a QEMU >= 9.1 installed it only says so; the files are
# rewritten only when their content differs. Every failure says what failed
# and exits non-zero. `--check` only reports whether QEMU is new enough.

set -euo pipefail

# The packages taken from bookworm-backports: qemu-system-x86 and what it
# strictly needs there (its Depends with exact or newer-than-bookworm
# versions). Everything else stays bookworm's.
QEMU_BACKPORTS="qemu-system-x86 qemu-system-common qemu-system-data seabios"
QEMU_MIN_MAJOR=9
QEMU_MIN_MINOR=1

LIST=/etc/apt/sources.list.d/enarx-bookworm-backports.sources
PIN=/etc/apt/preferences.d/enarx-bookworm-backports
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf 'qemu_backports: %s\n' "$*" >&2; }
fail() {
  say "$*"
  exit 1
}

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# The installed qemu-system-x86_64's "major minor", or nothing.
qemu_version() {
  command -v qemu-system-x86_64 >/dev/null 2>&1 || return 0
  qemu-system-x86_64 --version 2>/dev/null |
    sed -nE 's/^QEMU emulator version ([0-9]+)\.([0-9]+).*/\1 \2/p' | head -1
}

qemu_new_enough() {
  local v major minor
  v=$(qemu_version)
  [ -n "$v" ] || return 1
  read -r major minor <<<"$v"
  [ "$major" -gt $QEMU_MIN_MAJOR ] || { [ "$major" -eq $QEMU_MIN_MAJOR ] && [ "$minor" -ge $QEMU_MIN_MINOR ]; }
}

# The URI of this machine's Debian mirror, from its own sources entry.
debian_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

# Writes $2 to file $1 unless it already holds exactly that; says whether it wrote.
write_if_changed() {
  if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then return 1; fi
  say "writing $1"
  printf '%s\n' "$2" | $sudo tee "$1" >/dev/null || fail "cannot write $1"
  return 0
}

# Whether apt has a qemu-system-x86 candidate from bookworm-backports. The
# output is read whole: `apt-cache ... | grep -q` under pipefail fails at
# random when grep exits before apt-cache has written everything (SIGPIPE).
apt_knows_backports() {
  local policy
  policy=$(apt-cache policy qemu-system-x86 2>/dev/null) || return 1
  [[ $policy == *bookworm-backports* ]]
}

# The sources entry and the pin; apt-get update when either changed, or when
# apt does not know the backports candidate yet.
add_backports() {
  local uri changed=0
  uri=$(debian_uri) || fail "no Debian mirror entry in /etc/apt/sources.list*: cannot add bookworm-backports"
  [ -f "$KEYRING" ] || fail "missing $KEYRING (apt-get install debian-archive-keyring)"
  write_if_changed "$LIST" "$(printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s' \
    "$uri" "$KEYRING")" && changed=1
  write_if_changed "$PIN" "$(printf '%s\n' \
    '# enarx (tools/qemu_backports.sh): bookworm-backports is added for the QEMU of' \
    '# sev keeps only; these packages may come from it ...' \
    "Package: $QEMU_BACKPORTS" 'Pin: release n=bookworm-backports' 'Pin-Priority: 500' '' \
    '# ... and nothing else is ever installed or upgraded from it.' \
    'Package: *' 'Pin: release n=bookworm-backports' 'Pin-Priority: -1')" && changed=1
  if [ $changed -eq 1 ] || ! apt_knows_backports; then
    say "apt-get update"
    $sudo apt-get update -qq >&2 || fail "apt-get update failed; see the messages above"
  fi
  apt_knows_backports ||
    fail "apt knows no qemu-system-x86 in bookworm-backports after apt-get update; see $LIST"
}

main() {
  if [ "${1:-}" = "--check" ]; then
    qemu_new_enough && exit 0
    say "QEMU >= $QEMU_MIN_MAJOR.$QEMU_MIN_MINOR is not installed (have: $(qemu_version | tr ' ' .))"
    exit 1
  fi
  if qemu_new_enough; then
    say "present: QEMU $(qemu_version | tr ' ' .)"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || fail "QEMU >= $QEMU_MIN_MAJOR.$QEMU_MIN_MINOR is needed and this is not Debian (no apt-get): install it yourself"
  grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null ||
    fail "this script adds bookworm-backports, but this system is not Debian bookworm: install QEMU >= $QEMU_MIN_MAJOR.$QEMU_MIN_MINOR from its own suites"
  add_backports
  say "installing qemu-system-x86 from bookworm-backports (with $QEMU_BACKPORTS)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold qemu-system-x86 >&2 ||
    fail "apt-get install qemu-system-x86 failed; see the messages above"
  qemu_new_enough || fail "after the install qemu-system-x86_64 says $(qemu_version | tr ' ' .), not >= $QEMU_MIN_MAJOR.$QEMU_MIN_MINOR"
  say "installed: QEMU $(qemu_version | tr ' ' .)"
}

main "$@"
