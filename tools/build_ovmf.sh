#!/usr/bin/env bash
# Builds the OVMF firmware of sev keeps from edk2's AmdSev platform
# (OvmfPkg/AmdSev/AmdSevX64.dsc): the build whose firmware verifies the
# kernel, initrd and command line QEMU passes against the hashes table that
# QEMU's `kernel-hashes=on` puts in the launch measurement. Debian's bookworm
# OVMF is the generic build, which does not; so this script builds the
# AmdSev one from Debian's edk2 source package of trixie (pinned below),
# reproducibly: fixed version, fixed flags, RELEASE, GCC5 toolchain,
# SOURCE_DATE_EPOCH from the package's changelog, build in a fixed path.
#
# Reproducible means: the same OVMF.fd, byte for byte, wherever the checkout
# or the cache is, and whenever it is built. What varied, and what fixes it:
#   - the build path: GenFw sizes each module's debug directory from the
#     absolute path of the module's .dll (its CodeView NB10 entry), and a
#     RELEASE build zeroes that entry's bytes but keeps its size, so a
#     different path length moves every later section of a module whose
#     .data crosses an alignment boundary (LogoDxe did, 64 bytes, in two
#     caches whose paths differed by one character). So the tree is always
#     built in one fixed path, EDK2_BUILD_DIR (tools/versions.sh), whichever
#     cache the output goes to, one build at a time (a lock next to it);
#   - the stack cookies: edk2's build writes 100 random values to
#     Build/.../StackCookieValues{32,64}.json and picks one per module with
#     Python's hash() of the module GUID, which differs per process unless
#     PYTHONHASHSEED is fixed. The GCC5 toolchain compiles with
#     -fno-stack-protector, so no cookie reaches the firmware today, but each
#     module's AutoGen.h carries one: the lists are written beforehand from
#     SHA-256 of a fixed label and PYTHONHASHSEED=0, so nothing is random;
#   - the toolchain: gcc, binutils, nasm and iasl generate the bytes, so the
#     pin holds for the versions named in EDK2_TOOLCHAIN (Debian bookworm's);
#     other versions are reported before the build and after a mismatch.
# Timestamps need nothing: GenFw writes no PE time stamp (the two builds
# above, minutes apart, agreed in every other module).
#
# What it changes on the machine (root, or sudo):
#   - /etc/apt/sources.list.d/enarx-trixie-src.sources: a deb-src entry for
#     trixie (source packages only), signed by the Debian archive keyring,
#     with the mirror URI copied from this machine's own Debian entry;
#   - /etc/apt/preferences.d/enarx-trixie: pins every trixie package to -1,
#     so that no binary package is ever installed or upgraded from trixie;
#   - installs the build tools edk2 names and bookworm has: nasm,
#     acpica-tools (iasl), uuid-dev, python3, gcc, g++, make, dpkg-dev.
#
# Output: $ENARX_OVMF_DIR/OVMF.fd (tools/bootstrap.sh: the user's cache,
# ~/.cache/enarx/ovmf-amdsev, outside the checkout so that clones share it), OVMF.fd.sha256, build.log,
# modules.sha256 (every module's .efi, to compare two builds) and
# toolchain.txt. A build whose hash is not the pinned OVMF_AMDSEV_SHA256
# (tools/versions.sh) fails and installs nothing; an OVMF.fd already present
# with another hash is rebuilt. `--force` rebuilds even when the output is
# present. The source tarballs stay in the cache; the build tree in
# EDK2_BUILD_DIR is removed after a good build, kept after a failed one.
#
# grub.efi: AmdSevX64.fdf puts OvmfPkg/AmdSev/Grub/grub.efi in the firmware
# volume, a GRUB that boots an encrypted disk when QEMU passes no kernel.
# sev keeps always pass -kernel/-initrd/-append (checked against the hashes
# table by the firmware's QemuKernelLoaderFsDxe), so that GRUB is never
# used: the file is created empty (as Debian's own packaging does), which
# means the firmware carries no GRUB at all. It is part of the measured
# firmware, so the emptiness is measured too.

