/**
 * Boot time of a VM keep to wasmldr's ready line, under whatever
 * acceleration the host has (TCG here), three ways, interleaved round by
 * round so that load from other work falls on each alike:
 *
 * - `microvm`: QEMU's microvm machine (qboot firmware, no PCI enumeration by
 *   firmware), with PCIe on for the keep's virtio-net-pci, the same kernel,
 *   initrd, command line, serial ports and NIC as the kvm keep;
 * - `q35 + SeaBIOS`: the kvm keep exactly as `enarx` launches it
 *   (runtime/backends/kvm_vm.ts), its image already in the cache;
 * - `q35 + AmdSev OVMF`: the sev keep's firmware path without SNP
 *   (bootSevKeep, as tests/backends/sev_launch_test.ts does), with the
 *   kernel hashes table loaded where QEMU's `kernel-hashes=on` puts it.
 *
 * Each time runs from QEMU's start (the image built beforehand) to the ready
 * line on the guest's frames port (ttyS1). Prints a Markdown table of
 * medians, minimum and maximum.
 *
 * Usage: deno run --allow-all bench/keep_boot_bench.ts [ROUNDS]  (default 5)
 *
 * @module
 */
import { buildKvmImage, findKvmKernel, type KvmImage } from "../runtime/backends/kvm_image.ts";
import { findQemu } from "../runtime/backends/kvm.ts";
import { launchKvmKeep } from "../runtime/backends/kvm_vm.ts";
import { bootSevKeep, sevOvmfPath } from "../runtime/backends/sev/sev_launch.ts";
import { baseDiskArgs } from "../runtime/backends/vm/base_disk.ts";
import { parseOvmf, sevHashesPage, sevHashTable } from "../runtime/measure/mod.ts";

const READY = new TextEncoder().encode("ENARX-KVM-READY\n");
const WAIT_MS = 300_000;

/** Milliseconds from QEMU's start to the ready line, for one boot. */
type Boot = (image: KvmImage, workDir: string) => Promise<number>;

/** Reads `conn` until the ready line; resolves with the time it came. */
async function untilReady(conn: Deno.UnixConn): Promise<number> {
  let matched = 0;
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("the frames port closed before the ready line");
    for (let i = 0; i < n; i++) {
      matched = buf[i] === READY[matched] ? matched + 1 : buf[i] === READY[0] ? 1 : 0;
      if (matched === READY.length) return performance.now();
    }
  }
}

/** Connects to QEMU's server socket once it exists. */
async function connect(path: string): Promise<Deno.UnixConn> {
  for (let i = 0; i < 500; i++) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  throw new Error(`QEMU never opened ${path}`);
}

