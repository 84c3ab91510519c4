/**
 * What a kvm keep costs the host: its cold boot under TCG and the memory of
 * its QEMU process with several keeps alive at once (issue 11: kvm keeps
 * share one read-only base disk).
 *
 * Launches KEEPS kvm keeps one after another with launchKvmKeep of the
 * checkout at ROOT (default: this one; pass another checkout, e.g. one of
 * main before the change, to compare), its image built beforehand into a
 * cache of its own. For each keep it takes the time from QEMU's start to
 * the guest's ready line (written by init before wasmldr starts), and to
 * "settled": the first second in which QEMU used less than 15 % of a CPU
 * after the ready line, which is when wasmldr (Deno) has started and waits
 * for its hello, and QEMU's CPU time (user + system) at that point, which
 * load from other work changes less than the wall time. The keeps stay alive; once the last has settled, it reads
 * each QEMU's proportional set size (PSS, /proc/PID/smaps_rollup: pages
 * shared between the QEMUs count a share each) and RSS, then kills them.
 * Prints one JSON object.
 *
 * Usage: deno run --allow-all bench/kvm_keep_memory_bench.ts [KEEPS] [ROOT]   (default 4, .)
 *
 * @module
 */

const KEEPS = Number(Deno.args[0] ?? 4);
const ROOT = Deno.realPathSync(Deno.args[1] ?? new URL("..", import.meta.url).pathname);

/** The part of kvm_vm.ts (and kvm_image.ts) this uses, the same before and after the change. */
interface KvmVm {
  launchKvmKeep(options: { workDir: string; cacheDir: string; log: (l: string) => void }): Promise<{
    stdout: ReadableStream<Uint8Array>;
    status: Promise<Deno.CommandStatus>;
    kill(signal?: Deno.Signal): void;
    pid: number;
  }>;
}

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** A field of /proc/PID/smaps_rollup, in MiB. */
function rollup(pid: number, field: string): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return match === null ? NaN : Number(match[1]) / 1024;
}

/** Waits until QEMU uses less than 15 % of a CPU over one second; returns when. */
async function settled(pid: number, limitMs: number): Promise<number> {
  const deadline = performance.now() + limitMs;
  let last = cpuSeconds(pid);
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuSeconds(pid);
    if (now - last < 0.15) return performance.now() - 1000;
    last = now;
  }
  throw new Error(`QEMU ${pid} never settled`);
}

/** Launches one keep; resolves once it is ready, with its times and handle. */
async function launch(vm: KvmVm, scratch: string, cacheDir: string) {
  const workDir = await Deno.makeTempDir({ dir: scratch });
  let readyMs = 0;
  let imageMs = 0;
  const started = performance.now();
  const keep = await vm.launchKvmKeep({
    workDir,
    cacheDir,
    log: (line) => {
      const image = line.match(/^kvm image \w+ in (\d+) ms/);
      if (image) imageMs = Number(image[1]);
      if (/^guest ready in/.test(line)) readyMs = performance.now() - started;
    },
  });
  const reader = keep.stdout.getReader(); // reading drives the ready-line search
  (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) { /* frames: none */ }
  })();
  while (readyMs === 0) {
    const ended = await Promise.race([
      keep.status.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 50)),
    ]);
    if (ended) throw new Error(`the keep ended before it was ready; see ${workDir}/console.log`);
  }
  const settledMs = (await settled(keep.pid, 180_000)) - started;
  const cpuS = cpuSeconds(keep.pid);
  return { keep, imageMs, readyMs: readyMs - imageMs, settledMs: settledMs - imageMs, cpuS };
}

async function main(): Promise<void> {
  const vm: KvmVm = await import(`file://${ROOT}/runtime/backends/kvm_vm.ts`);
  const { buildKvmImage } = await import(`file://${ROOT}/runtime/backends/kvm_image.ts`);
  const scratch = await Deno.makeTempDir({ prefix: "enarx-kvm-mem-" });
  const cacheDir = `${scratch}/cache`;
  Deno.env.delete("ENARX_SNP_SIM_DIR");
  const keeps: Awaited<ReturnType<typeof launch>>[] = [];
  const loadBefore = Deno.loadavg();
  try {
    await buildKvmImage({ cacheDir });
    for (let i = 0; i < KEEPS; i++) {
      keeps.push(await launch(vm, scratch, cacheDir));
      console.error(`keep ${i + 1}/${KEEPS}: ready ${keeps[i].readyMs.toFixed(0)} ms`);
    }
    const memory = keeps.map(({ keep }) => ({
      pssMiB: rollup(keep.pid, "Pss"),
      rssMiB: rollup(keep.pid, "Rss"),
    }));
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    console.log(JSON.stringify({
      root: ROOT,
      keeps: KEEPS,
      bootReadyMs: keeps.map((k) => Math.round(k.readyMs)),
      bootSettledMs: keeps.map((k) => Math.round(k.settledMs)),
      imageLookupMs: keeps.map((k) => k.imageMs),
      qemuCpuSettledS: keeps.map((k) => Number(k.cpuS.toFixed(1))),
      pssMiB: memory.map((m) => Math.round(m.pssMiB)),
      rssMiB: memory.map((m) => Math.round(m.rssMiB)),
      pssTotalMiB: Math.round(sum(memory.map((m) => m.pssMiB))),
      loadBefore,
      loadAfter: Deno.loadavg(),
    }));
  } finally {
    for (const { keep } of keeps) keep.kill("SIGKILL");
    for (const { keep } of keeps) await keep.status;
    await Deno.remove(scratch, { recursive: true });
  }
}

await main();