set -euo pipefail

ENARX_ROOT=${ENARX_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"

force=0
[ "${1:-}" = "--force" ] && force=1

mkdir -p "$ENARX_OVMF_DIR"
out=$(realpath "$ENARX_OVMF_DIR")
fd="$out/OVMF.fd"
log="$out/build.log"

say() { printf 'build_ovmf: %s\n' "$*" >&2; }

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

if [ -f "$fd" ] && [ $force -eq 0 ]; then
  have=$(sha256sum "$fd" | cut -d' ' -f1)
  if [ -z "${OVMF_AMDSEV_SHA256:-}" ] || [ "$have" = "$OVMF_AMDSEV_SHA256" ]; then
    say "present: $fd ($have)"
    exit 0
  fi
  say "$fd has sha256 $have, not the pinned $OVMF_AMDSEV_SHA256: rebuilding"
fi

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

add_trixie_source() {
  local list=/etc/apt/sources.list.d/enarx-trixie-src.sources
  local pin=/etc/apt/preferences.d/enarx-trixie
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$list" ] && [ -f "$pin" ] && return 0
  local uri
  uri=$(debian_uri) || {
    say "no Debian mirror entry in /etc/apt/sources.list*: cannot add the trixie source entry"
    return 1
  }
  [ -f "$keyring" ] || { say "missing $keyring (apt-get install debian-archive-keyring)"; return 1; }
  say "adding $list (deb-src trixie from $uri) and the pin $pin"
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' \
    "$uri" "$keyring" | $sudo tee "$list" >/dev/null
  printf '%s\n' \
    '# enarx (tools/build_ovmf.sh): trixie is added for its edk2 source package only;' \
    '# never install or upgrade a binary package from it.' \
    'Package: *' 'Pin: release n=trixie' 'Pin-Priority: -1' | $sudo tee "$pin" >/dev/null
  $sudo apt-get update -qq >&2
}

install_build_deps() {
  local deps="nasm acpica-tools uuid-dev python3 gcc g++ make dpkg-dev"
  local missing=() p
  for p in $deps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing build tools: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm "${missing[@]}" >&2
}

# Fetches the pinned source package's tarballs into $out/source: through
# `apt-get source --download-only`, or, where the mirror lacks the .dsc (some
# mirrors keep only the tarballs of a point release), from the URIs apt
# prints, each checked against the SHA-256 of apt's signed Sources index.
fetch_source() {
  local dl="$out/source"
  mkdir -p "$dl"
  compgen -G "$dl/edk2_${EDK2_DEBIAN_VERSION}.debian.tar.*" >/dev/null && return 0
  say "fetching edk2 $EDK2_DEBIAN_VERSION (apt-get source --download-only)"
  (cd "$dl" && apt-get source -qq --download-only "edk2=$EDK2_DEBIAN_VERSION" >&2) && return 0
  say "apt-get source failed; fetching the tarballs from the URIs apt names, checking their SHA-256"
  local uri name size sum
  while read -r uri name size sum; do
    uri=${uri//\'/}
    case "$name" in *.dsc) continue ;; esac
    [ -f "$dl/$name" ] && [ "$(sha256sum "$dl/$name" | cut -d' ' -f1)" = "${sum#SHA256:}" ] && continue
    curl -fsS -o "$dl/$name.part" "$uri" || { say "cannot fetch $uri"; return 1; }
    if [ "$(sha256sum "$dl/$name.part" | cut -d' ' -f1)" != "${sum#SHA256:}" ]; then
      say "$name does not have the SHA-256 apt's index names ($sum)"
      return 1
    fi
    mv "$dl/$name.part" "$dl/$name"
  done < <(cd "$dl" && apt-get source -qq --download-only --print-uris "edk2=$EDK2_DEBIAN_VERSION" |
    grep "^'")
}

# Unpacks the tarballs into $src (a fixed path, so that no build path
# differs between builds) and applies Debian's patches in series order.
unpack_source() {
  local dl="$out/source"
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$dl"/edk2_"${EDK2_DEBIAN_VERSION%%-*}".orig.tar.* -C "$src" --strip-components=1
  tar -xf "$dl/edk2_${EDK2_DEBIAN_VERSION}".debian.tar.* -C "$src"
  local patch
  if [ -f "$src/debian/patches/series" ]; then
    while read -r patch _; do
      case "$patch" in '' | '#'*) continue ;; esac
      patch -d "$src" -p1 -s --no-backup-if-mismatch <"$src/debian/patches/$patch" >&2 ||
        { say "Debian patch $patch does not apply"; return 1; }
    done <"$src/debian/patches/series"
  fi
}

