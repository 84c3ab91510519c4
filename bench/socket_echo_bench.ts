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
import { measureEcho, quantile, startListening, tcpClient } from "./_echo.ts";

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
    const { port, child } = await startListening(cmd, args);
    const { rttUs, mbps } = await measureEcho(await tcpClient(port), roundTrips, BULK);
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
    `| ${name} | ${quantile(r.rtt, 0.5).toFixed(1)} | ${quantile(r.rtt, 0.99).toFixed(1)} | ${
      quantile(r.mbps, 0.5).toFixed(0)
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
console.log(`| enarx run, no socket (wasmtime's fd_write) | ${quantile(plain, 0.5)} |`);
console.log(
  `| enarx run, one socket (shim, trampoline, wasmtime's fd_write) | ${
    quantile(withSocket, 0.5)
  } |`,
);