/** microvm with the kvm keep's devices. */
const microvm: Boot = async (image, workDir) => {
  const socket = `${workDir}/frames.sock`;
  const started = performance.now();
  const child = new Deno.Command(findQemu()!, {
    args: [
      ...["-machine", "microvm,pcie=on,acpi=on,rtc=on", "-accel", "tcg", "-cpu", "max"],
      ...["-m", "1024", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none"],
      ...["-no-reboot", "-serial", `file:${workDir}/console.log`],
      ...["-chardev", `socket,id=frames,path=${socket},server=on,wait=off`],
      ...["-device", "isa-serial,chardev=frames,iobase=0x2f8,irq=3"],
      ...["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"],
      ...["-kernel", image.kernel, "-initrd", image.initrd, "-append", image.append],
      ...baseDiskArgs(image.base.path),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const conn = await connect(socket);
  try {
    const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
    const at = await untilReady(conn);
    clearTimeout(timer);
    return at - started;
  } finally {
    conn.close();
    child.kill("SIGKILL");
    await child.status;
  }
};

/** The kvm keep as enarx launches it; the image lookup's time is taken off. */
const q35SeaBios: Boot = async (_image, workDir) => {
  let imageMs = 0;
  let readyMs = 0;
  const keep = await launchKvmKeep({
    workDir,
    log: (line) => {
      const image = line.match(/^kvm image \w+ in (\d+) ms/);
      if (image) imageMs = Number(image[1]);
      const ready = line.match(/^guest ready in (\d+) ms/);
      if (ready) readyMs = Number(ready[1]);
    },
  });
  const reader = keep.stdout.getReader(); // reading drives the ready-line search
  const timer = setTimeout(() => keep.kill("SIGKILL"), WAIT_MS);
  try {
    while (readyMs === 0) {
      const next = await Promise.race([
        reader.read(),
        keep.status.then(() => ({ done: true })),
        new Promise((r) => setTimeout(() => r({ done: false }), 50)),
      ]) as { done: boolean };
      if (next.done && readyMs === 0) throw new Error("the kvm keep ended before it was ready");
    }
    return readyMs - imageMs;
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
    keep.kill("SIGKILL");
    await keep.status;
  }
};

/** q35 with the AmdSev OVMF and the hashes table, without SNP. */
const q35Ovmf: Boot = async (image, workDir) => {
  const ovmf = sevOvmfPath();
  const area = parseOvmf(await Deno.readFile(ovmf)).sevHashTable;
  if (area === undefined) {
    throw new Error(`${ovmf} has no kernel hashes table: not an AmdSev build`);
  }
  const table = sevHashTable({
    kernel: await Deno.readFile(image.kernel),
    initrd: await Deno.readFile(image.initrd),
    append: image.append,
  });
  const file = `${workDir}/hashes.bin`;
  await Deno.writeFile(file, sevHashesPage(table, area.gpa & 0xfff));
  await Deno.writeTextFile(`${file}.cmdline`, `${image.append}\0`);
  const started = performance.now();
  const keep = await bootSevKeep({
    qemu: findQemu()!,
    workDir,
    ovmf,
    kernel: image.kernel,
    initrd: image.initrd,
    append: image.append,
    baseDisk: image.base.path,
    memoryMiB: 1024,
    vcpus: 1,
    vcpuType: "max",
    accel: "tcg",
    guestPort: 8443,
    hashes: { file, gpa: area.gpa & ~0xfff, cmdlineFile: `${file}.cmdline` },
    readyTimeoutMs: WAIT_MS,
  });
  const ms = performance.now() - started; // bootSevKeep returns at the guest's ready line
  keep.kill("SIGKILL");
  await keep.status;
  return ms;
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const rounds = Number(Deno.args[0] ?? 5);
  if (findQemu() === undefined) throw new Error("qemu-system-x86_64 is not on PATH");
  const scratch = await Deno.makeTempDir({ prefix: "enarx-boot-bench-" });
  // The kvm keep's image cache (as launchKvmKeep finds it) and the image itself.
  Deno.env.set("ENARX_KVM_CACHE_DIR", `${scratch}/kvm-cache`);
  Deno.env.delete("ENARX_SNP_SIM_DIR");
  const image = await buildKvmImage({ cacheDir: `${scratch}/kvm-cache`, kernel: findKvmKernel() });
  const ways: [string, Boot][] = [
    ["microvm (qboot)", microvm],
    ["q35 + SeaBIOS (the kvm keep)", q35SeaBios],
    ["q35 + AmdSev OVMF (sev firmware path, no SNP)", q35Ovmf],
  ];
  const times = new Map<string, number[]>(ways.map(([name]) => [name, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [name, boot] of ways) {
        const workDir = await Deno.makeTempDir({ dir: scratch });
        const ms = await boot(image, workDir);
        times.get(name)!.push(ms);
        console.error(`round ${round + 1}/${rounds}: ${name}: ${ms.toFixed(0)} ms`);
        await Deno.remove(workDir, { recursive: true });
      }
    }
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
  console.log(
    `| boot to wasmldr's ready line (${rounds} interleaved rounds) | median s | min s | max s |`,
  );
  console.log("| --- | ---: | ---: | ---: |");
  for (const [name, xs] of times) {
    const s = (x: number) => (x / 1000).toFixed(2);
    console.log(`| ${name} | ${s(median(xs))} | ${s(Math.min(...xs))} | ${s(Math.max(...xs))} |`);
  }
}

await main();
