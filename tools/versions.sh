# Pinned versions of what enarx needs at run time and in tests. Sourced by
# tools/bootstrap.sh and .ci/run; change a pin here and nowhere else.
WASMTIME_VERSION=50.0.1
# sha256 of wasmtime-50.0.1-py3-none-manylinux1_x86_64.whl (PyPI), which ships
# the Bytecode Alliance build of wasmtime's C API as _libwasmtime.so.
WASMTIME_WHEEL_SHA256=cc14c3a17654e0394e0225b11813532ef0cd7bd1e222a0c5494cdedaabeddac4
WASMTIME_WHEEL=wasmtime-${WASMTIME_VERSION}-py3-none-manylinux1_x86_64.whl
# Deno itself is pinned in package.json (npm package "deno") with its lock file.
# The OVMF of sev keeps: edk2's AmdSev platform built by tools/build_ovmf.sh
# from Debian's edk2 source package of this version (trixie), with these -D
# options, always in the fixed path EDK2_BUILD_DIR (GenFw sizes each module
# from its build path), with the tools EDK2_TOOLCHAIN names (Debian
# bookworm's), and the sha256 of the OVMF.fd that build gives. The script
# fails on any other hash; its top comment says what made builds differ.
EDK2_DEBIAN_VERSION=2025.02-8+deb13u1
EDK2_AMDSEV_DEFINES=""
EDK2_BUILD_DIR=/var/tmp/enarx-edk2-build
EDK2_TOOLCHAIN="gcc=12.2.0 ld=2.40 nasm=2.16.01 iasl=20200925 python3=3.11.2"
OVMF_AMDSEV_SHA256=f0074f9a73866d3f4efa5513971cd6591567d8f7b9ac868d25f09d669453afe3