# The versions of the tools that generate the firmware's bytes, one
# `name=version` a line (the form of EDK2_TOOLCHAIN in tools/versions.sh).
toolchain() {
  printf 'gcc=%s\n' "$(gcc -dumpfullversion 2>/dev/null || echo none)"
  printf 'ld=%s\n' "$(ld --version 2>/dev/null | awk 'NR == 1 { print $NF }')"
  printf 'nasm=%s\n' "$(nasm -v 2>/dev/null | awk '{ print $3 }')"
  printf 'iasl=%s\n' "$(iasl -v 2>/dev/null | sed -n 's/.* version \([0-9]*\).*/\1/p' | head -1)"
  printf 'python3=%s\n' "$(/usr/bin/python3 -c 'import platform; print(platform.python_version())')"
}

# Writes edk2's stack cookie lists before `build` would draw them at random:
# 100 values each, the first 8 (64-bit) or 4 (32-bit) bytes of
# SHA-256("enarx edk2 stack cookie <bits> <index>"), as edk2's JSON lists.
write_stack_cookies() {
  mkdir -p "$1"
  /usr/bin/python3 - "$1" <<'PY'
import hashlib, json, sys
for bits in (32, 64):
    values = [int.from_bytes(hashlib.sha256(f"enarx edk2 stack cookie {bits} {i}".encode()).digest()[: bits // 8], "big")
              for i in range(100)]
    with open(f"{sys.argv[1]}/StackCookieValues{bits}.json", "w") as out:
        json.dump(values, out)
PY
}

build_ovmf() {
  export SOURCE_DATE_EPOCH
  SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$src/debian/changelog" -STimestamp)
  export LC_ALL=C TZ=UTC PYTHONHASHSEED=0
  # Debian's Python, not whichever python3 comes first on PATH.
  export PYTHON_COMMAND=/usr/bin/python3
  cd "$src"
  # The empty GRUB (see the top): its PREBUILD step, grub.sh, keeps a
  # grub.efi that is newer than grub.cfg and grub.sh instead of building one.
  : >OvmfPkg/AmdSev/Grub/grub.efi
  touch -d "@$((SOURCE_DATE_EPOCH - 1))" OvmfPkg/AmdSev/Grub/grub.cfg OvmfPkg/AmdSev/Grub/grub.sh
  touch -d "@$SOURCE_DATE_EPOCH" OvmfPkg/AmdSev/Grub/grub.efi
  write_stack_cookies "$src/Build/AmdSev/RELEASE_GCC5"
  # The C tools only: BaseTools' own test suite is not needed for a build.
  make -C BaseTools/Source/C -j"$(nproc)" >&2
  # edksetup.sh reads unset variables: not under set -u.
  set +u
  # shellcheck disable=SC1091
  . ./edksetup.sh BaseTools >&2
  set -u
  build -q -n "$(nproc)" -a X64 -t GCC5 -b RELEASE \
    -p OvmfPkg/AmdSev/AmdSevX64.dsc $EDK2_AMDSEV_DEFINES >&2
}

# Takes the lock of the fixed build path for the rest of this process, or
# says who holds it and waits.
lock_build_dir() {
  local lock="$EDK2_BUILD_DIR.lock"
  mkdir -p "$(dirname "$EDK2_BUILD_DIR")"
  exec 9>>"$lock" || { say "cannot open $lock (owned by another user?)"; return 1; }
  if ! flock -n 9; then
    say "another OVMF build holds $lock (builds share $EDK2_BUILD_DIR); waiting for it"
    flock 9
  fi
}

# Says what to do when the build's hash is not the pin.
explain_mismatch() {
  local sum=$1
  say "FAILED: the OVMF.fd built has sha256 $sum,"
  say "  not the pinned OVMF_AMDSEV_SHA256=$OVMF_AMDSEV_SHA256 (tools/versions.sh): not installed."
  say "  Kept for inspection: $fd.unpinned, $out/modules.sha256 (each module's .efi) and the tree in $EDK2_BUILD_DIR."
  local have
  have=$(toolchain | paste -sd' ')
  if [ "$have" != "$EDK2_TOOLCHAIN" ]; then
    say "  The pin was made with: $EDK2_TOOLCHAIN"
    say "  this build used:       $have"
    say "  Build with those versions (Debian bookworm's), or, if the firmware must come from this toolchain,"
    say "  re-pin as below."
  fi
  say "  If you changed EDK2_DEBIAN_VERSION, EDK2_AMDSEV_DEFINES or this script on purpose: run"
  say "  tools/build_ovmf.sh --force twice, check both builds give the same sha256, set"
  say "  OVMF_AMDSEV_SHA256 (and EDK2_TOOLCHAIN) in tools/versions.sh to it, and update the"
  say "  measurement figures that depend on it. Otherwise the build is not reproducible: compare"
  say "  modules.sha256 with that of a build that matches the pin to find the module that differs."
}

main() {
  add_trixie_source
  install_build_deps
  local have
  have=$(toolchain | paste -sd' ')
  if [ -n "$EDK2_TOOLCHAIN" ] && [ "$have" != "$EDK2_TOOLCHAIN" ]; then
    say "warning: the pin was made with $EDK2_TOOLCHAIN; this machine has $have: the hash may differ"
  fi
  lock_build_dir
  src="$EDK2_BUILD_DIR"
  fetch_source
  unpack_source
  local started
  started=$(date +%s)
  say "building OvmfPkg/AmdSev/AmdSevX64.dsc (RELEASE, GCC5) in $src; log: $log"
  (build_ovmf) >"$log" 2>&1 || {
    say "the build failed; the last lines of $log:"
    tail -20 "$log" >&2
    return 1
  }
  local built="$src/Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd"
  [ -f "$built" ] || { say "the build made no $built"; return 1; }
  toolchain >"$out/toolchain.txt"
  (cd "$src/Build/AmdSev/RELEASE_GCC5/X64" && sha256sum -- *.efi) >"$out/modules.sha256"
  local sum
  sum=$(sha256sum "$built" | cut -d' ' -f1)
  say "built in $(($(date +%s) - started)) s: sha256 $sum"
  if [ -z "${OVMF_AMDSEV_SHA256:-}" ]; then
    say "no OVMF_AMDSEV_SHA256 in tools/versions.sh: installing unchecked"
  elif [ "$sum" != "$OVMF_AMDSEV_SHA256" ]; then
    cp "$built" "$fd.unpinned"
    explain_mismatch "$sum"
    return 1
  fi
  cp "$built" "$fd.tmp" && mv "$fd.tmp" "$fd"
  rm -f "$fd.unpinned"
  echo "$sum  OVMF.fd" >"$fd.sha256"
  rm -rf "$src"
  say "wrote $fd"
}

main
