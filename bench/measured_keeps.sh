#!/usr/bin/env bash
# The figures of issue 8 (measured keeps) in BENCHMARKS.md:
#   1. `enarx keep image` (kvm: cold, i.e. an empty image cache, and cached;
#      nil) and `enarx measure --backend nil|kvm|sev` (image cached), timed
#      by bench/native/timeit.c, interleaved round by round;
#   2. VM keep boot to wasmldr's ready line: microvm, q35 + SeaBIOS (the kvm
#      keep) and q35 + AmdSev OVMF (bench/keep_boot_bench.ts).
# Prints the machine, the load before and after, and Markdown tables of
# medians. The sev figures use the AmdSev OVMF of tools/build_ovmf.sh
# ($ENARX_SEV_OVMF, else the cache's).
#
# Usage: bench/measured_keeps.sh [RUNS] [BOOT_ROUNDS]   (default 7 and 5)
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70
RUNS=${1:-7}
BOOT_ROUNDS=${2:-5}
OVMF=${ENARX_SEV_OVMF:-$ENARX_OVMF_DIR/OVMF.fd}
[ -f "$OVMF" ] || { echo "no AmdSev OVMF at $OVMF: run tools/build_ovmf.sh" >&2; exit 66; }
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
gcc -O2 -std=c11 "$ENARX_ROOT/bench/native/timeit.c" -o "$SCRATCH/timeit"
unset ENARX_SNP_SIM_DIR
export ENARX_SEV_OVMF="$OVMF" DENO_DIR
q() { printf '%q ' "$@"; }
enarx=$(q "$ENARX_ROOT/enarx")
cold=$(q "$SCRATCH/cold")
warm=$(q "$SCRATCH/warm")
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs;" \
  "$(date -u '+%a %b %e %Y %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# The warm-up run of each command fills the cached image.
"$SCRATCH/timeit" "$RUNS" 1 "$SCRATCH/out.json" \
  "enarx keep image --backend kvm, cold" "rm -rf $cold" \
  "ENARX_KVM_CACHE_DIR=$cold $enarx keep image --backend kvm" \
  "enarx keep image --backend kvm, cached" "" \
  "ENARX_KVM_CACHE_DIR=$warm $enarx keep image --backend kvm" \
  "enarx keep image --backend nil" "" "$enarx keep image --backend nil" \
  "enarx measure --backend nil" "" "$enarx measure --backend nil" \
  "enarx measure --backend kvm" "" "ENARX_KVM_CACHE_DIR=$warm $enarx measure --backend kvm" \
  "enarx measure --backend sev" "" \
  "ENARX_KVM_CACHE_DIR=$warm $enarx measure --backend sev --ovmf $(q "$OVMF")"
"$DENO" run --quiet --allow-read - "$SCRATCH/out.json" "$RUNS" <<'TS'
const [file, runs] = Deno.args;
const { results } = JSON.parse(Deno.readTextFileSync(file));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const shell = results.find((r: { command: string }) => r.command === "shell");
const floor = shell ? median(shell.times) : 0;
console.log(`| what (${runs} interleaved rounds) | median s | min s | max s | CPU s | peak RSS MiB |`);
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of results) {
  if (r.command === "shell") continue;
  const t = r.times.map((x: number) => x - floor);
  const cpu = median(r.user.map((u: number, i: number) => u + r.system[i]));
  const rss = median(r.maxrss_kib) / 1024;
  console.log(
    `| ${r.command} | ${median(t).toFixed(2)} | ${Math.min(...t).toFixed(2)} | ` +
      `${Math.max(...t).toFixed(2)} | ${cpu.toFixed(2)} | ${rss.toFixed(0)} |`,
  );
}
TS
"$DENO" run --allow-all "$ENARX_ROOT/bench/keep_boot_bench.ts" "$BOOT_ROUNDS"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
