# Installs what the test suite needs beyond ./enarx's own bootstrap: Debian's
# WASI toolchains (clang, lld, wasi-libc; rustc with the wasm32-wasi std; a
# newer Rust for the Cargo workloads), the
# C compiler for the uapi-header checks, QEMU, busybox, dmsetup and e2fsprogs for kvm keeps, the
# wasmtime C headers (the wasmtime-c-api-impl crate of the pinned version,
# through cargo fetch) and the kernel of kvm keeps (Debian's cloud kernel).
# Sourced by tools/test.sh after tools/bootstrap.sh.

# QEMU >= 9.1 for sev keeps (and kvm keeps with it): tools/qemu_backports.sh
# adds bookworm-backports, pinned so that only qemu-system-x86 and what it
# strictly needs come from there. Run before enarx_test_deps_apt, which then
# finds qemu-system-x86 installed.
enarx_test_deps_qemu() {
  "$ENARX_ROOT/tools/qemu_backports.sh" || {
    enarx_say "tools/qemu_backports.sh could not install QEMU >= 9.1; see the messages above"
    return 1
  }
}

# dmsetup goes into the kvm keep's initrd (it opens the base disk through dm-verity);
# e2fsprogs (mke2fs, debugfs) builds that disk.
ENARX_APT_PACKAGES="clang lld wasi-libc libclang-rt-14-dev-wasm32 rustc libstd-rust-dev-wasm32 linux-libc-dev gcc openssl qemu-system-x86 busybox-static dmsetup e2fsprogs systemd ovmf"

enarx_test_deps_apt() {
  local missing=()
  local p
  for p in $ENARX_APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    enarx_say "missing Debian packages: ${missing[*]}; install them and run this again"
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  enarx_say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 || {
    enarx_say "apt-get install ${missing[*]} failed; see the messages above"
    return 1
  }
}

# The Rust of the Cargo workloads (tests/workloads/rust/*/, tokio): Debian's
# rustc-web unpacked into the cache with trixie's wasi-libc, beside bookworm's
# rustc (see tools/rust_wasm_toolchain.sh for what it fetches and installs).
enarx_test_deps_rust_wasm() {
  "$ENARX_ROOT/tools/rust_wasm_toolchain.sh" || {
    enarx_say "tools/rust_wasm_toolchain.sh could not prepare the Rust of the Cargo workloads; see the messages above"
    return 1
  }
}

# The C headers of wasmtime's C API, from the crate of the same version.
enarx_test_deps_wasmtime_headers() {
  local dir="$ENARX_CACHE/wasmtime-$WASMTIME_VERSION"
  ENARX_WASMTIME_INCLUDE="$dir/include"
  [ -f "$ENARX_WASMTIME_INCLUDE/wasmtime.h" ] && { export ENARX_WASMTIME_INCLUDE; return 0; }
  enarx_need cargo "Rust's cargo (rustup or Debian's cargo)" || return 1
  enarx_say "fetching wasmtime-c-api-impl $WASMTIME_VERSION for its C headers (cargo fetch)"
  local proj="$dir/headers-crate"
  mkdir -p "$proj/src"
  cat >"$proj/Cargo.toml" <<TOML
[package]
name = "enarx-wasmtime-headers"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
wasmtime-c-api-impl = { version = "=$WASMTIME_VERSION", default-features = false }
TOML
  : >"$proj/src/lib.rs"
  (cd "$proj" && CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=allow cargo fetch --quiet >&2) || {
    enarx_say "cargo fetch of wasmtime-c-api-impl $WASMTIME_VERSION failed; see the messages above"
    return 1
  }
  local src
  src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -mindepth 1 -type d | while read -r d; do
    [ -d "$d/wasmtime-c-api-impl-$WASMTIME_VERSION/include" ] && echo "$d/wasmtime-c-api-impl-$WASMTIME_VERSION"
  done | head -1)
  if [ -z "$src" ]; then
    enarx_say "cargo fetched wasmtime-c-api-impl but its include/ folder was not found"
    return 1
  fi
  rm -rf "$ENARX_WASMTIME_INCLUDE.tmp" && cp -r "$src/include" "$ENARX_WASMTIME_INCLUDE.tmp"
  mv "$ENARX_WASMTIME_INCLUDE.tmp" "$ENARX_WASMTIME_INCLUDE"
  export ENARX_WASMTIME_INCLUDE
}

# The kernel of kvm keeps: Debian's cloud kernel package (apt-get download,
# unpacked with dpkg-deb -x into $ENARX_CACHE/kvm-kernel/root, where
# runtime/backends/kvm_image.ts looks). The kvm test needs it: tools/test.sh
# fails when it cannot be had, rather than skip that test silently.
enarx_test_deps_kvm_kernel() {
  local dir="$ENARX_CACHE/kvm-kernel"
  compgen -G "$dir/root/boot/vmlinuz-*" >/dev/null && return 0
  if [ "$(uname -m)" != "x86_64" ] || ! command -v apt-get >/dev/null 2>&1; then
    enarx_say "no kernel for kvm keeps: fetching one needs apt-get on x86_64"
    return 1
  fi
  local pkg
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  if [ -z "$pkg" ]; then
    # A new machine's package lists may be empty: read them once, then ask again.
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >&2 || true
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  fi
  if [ -z "$pkg" ]; then
    enarx_say "apt-cache knows no linux-image-cloud-amd64 (run apt-get update); no kernel for kvm keeps"
    return 1
  fi
  enarx_say "fetching $pkg for kvm keeps (apt-get download)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/deb"
  if (cd "$dir.tmp/deb" && apt-get download -qq "$pkg" >&2) &&
    dpkg-deb -x "$dir.tmp/deb/$pkg"_*.deb "$dir.tmp/root"; then
    rm -rf "$dir.tmp/deb" "$dir" && mv "$dir.tmp" "$dir"
  else
    rm -rf "$dir.tmp"
    enarx_say "could not fetch $pkg for kvm keeps; see the messages above"
    return 1
  fi
}

# The OVMF of sev keeps (edk2's AmdSev platform), which the sev firmware-path
# test boots under TCG: tools/build_ovmf.sh builds it once from Debian's
# pinned edk2 source package into $ENARX_OVMF_DIR, outside the checkout (slow: about ten
# minutes on two cores). It adds its own pinned deb-src entry for trixie and
# installs nothing from trixie. The tests give the SNP command line to the
# QEMU of enarx_test_deps_qemu, whose refusal on a host without SEV-SNP is
# what they check. The script runs every time: an OVMF.fd present is checked
# against the pinned OVMF_AMDSEV_SHA256 and rebuilt when it differs, and a
# build that does not give the pinned hash fails here
# (tests/backends/ovmf_pin_test.ts checks the file too).
enarx_test_deps_ovmf_amdsev() {
  "$ENARX_ROOT/tools/build_ovmf.sh" || {
    enarx_say "tools/build_ovmf.sh failed: see its messages above and $ENARX_OVMF_DIR/build.log"
    return 1
  }
}
