/**
 * What reaching a deployed service in a kvm keep costs against a nil keep:
 * tests/workloads/c/sockets.c's echo server (`echo web 1`) deployed to one
 * local keepmgr offering `kvm,nil`, reached through the endpoint keepmgr
 * forwards (for kvm: keepmgr's relay, then QEMU's user-net forward into the
 * VM, under TCG unless ENARX_KVM_ACCEL=kvm). Per round and backend: round
 * trips of 64 bytes (median, p90), then 16 MiB echoed. Rounds alternate
 * kvm, nil. Prints one line per deploy; not a test. Needs QEMU and the keep
 * kernel (tools/test_deps.sh) and tests/workloads/build/sockets.wasm
 * (tests/workloads/build.sh).
 *
 *     deno run -A bench/kvm_service_bench.ts [ROUNDS] [ROUND_TRIPS]
 */
import { LocalKeepmgr } from "../runtime/keepmgr/local.ts";
import { deploy } from "../runtime/client/deploy.ts";
import { SnpSimulator } from "../runtime/attestation/amd/snp_sim.ts";

const ROOT = new URL("../", import.meta.url);
const rounds = Number(Deno.args[0] ?? "2");
const roundTrips = Number(Deno.args[1] ?? "300");
const BULK = 16 << 20;
const SIM_DIR = new URL(".cache/bench-snp-sim", ROOT).pathname;
const TOML = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
  '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "web"\nport = 0\n';

/** Latency of 64-byte round trips and throughput of a bulk echo on one connection. */
async function measure(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const msg = new Uint8Array(64).fill(7);
  const buf = new Uint8Array(65536);
  const times: number[] = [];
  for (let i = 0; i < roundTrips; i++) {
    const t = performance.now();
    await conn.write(msg);
    for (let got = 0; got < msg.length;) got += (await conn.read(buf)) ?? Infinity;
    times.push(performance.now() - t);
  }
  const big = new Uint8Array(BULK);
  const started = performance.now();
  const reading = (async () => {
    for (let got = 0; got < BULK;) got += (await conn.read(buf)) ?? Infinity;
  })();
  for (let at = 0; at < BULK;) at += await conn.write(big.subarray(at));
  await reading;
  const seconds = (performance.now() - started) / 1000;
  await conn.closeWrite();
  conn.close();
  times.sort((a, b) => a - b);
  const at = (q: number) => Math.round(times[Math.floor(q * (times.length - 1))] * 1000);
  return { median_us: at(0.5), p90_us: at(0.9), mib_per_s: Math.round(BULK / 1048576 / seconds) };
}

const module = await Deno.readFile(new URL("tests/workloads/build/sockets.wasm", ROOT));
const simulator = await SnpSimulator.open(SIM_DIR);
// A VM keep under TCG on a loaded machine may need more than the default 30 s for its evidence.
const mgr = await LocalKeepmgr.start({
  simDir: SIM_DIR,
  args: ["--backends", "kvm,nil", "--step-timeout", "120s"],
});
try {
  for (let round = 1; round <= rounds; round++) {
    for (const backend of ["kvm", "nil"]) {
      let measured: ReturnType<typeof measure> | undefined;
      await deploy({
        module,
        config: TOML,
        args: ["echo", "web", "1"],
        env: {},
        stdin: new Uint8Array(0),
        services: 1,
      }, {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: `sha256:${simulator.rootFingerprint}`,
        backend,
        onStep: (event) => {
          if (event.kind === "endpoint") measured = measure(event.endpoint.port);
        },
      });
      const load = (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
      console.log(`round ${round} ${backend}: ${JSON.stringify(await measured)} load ${load}`);
    }
  }
} finally {
  await mgr.close();
}
