/**
 * What the echo benchmarks share (socket_echo, service_forward, tls_echo,
 * http): starting a server and waiting for the port it prints, exact reads
 * and writes, 64-byte round trips then a bulk echo on one connection, and
 * quantiles of the results.
 *
 * @module
 */

/** Round-trip times (µs) and bulk echo throughput (MiB/s) of one connection. */
export interface EchoFigures {
  /** Each 64-byte round trip, in microseconds. */
  rttUs: number[];
  /** The bulk echo's throughput, in MiB per second. */
  mbps: number;
}

/** The line a server prints once it listens (group 1: the port). */
export const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;

/**
 * Starts `cmd ARGS` and waits until its standard error matches `pattern`
 * (group 1: the port); the rest of its standard error is read and dropped,
 * so that a chatty child never blocks on a full pipe.
 */
export async function startListening(
  cmd: string,
  args: string[],
  pattern: RegExp = LISTENING,
): Promise<{ port: number; child: Deno.ChildProcess }> {
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd} ended before it was reachable: ${seen}`);
    seen += value;
    const match = pattern.exec(seen);
    if (match) {
      (async () => {
        while (!(await reader.read()).done) { /* drain */ }
      })().catch(() => {});
      return { port: Number(match[1]), child };
    }
  }
}

/** A TCP connection to the loopback `port` with Nagle off (what is measured is the server). */
export async function tcpClient(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  return conn;
}

/** Reads exactly `buf.length` bytes; throws when the peer closes first. */
export async function readExactly(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  for (let at = 0; at < buf.length;) {
    const n = await conn.read(buf.subarray(at));
    if (n === null) throw new Error("server closed early");
    at += n;
  }
}

/** Writes all of `bytes`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** `roundTrips` 64-byte round trips, then `bulk` bytes echoed, on `conn`, which is then closed. */
export async function measureEcho(
  conn: Deno.Conn,
  roundTrips: number,
  bulk: number,
): Promise<EchoFigures> {
  const ping = new Uint8Array(64).fill(7);
  const pong = new Uint8Array(64);
  const rttUs: number[] = [];
  for (let i = 0; i < roundTrips; i++) {
    const t = performance.now();
    await writeAll(conn, ping);
    await readExactly(conn, pong);
    rttUs.push((performance.now() - t) * 1000);
  }
  const chunk = new Uint8Array(1 << 20).fill(1);
  const t = performance.now();
  const reading = (async () => {
    const sink = new Uint8Array(1 << 20);
    for (let got = 0; got < bulk;) {
      const n = await conn.read(sink);
      if (n === null) throw new Error("server closed early");
      got += n;
    }
  })();
  for (let sent = 0; sent < bulk; sent += chunk.length) await writeAll(conn, chunk);
  await reading;
  const seconds = (performance.now() - t) / 1000;
  conn.close();
  return { rttUs, mbps: bulk / (1 << 20) / seconds };
}

/** The `q` quantile of `values` (the sorted value at ⌊q·n⌋, the last for q = 1). */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}
