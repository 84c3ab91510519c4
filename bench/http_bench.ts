/**
 * Requests per second and latency of the HTTP example
 * (tests/workloads/c/http_server.c, one thread on poll()) under load from
 * `wrk` (Debian's; installed with apt-get when missing and run as root):
 *
 *   - the wasm under `enarx run --listen` (nil keep: socket shim, docs/sockets.md)
 *   - the same wasm under the native harness (bench/native/http_host.c) on the same
 *     libwasmtime with the same socket shim, when bench/build.sh has built it
 *     (it needs ENARX_LIBWASMTIME, as enarx does)
 *   - the same C program built for the host with gcc -O2
 *   - the wasm under `enarx run` with its listen entry as `prot = "tls"`
 *   - tests/workloads/rust/tokio_http (the same answers from tokio's
 *     current-thread runtime, Rust) under `enarx run --listen`, when
 *     tests/workloads/build.sh has built it
 *
 * Each server is started once; rounds alternate between them (`wrk -t1 -cC
 * -dDs --latency` per server per round, GET /), first with keep-alive, then
 * with `Connection: close` (a new connection, and for tls a handshake, per
 * request). Prints a table; not a test.
 *
 *     deno run -A bench/http_bench.ts [ROUNDS] [SECONDS] [CONNECTIONS]
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { quantile, startListening } from "./_echo.ts";
import { trampolineWat } from "../ffi/wasi_sockets.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(ROOT, "bench", "build");
const SOURCE = join(ROOT, "tests", "workloads", "c", "http_server.c");
const TOKIO = join(ROOT, "tests", "workloads", "build", "tokio_http-rs.wasm");
const rounds = Number(Deno.args[0] ?? "3");
const seconds = Number(Deno.args[1] ?? "5");
const connections = Number(Deno.args[2] ?? "100");

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout);
}

async function ensureWrk(): Promise<void> {
  const found = await run("sh", ["-c", "command -v wrk || true"]);
  if (found.trim() !== "") return;
  if (Deno.uid() !== 0) {
    console.error('http_bench: "wrk" is not installed; apt-get install wrk (as root)');
    Deno.exit(69);
  }
  await run("apt-get", ["install", "-y", "-q", "wrk"]);
}

async function build(): Promise<{ wasm: string; native: string }> {
  await Deno.mkdir(OUT, { recursive: true });
  const wasm = join(OUT, "http_server.wasm");
  const native = join(OUT, "http_server_native");
  await run("clang", ["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", wasm, SOURCE]);
  await run("gcc", ["-O2", "-o", native, SOURCE]);
  return { wasm, native };
}

/** wrk's duration ("812.00us", "1.20ms", "1.01s") in microseconds. */
function micros(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!match) throw new Error(`cannot read wrk's duration "${text}"`);
  const scale = { us: 1, ms: 1e3, s: 1e6, m: 6e7 }[match[2]]!;
  return Number(match[1]) * scale;
}

/** One wrk run: requests per second, median and p99 latency (µs), errors by kind. */
async function load(
  url: string,
  close: boolean,
): Promise<{ rps: number; p50: number; p99: number; errors: Record<string, number> }> {
  const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", url];
  if (close) args.push("-H", "Connection: close");
  const text = await run("wrk", args);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const p50 = micros(/\n\s+50%\s+(\S+)/.exec(text)?.[1] ?? "");
  const p99 = micros(/\n\s+99%\s+(\S+)/.exec(text)?.[1] ?? "");
  const kinds = ["connect", "read", "write", "timeout"];
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors: Record<string, number> = {
    "non-2xx": Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
  };
  kinds.forEach((kind, i) => errors[kind] = Number(socket?.[i + 1] ?? 0));
  return { rps, p50, p99, errors };
}

/** Errors summed over rounds, by kind ("0" when none). */
function errorText(runs: Record<string, number>[]): string {
  const sums = new Map<string, number>();
  for (const run of runs) {
    for (const [k, n] of Object.entries(run)) sums.set(k, (sums.get(k) ?? 0) + n);
  }
  const parts = [...sums].filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(", ") : "0";
}

async function tlsConfig(): Promise<string> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "Enarx.toml");
  await Deno.writeTextFile(
    path,
    '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
      '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\naddr = "127.0.0.1"\nport = 0\n',
  );
  return path;
}

async function servers(wasm: string, native: string): Promise<[string, string, string[]][]> {
  const enarx = join(ROOT, "enarx");
  const list: [string, string, string[]][] = [
    ["enarx run (nil), WASI guest", enarx, ["run", "--listen", "web=127.0.0.1:0", wasm, "web"]],
  ];
  const host = join(OUT, "http_host");
  try {
    await Deno.stat(host);
    const trampoline = join(OUT, "trampoline.wat");
    await Deno.writeTextFile(trampoline, trampolineWat());
    list.push(["native harness, same libwasmtime + shim", host, [trampoline, wasm, "web"]]);
  } catch {
    console.error("http_bench: no bench/build/http_host (run bench/build.sh): its row is skipped");
  }
  list.push(["native (gcc -O2)", native, ["0"]]);
  try {
    await Deno.stat(TOKIO);
    list.push(["enarx run (nil), tokio guest", enarx, [
      "run",
      "--listen",
      "web=127.0.0.1:0",
      TOKIO,
      "web",
    ]]);
  } catch {
    console.error(
      "http_bench: no tokio_http-rs.wasm (run tests/workloads/build.sh): its row is skipped",
    );
  }
  list.push(['enarx run (nil), prot = "tls"', enarx, [
    "run",
    "--wasmcfgfile",
    await tlsConfig(),
    wasm,
    "web",
  ]]);
  return list;
}

await ensureWrk();
const { wasm, native } = await build();
const started: { name: string; url: string; child: Deno.ChildProcess }[] = [];
for (const [name, cmd, args] of await servers(wasm, native)) {
  const { port, child } = await startListening(cmd, args);
  const scheme = name.includes("tls") ? "https" : "http";
  started.push({ name, url: `${scheme}://127.0.0.1:${port}/`, child });
}
// Keep-alive on every server, then a new connection (and TLS handshake) per request.
const runs = [
  ...started.map((s) => ({ ...s, close: false })),
  ...started.filter((s) => !s.name.includes("harness")).map((s) => ({
    ...s,
    name: `${s.name}, new connection per request`,
    close: true,
  })),
];
console.log(`load at start: ${(await run("uptime", [])).trim()}`);
const results = new Map(runs.map((s) => [s.name, [] as Awaited<ReturnType<typeof load>>[]]));
for (let r = 0; r < rounds; r++) {
  for (const s of runs) results.get(s.name)!.push(await load(s.url, s.close));
}
console.log(`load at end: ${(await run("uptime", [])).trim()}`);
for (const s of started) {
  s.child.kill("SIGTERM");
  await s.child.status;
}
console.log(
  `\n${rounds} rounds, wrk -t1 -c${connections} -d${seconds}s, GET / (medians over rounds)\n`,
);
console.log(
  "| server | requests/s | latency median µs | latency p99 µs | errors | requests/s by round |",
);
console.log("| --- | ---: | ---: | ---: | ---: | --- |");
for (const [name, list] of results) {
  const cells = [
    quantile(list.map((x) => x.rps), 0.5).toFixed(0),
    quantile(list.map((x) => x.p50), 0.5).toFixed(0),
    quantile(list.map((x) => x.p99), 0.5).toFixed(0),
    errorText(list.map((x) => x.errors)),
    list.map((x) => (x.rps / 1000).toFixed(1) + "k").join(" "),
  ];
  console.log(`| ${name} | ${cells.join(" | ")} |`);
}
