/**
 * keepmgr's service pieces on their own: --service-ports parsing, which
 * port a service gets (asked, else the next free; none: no-free-port), the
 * plain TCP relay, and the 256 KiB output log of detached workloads.
 */
import assert from "node:assert/strict";
import {
  KeepServices,
  OUTPUT_LOG_LIMIT,
  OutputLog,
  parsePortRange,
  ServiceForward,
  ServicePorts,
} from "../../runtime/keepmgr/services/mod.ts";
import { KeepError } from "../../runtime/keepmgr/keep_table.ts";
import { UsageError } from "../../runtime/errors.ts";

/** A free range of `size` ports, found by trying (other tests may run at once). */
function freeRange(size: number): { first: number; last: number } {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 40_000 + Math.floor(Math.random() * 2_000) * 10;
    const held: Deno.Listener[] = [];
    try {
      for (let p = first; p < first + size; p++) {
        held.push(Deno.listen({ hostname: "127.0.0.1", port: p }));
      }
      return { first, last: first + size - 1 };
    } catch {
      /* taken: try another */
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("no free port range");
}

Deno.test("services: --service-ports parses FIRST-LAST or one port, and names a bad value", () => {
  assert.deepEqual(parsePortRange("20000-20999"), { first: 20000, last: 20999 });
  assert.deepEqual(parsePortRange("8080"), { first: 8080, last: 8080 });
  for (const bad of ["", "0-10", "10-5", "1-65536", "a-b", "1-2-3"]) {
    assert.throws(
      () => parsePortRange(bad),
      (e: unknown) => e instanceof UsageError && e.message.includes(`"${bad}" is not a port range`),
      bad,
    );
  }
});

Deno.test("services: the asked port when free and in range, else the next free; full: no-free-port", () => {
  const range = freeRange(3);
  const ports = new ServicePorts(range, "127.0.0.1");
  const asked = ports.listen(range.first + 2, "a");
  assert.equal(asked.addr.port, range.first + 2);
  // Asked again (held by us), or outside the range: the next free one.
  const second = ports.listen(range.first + 2, "b");
  const third = ports.listen(80, "c");
  assert.deepEqual(
    [second.addr.port, third.addr.port].sort(),
    [range.first, range.first + 1],
  );
  assert.throws(
    () => ports.listen(0, 'service "d"'),
    (e: unknown) =>
      e instanceof KeepError && e.code === "no-free-port" && e.httpStatus === 503 &&
      e.message.includes(
        `No free port for service "d": all 3 of --service-ports ${range.first}-${range.last}`,
      ),
  );
  // Given back, a port is listened on again.
  asked.close();
  ports.release(range.first + 2);
  const again = ports.listen(0, "e");
  assert.equal(again.addr.port, range.first + 2);
  for (const l of [second, third, again]) l.close();
});

Deno.test("services: a port another process holds is skipped", () => {
  const range = freeRange(2);
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: range.first });
  try {
    const ports = new ServicePorts(range, "127.0.0.1");
    const got = ports.listen(range.first, "a");
    assert.equal(got.addr.port, range.first + 1);
    got.close();
  } finally {
    squatter.close();
  }
});

Deno.test("services: the forward relays both ways with half-close, and frees its port on close", async () => {
  // The keep's socket: it answers upper-cased once the client half-closes.
  const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echoing = (async () => {
    const conn = await echo.accept();
    const buf = new Uint8Array(1024);
    let text = "";
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    await conn.write(new TextEncoder().encode(text.toUpperCase()));
    conn.close();
  })();
  const range = freeRange(1);
  const ports = new ServicePorts(range, "127.0.0.1");
  const services = new KeepServices(ports, "127.0.0.1");
  const endpoints = services.open({
    t: "services",
    services: [{ name: "web", prot: "tcp", port: echo.addr.port, asked: 0 }],
  }, "k");
  assert.deepEqual(endpoints, [{ name: "web", prot: "tcp", host: "127.0.0.1", port: range.first }]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: range.first });
  await conn.write(new TextEncoder().encode("hello"));
  await conn.closeWrite();
  assert.equal(await new Response(conn.readable).text(), "HELLO");
  await echoing;
  await services.close();
  assert.equal(ports.held, 0);
  Deno.listen({ hostname: "127.0.0.1", port: range.first }).close(); // free again
  echo.close();
  // A forward whose keep is gone closes the client's connection.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = new ServiceForward(listener, range.first);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: dead.port });
  assert.equal(await new Response(c.readable).text(), "");
  await dead.close();
});

Deno.test("services: the output log keeps the last 256 KiB, with offsets for followers", () => {
  const log = new OutputLog();
  log.append("stdout", new TextEncoder().encode("one\n"));
  log.append("stderr", new TextEncoder().encode("two\n"));
  assert.equal(log.end, 8);
  assert.deepEqual(log.since(0).map((c) => [c.stream, c.at, new TextDecoder().decode(c.data)]), [
    ["stdout", 0, "one\n"],
    ["stderr", 4, "two\n"],
  ]);
  // From the middle of a chunk: only the rest of it.
  assert.deepEqual(log.since(6).map((c) => [c.at, new TextDecoder().decode(c.data)]), [[6, "o\n"]]);
  assert.deepEqual(log.since(8), []);
  // Past the limit the oldest bytes go, the first kept chunk cut at the front.
  const big = new Uint8Array(OUTPUT_LOG_LIMIT).fill(0x61);
  log.append("stdout", big);
  const kept = log.since(0);
  assert.equal(kept.reduce((n, c) => n + c.data.length, 0), OUTPUT_LOG_LIMIT);
  assert.equal(kept[0].at, 8);
  assert.equal(log.end, 8 + OUTPUT_LOG_LIMIT);
  log.append("stderr", new TextEncoder().encode("end\n"));
  const last = log.since(0);
  assert.equal(last[0].at, 12);
  assert.equal(new TextDecoder().decode(last.at(-1)!.data), "end\n");
});
