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
# options, and the sha256 of the OVMF.fd that build gives. Not pinned yet:
# two builds from the same pins in different folders differed in one module
# (LogoDxe.efi, 13696 vs 13632 bytes; every other .efi was identical), so
# the OVMF.fd hashes differed (5e096d45... vs 253214fb...).
EDK2_DEBIAN_VERSION=2025.02-8+deb13u1
EDK2_AMDSEV_DEFINES=""
OVMF_AMDSEV_SHA256=""
