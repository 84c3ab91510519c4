/**
 * What keepmgr's forward to a deployed service costs: bench/workloads/tcp_echo.c
 * as a WASI guest deployed (`enarx deploy --detach`, nil keep) to a local
 * keepmgr and reached through the port keepmgr forwards
 * (runtime/keepmgr/services/), against the same guest under `enarx run
 * --listen` (reached directly), and an echo server in a separate Deno
 * process. One Deno client per server: round trips of 64 bytes (latency),
 * then 64 MiB echoed (throughput). Rounds alternate between the three.
 * Prints a table; not a test.
 *
 *     deno run -A bench/service_forward_bench.ts [ROUNDS] [ROUND_TRIPS]
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { measureEcho, quantile, startListening, tcpClient } from "./_echo.ts";
import { LocalKeepmgr } from "../runtime/keepmgr/local.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const OUT = join(ROOT, "bench", "build");
const ENARX = join(ROOT, "enarx");
const rounds = Number(Deno.args[0] ?? "5");
const roundTrips = Number(Deno.args[1] ?? "2000");
const BULK = 64 << 20;

/** An echo server of one connection in its own Deno process; prints its port. */
const DENO_ECHO = `
const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.error("listening on 127.0.0.1:" + l.addr.port);
const c = await l.accept();
c.setNoDelay(true);
const buf = new Uint8Array(65536);
while (true) {
  const n = await c.read(buf);
  if (n === null) break;
  for (let at = 0; at < n;) at += await c.write(buf.subarray(at, n));
}
c.close();
l.close();
`;

async function buildEcho(): Promise<string> {
  await Deno.mkdir(OUT, { recursive: true });
  const wasm = join(OUT, "tcp_echo.wasm");
  const source = join(ROOT, "bench", "workloads", "tcp_echo.c");
  const out = await new Deno.Command("clang", {
    args: ["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", wasm, source],
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return wasm;
}

const wasm = await buildEcho();
const toml = join(OUT, "service_forward_Enarx.toml");
await Deno.writeTextFile(
  toml,
  '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
    '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "echo"\nport = 0\n',
);
await using mgr = await LocalKeepmgr.start({ args: ["--service-ports", "47000-47099"] });
const servers: Record<string, [string, string[], RegExp]> = {
  "Deno echo (separate process)": [Deno.execPath(), ["eval", DENO_ECHO], /127\.0\.0\.1:(\d+)/],
  "enarx run (nil), reached directly": [
    ENARX,
    ["run", "--listen", "echo=127.0.0.1:0", wasm],
    /listening on 127\.0\.0\.1:(\d+)/,
  ],
  "enarx deploy --detach (nil), through keepmgr's forward": [ENARX, [
    "deploy",
    "--detach",
    "--keepmgr",
    mgr.url,
    "--keepmgr-token",
    mgr.tokenFile,
    "--trust-simulated",
    mgr.simulatorRoot ?? "",
    "--wasmcfgfile",
    toml,
    wasm,
  ], /endpoint echo: tcp:\/\/127\.0\.0\.1:(\d+)/],
};
const results: Record<string, { rtt: number[]; mbps: number[] }> = {};
for (let round = 0; round < rounds; round++) {
  for (const [name, [cmd, args, pattern]] of Object.entries(servers)) {
    const { port, child } = await startListening(cmd, args, pattern);
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
