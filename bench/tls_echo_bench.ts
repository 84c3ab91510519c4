/**
 * What `prot = "tls"` costs: tests/workloads/c/sockets.c `echo` (blocking,
 * 4 KiB reads) as a WASI guest of `enarx run` (nil keep) with its listen
 * entry as "tcp" and as "tls" (TLS ended by the keep's runtime, plaintext
 * to the guest over a Unix socket; docs/sockets.md). The guest serves two
 * connections: the first only reads the keep's certificate (tls) or
 * connects and leaves (tcp); on the second, one Deno client makes round
 * trips of 64 bytes, then echoes 64 MiB. Then the TLS handshake in the keep:
 * connect and handshake (Deno.connectTls, P-256 certificate) against a tls
 * listener, a TCP connect against a tcp one, and the handshake against a
 * node:tls server (the keep's own TLS server stack) in the client's own
 * process (TLS with no keep).
 * Prints tables; not a test.
 *
 *     deno run -A bench/tls_echo_bench.ts [ROUNDS] [ROUND_TRIPS] [HANDSHAKES]
 */
import { join } from "node:path";
import * as tls from "node:tls";
import { fileURLToPath } from "node:url";
import { measureEcho, quantile, startListening, tcpClient } from "./_echo.ts";
import { presentedCertificate } from "../tests/workloads/tls_helpers.ts";
import { createKeepIdentity } from "../runtime/wasm/keep_identity.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SOCKETS = join(ROOT, "tests", "workloads", "build", "sockets.wasm");
const rounds = Number(Deno.args[0] ?? "5");
const roundTrips = Number(Deno.args[1] ?? "5000");
const handshakes = Number(Deno.args[2] ?? "300");
const BULK = 64 << 20;

async function config(prot: "tcp" | "tls", name: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(
    path,
    '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
      `[[files]]\nkind = "listen"\nprot = "${prot}"\nname = "${name}"\naddr = "127.0.0.1"\n` +
      "port = 0\n",
  );
  return path;
}

/**
 * A TLS client with Nagle off (Deno.connectTls has no setNoDelay): TCP with
 * TCP_NODELAY, then startTls, so that the client's own small writes are
 * not what is measured.
 */
async function tlsClient(port: number, pem: string): Promise<Deno.TlsConn> {
  return await Deno.startTls(await tcpClient(port), { hostname: "localhost", caCerts: [pem] });
}

async function echoRounds(): Promise<void> {
  const results: Record<string, { rtt: number[]; mbps: number[] }> = {};
  const tomls = { tcp: await config("tcp", "echo"), tls: await config("tls", "echo") };
  for (let round = 0; round < rounds; round++) {
    for (const prot of ["tcp", "tls"] as const) {
      const { port, child } = await startListening(join(ROOT, "enarx"), [
        "run",
        "--wasmcfgfile",
        tomls[prot],
        SOCKETS,
        "echo",
        "echo",
        "2",
      ]);
      let conn: Deno.Conn;
      if (prot === "tls") {
        // The certificate the keep printed the fingerprint of (read unverified, then trusted).
        const pem = await presentedCertificate(port);
        conn = await tlsClient(port, pem);
      } else {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        conn = await tcpClient(port);
      }
      const { rttUs, mbps } = await measureEcho(conn, roundTrips, BULK);
      await child.status;
      results[prot] ??= { rtt: [], mbps: [] };
      results[prot].rtt.push(...rttUs);
      results[prot].mbps.push(mbps);
    }
  }
  console.log(
    `| listen prot (${rounds} rounds x ${roundTrips} round trips) | RTT median µs | RTT p90 µs | RTT p99 µs | echo MiB/s (median) |`,
  );
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const [prot, r] of Object.entries(results)) {
    console.log(
      `| ${prot} | ${quantile(r.rtt, 0.5).toFixed(1)} | ${quantile(r.rtt, 0.9).toFixed(1)} | ${
        quantile(r.rtt, 0.99).toFixed(1)
      } | ${quantile(r.mbps, 0.5).toFixed(0)} |`,
    );
  }
}

/** ms from connect to a finished handshake (or a TCP connect), `count` times, one at a time. */
async function connectTimes(
  port: number,
  count: number,
  pem: string | undefined,
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    if (pem === undefined) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.setNoDelay(true);
      times.push(performance.now() - t);
      conn.close();
      continue;
    }
    const conn = await tlsClient(port, pem);
    await conn.handshake();
    times.push(performance.now() - t);
    await conn.closeWrite();
    await conn.read(new Uint8Array(1)).catch(() => null); // the guest's end of stream
    conn.close();
  }
  return times;
}

async function handshakeCost(): Promise<void> {
  const rows: [string, number[]][] = [];
  for (const prot of ["tcp", "tls"] as const) {
    const toml = await config(prot, "web");
    const { port, child } = await startListening(join(ROOT, "enarx"), [
      "run",
      "--wasmcfgfile",
      toml,
      SOCKETS,
      "echo",
      "web",
      "1000000",
    ]);
    const pem = prot === "tls" ? await presentedCertificate(port) : undefined;
    await connectTimes(port, 20, pem); // warm-up
    rows.push([
      prot === "tls"
        ? "enarx run, tls listen: TCP connect + TLS handshake"
        : "enarx run, tcp listen: TCP connect",
      await connectTimes(port, handshakes, pem),
    ]);
    child.kill("SIGTERM");
    await child.status;
  }
  const id = await createKeepIdentity();
  // The keep's TLS server stack (node:tls, Nagle off) with no keep: what TLS itself costs.
  const server = tls.createServer(
    { cert: id.certPem, key: id.keyPem, noDelay: true, allowHalfOpen: true },
    (socket) => {
      socket.on("error", () => {});
      socket.on("end", () => socket.end());
      socket.resume();
    },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await connectTimes(port, 20, id.certPem);
  rows.push([
    "node:tls server in the client's process (no keep)",
    await connectTimes(port, handshakes, id.certPem),
  ]);
  server.close();
  console.log(`\n| ${handshakes} connections, one at a time | median ms | p90 ms |`);
  console.log("| --- | ---: | ---: |");
  for (const [name, times] of rows) {
    console.log(
      `| ${name} | ${quantile(times, 0.5).toFixed(3)} | ${quantile(times, 0.9).toFixed(3)} |`,
    );
  }
}

await echoRounds();
await handshakeCost();
