/**
 * What a keep's sockets cost: bench/workloads/tcp_echo.c as a WASI guest of
 * `enarx run --listen echo=127.0.0.1:0` (nil keep: the socket shim and its
 * trampoline, docs/sockets.md) against the same C program built for the host
 * with gcc -O2. One Deno client per server: round trips of 64 bytes (latency),
 * then 64 MiB echoed (throughput). Rounds alternate between the two servers.
 * Then what a workload with sockets pays on its other fds:
 * bench/workloads/small_writes.c (16-byte writes to stdout, /dev/null) with
 * and without a socket. Prints tables; not a test.
 *
 *     deno run -A bench/socket_echo_bench.ts [ROUNDS] [ROUND_TRIPS]
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(ROOT, "bench", "build");
const SOURCE = join(ROOT, "bench", "workloads", "tcp_echo.c");
const rounds = Number(Deno.args[0] ?? "5");
const roundTrips = Number(Deno.args[1] ?? "5000");
const BULK = 64 << 20;

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
}

async function build(): Promise<{ wasm: string; native: string; writes: string }> {
  await Deno.mkdir(OUT, { recursive: true });
  const wasm = join(OUT, "tcp_echo.wasm");
  const native = join(OUT, "tcp_echo_native");
  await run("clang", ["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", wasm, SOURCE]);
  await run("gcc", ["-O2", "-o", native, SOURCE]);
  const writes = join(OUT, "small_writes.wasm");
  const writesSource = join(ROOT, "bench", "workloads", "small_writes.c");
  await run("clang", ["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", writes, writesSource]);
  return { wasm, native, writes };
}

/** Starts a server and waits for its `listening on 127.0.0.1:PORT` line. */
async function start(
  cmd: string,
  args: string[],
): Promise<{ port: number; child: Deno.ChildProcess }> {
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server ended before listening: ${seen}`);
    seen += value;
    const match = /listening on 127\.0\.0\.1:(\d+)/.exec(seen);
    if (match) {
      reader.releaseLock();
      child.stderr.cancel().catch(() => {});
      return { port: Number(match[1]), child };
    }
  }
}

async function readExactly(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  for (let at = 0; at < buf.length;) {
    const n = await conn.read(buf.subarray(at));
    if (n === null) throw new Error("server closed early");
    at += n;
  }
}

async function measure(port: number): Promise<{ rttUs: number[]; mbps: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const ping = new Uint8Array(64).fill(7);
  const pong = new Uint8Array(64);
  const rttUs: number[] = [];
  for (let i = 0; i < roundTrips; i++) {
    const t = performance.now();
    await conn.write(ping);
    await readExactly(conn, pong);
    rttUs.push((performance.now() - t) * 1000);
  }
  const chunk = new Uint8Array(1 << 20).fill(1);
  const sink = new Uint8Array(1 << 20);
  const t = performance.now();
  const reading = (async () => {
    let got = 0;
    while (got < BULK) {
      const n = await conn.read(sink);
      if (n === null) throw new Error("server closed early");
      got += n;
    }
  })();
  for (let sent = 0; sent < BULK; sent += chunk.length) {
    for (let at = 0; at < chunk.length;) at += await conn.write(chunk.subarray(at));
  }
  await reading;
  const seconds = (performance.now() - t) / 1000;
  conn.close();
  return { rttUs, mbps: BULK / (1 << 20) / seconds };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function p99(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length * 0.99)];
}

const { wasm, native, writes } = await build();
const servers: Record<string, [string, string[]]> = {
  "enarx run (nil), WASI guest": [join(ROOT, "enarx"), [
    "run",
    "--listen",
    "echo=127.0.0.1:0",
    wasm,
  ]],
  "native (gcc -O2)": [native, []],
};
const results: Record<string, { rtt: number[]; mbps: number[] }> = {};
for (let round = 0; round < rounds; round++) {
  for (const [name, [cmd, args]] of Object.entries(servers)) {
    const { port, child } = await start(cmd, args);
    const { rttUs, mbps } = await measure(port);
    await child.status;
    results[name] ??= { rtt: [], mbps: [] };
    results[name].rtt.push(...rttUs);
    results[name].mbps.push(mbps);
  }
}
console.log(
  `| server (${rounds} rounds x ${roundTrips} round trips) | RTT median µs | RTT p99 µs | echo MiB/s (median) |`,
);
console.log("| --- | ---: | ---: | ---: |");
for (const [name, r] of Object.entries(results)) {
  console.log(
    `| ${name} | ${median(r.rtt).toFixed(1)} | ${p99(r.rtt).toFixed(1)} | ${
      median(r.mbps).toFixed(0)
    } |`,
  );
}

/** ns per 16-byte write to stdout (/dev/null) as the guest timed it. */
async function writeCost(extra: string[]): Promise<number> {
  const out = await new Deno.Command(join(ROOT, "enarx"), {
    args: ["run", ...extra, writes, "1000000"],
    stdout: "null",
    stderr: "piped",
  }).output();
  const match = /(\d+) ns each/.exec(new TextDecoder().decode(out.stderr));
  if (!match) throw new Error(new TextDecoder().decode(out.stderr));
  return Number(match[1]);
}

const plain: number[] = [];
const withSocket: number[] = [];
for (let round = 0; round < rounds; round++) {
  plain.push(await writeCost([]));
  withSocket.push(await writeCost(["--listen", "unused=127.0.0.1:0"]));
}
console.log(`\n| write(1, 16 bytes), 10^6 calls, ${rounds} rounds | ns per call (median) |`);
console.log("| --- | ---: |");
console.log(`| enarx run, no socket (wasmtime's fd_write) | ${median(plain)} |`);
console.log(
  `| enarx run, one socket (shim, trampoline, wasmtime's fd_write) | ${median(withSocket)} |`,
);
