/**
 * What a kvm (or sev) keep launch spends finding its images when they are
 * already built: `buildKvmImage` with a filled image cache, which lists the
 * ~1 500 host files of the base disk and initrd, gets their digests and
 * looks the images up by content. Each ROOT is a checkout (this one, or a
 * worktree of the code before a change); the roots' calls are interleaved,
 * each in a process of its own per round (a launch is a fresh keepldr or
 * keepmgr call), so that the machine's load falls on all alike.
 *
 * Usage: deno run --allow-all bench/kvm_image_bench.ts [--rounds N] [ROOT...]
 *        (default: this checkout, 15 rounds)
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { rounds: { type: "string", default: "15" }, child: { type: "string" } },
  allowPositionals: true,
});

if (values.child !== undefined) {
  // One timed call in this process, after one untimed call that fills the caches.
  const { buildKvmImage } = await import(`file://${values.child}/runtime/backends/kvm_image.ts`);
  const cacheDir = Deno.env.get("ENARX_BENCH_IMAGE_CACHE")!;
  await buildKvmImage({ cacheDir });
  const started = performance.now();
  const image = await buildKvmImage({ cacheDir });
  const ms = performance.now() - started;
  console.log(JSON.stringify({ ms, built: image.built }));
  Deno.exit(0);
}

const here = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const roots = positionals.length > 0 ? positionals.map((r) => r.replace(/\/$/, "")) : [here];
const rounds = Number(values.rounds);
const scratch = await Deno.makeTempDir({ prefix: "enarx-kvm-image-bench-" });
const times = new Map<string, number[]>(roots.map((r) => [r, []]));
const loadBefore = Deno.loadavg();
try {
  for (let round = 0; round < rounds; round++) {
    for (const root of roots) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          "--quiet",
          "--config",
          `${root}/deno.json`,
          new URL(import.meta.url).pathname,
          "--child",
          root,
        ],
        env: { ENARX_BENCH_IMAGE_CACHE: `${scratch}/${roots.indexOf(root)}` },
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (!out.success) throw new Error(`the call for ${root} failed`);
      const { ms } = JSON.parse(new TextDecoder().decode(out.stdout));
      times.get(root)!.push(ms);
    }
    console.error(`round ${round + 1}/${rounds}`);
  }
} finally {
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
}

const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(
  `\n${new Date().toISOString()}; load average ${load(loadBefore)} before, ` +
    `${load(Deno.loadavg())} after; ${rounds} interleaved rounds\n`,
);
console.log("| checkout | buildKvmImage with built images, median (min–max) |");
console.log("| --- | --- |");
for (const root of roots) {
  const xs = times.get(root)!;
  console.log(
    `| ${root} | ${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${
      Math.max(...xs).toFixed(0)
    }) |`,
  );
}
