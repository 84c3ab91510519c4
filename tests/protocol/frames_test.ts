/** Length-prefixed CBOR frames over web streams. */
import assert from "node:assert/strict";
import { encodeFrame, FrameReader, FrameWriter } from "../../runtime/protocol/frames.ts";
import { CborError, encodeCbor } from "../../runtime/protocol/cbor.ts";
import { EnarxError } from "../../runtime/errors.ts";

function streamOf(
  bytes: Uint8Array,
  chunk = bytes.length || 1,
): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += chunk) {
        controller.enqueue(bytes.slice(i, i + chunk));
      }
      controller.close();
    },
  });
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("frames: a frame is a u32 big-endian length and the CBOR", () => {
  const frame = encodeFrame({ t: "running" });
  const cbor = encodeCbor({ t: "running" });
  assert.deepEqual(frame.subarray(0, 4), Uint8Array.of(0, 0, 0, cbor.length));
  assert.deepEqual(frame.subarray(4), cbor);
});

Deno.test("frames: reads frames split across chunks of any size, then null at the end", async () => {
  const values = [{ t: "hello", v: 1 }, { t: "listening", port: 4242 }, {
    t: "evidence",
    evidence: new Uint8Array(10_000),
  }];
  const bytes = concat(...values.map(encodeFrame));
  for (const chunk of [1, 3, 4, 5, 1000, bytes.length]) {
    const reader = new FrameReader(streamOf(bytes, chunk));
    const got: unknown[] = [];
    for await (const value of reader) got.push(value);
    assert.deepEqual(got, values, `chunk ${chunk}`);
    assert.equal(await reader.read(), null);
  }
});

Deno.test("frames: a stream that ends inside a frame is a protocol error", async () => {
  const frame = encodeFrame({ t: "running" });
  for (const cut of [1, 3, 4, frame.length - 1]) {
    const reader = new FrameReader(streamOf(frame.subarray(0, cut)), {
      peer: "wasmldr",
    });
    await assert.rejects(
      reader.read(),
      (e: unknown) =>
        e instanceof EnarxError && e.code === "protocol" &&
        /wasmldr closed/.test(e.message),
    );
  }
});

Deno.test("frames: oversized, empty and malformed frames are rejected", async () => {
  const big = new Uint8Array(4);
  new DataView(big.buffer).setUint32(0, 2000);
  await assert.rejects(
    new FrameReader(streamOf(big), { maxSize: 1000 }).read(),
    (e: unknown) => e instanceof CborError && e.code === "cbor-too-large",
  );
  const huge = Uint8Array.of(0xff, 0xff, 0xff, 0xff); // 4 GiB: over the default 64 MiB
  await assert.rejects(
    new FrameReader(streamOf(huge)).read(),
    /over the limit/,
  );
  await assert.rejects(
    new FrameReader(streamOf(new Uint8Array(4))).read(),
    (e: unknown) => e instanceof CborError && e.code === "cbor-malformed",
  );
  const garbage = Uint8Array.of(0, 0, 0, 2, 0x18, 0x01); // non-shortest integer
  await assert.rejects(
    new FrameReader(streamOf(garbage)).read(),
    (e: unknown) => e instanceof CborError && e.code === "cbor-malformed",
  );
  // readPayload hands over raw bytes without decoding (relays).
  const raw = await new FrameReader(streamOf(Uint8Array.of(0, 0, 0, 1, 0xff)))
    .readPayload();
  assert.deepEqual(raw, Uint8Array.of(0xff));
});

Deno.test("frames: concurrent writes never interleave, and close flushes", async () => {
  const chunks: Uint8Array[] = [];
  const sink = new WritableStream<Uint8Array>({
    async write(chunk) {
      // Yield between chunks to give interleaving a chance.
      await new Promise((resolve) => setTimeout(resolve, 0));
      chunks.push(chunk);
    },
  });
  const writer = new FrameWriter(sink);
  const values = Array.from({ length: 20 }, (_, i) => ({ t: "stdout", n: i }));
  await Promise.all(values.map((v) => writer.write(v)));
  await writer.close();
  const reader = new FrameReader(streamOf(concat(...chunks)));
  const got: unknown[] = [];
  for await (const value of reader) got.push(value);
  assert.deepEqual(got, values);
  await assert.rejects(writer.write({ t: "late" }), /closed/);
});

Deno.test("frames: through a real child process's pipes", async () => {
  const child = new Deno.Command("cat", { stdin: "piped", stdout: "piped" })
    .spawn();
  const writer = new FrameWriter(child.stdin);
  const reader = new FrameReader(child.stdout);
  const payload = {
    t: "sealed-key",
    enc: new Uint8Array(65).fill(4),
    ct: new Uint8Array(300_000),
  };
  // Read while writing: the pipe holds less than the frame.
  const [, got] = await Promise.all([writer.write(payload), reader.read()]);
  assert.deepEqual(got, payload);
  await writer.close();
  assert.equal(await reader.read(), null);
  await child.status;
});
