/**
 * Robustness of the deploy protocol's parsers against bad input: strict CBOR
 * decoding, length-prefixed frames and the message validators. Every input
 * is either accepted or rejected with an EnarxError; nothing else escapes,
 * nothing hangs and no length prefix makes the reader allocate what it
 * claims. Seeded: a failure names its seed and input.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  cborItemLength,
  decodeCbor,
  encodeCbor,
  readCborSequence,
} from "../../runtime/protocol/cbor.ts";
import { FrameReader } from "../../runtime/protocol/frames.ts";
import * as messages from "../../runtime/protocol/messages.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { assertCleanError, cleanly, cleanlySync, Prng, show } from "./_robustness.ts";

const SEED = 0x5eed_0001;

const VALIDATORS = Object.entries(messages).filter(([name, f]) =>
  name.startsWith("parse") && typeof f === "function"
) as [string, (value: unknown) => unknown][];

const KEYS = [
  "v",
  "t",
  "error",
  "code",
  "message",
  "backend",
  "limits",
  "memory",
  "timeout_ms",
  "id",
  "state",
  "evidence",
  "nonce",
  "key",
  "token",
  "__proto__",
  "constructor",
];

/** A random CBOR-encodable value of the shapes messages are made of, and wrong ones. */
function randomValue(rng: Prng, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 7 : 9)) {
    case 0:
      return rng.pick([0, 1, 2, -1, 255, 2 ** 32, 2 ** 53, -(2 ** 53), 1.5, 1e300]);
    case 1:
      return rng.pick(["", "v", "hello", "a\nb", "nil", "sev", "created", "\u0000"]);
    case 2:
      return rng.bytes(rng.int(70));
    case 3:
      return rng.next() < 0.5;
    case 4:
      return null;
    case 5:
      return rng.pick([2n ** 64n - 1n, -(2n ** 64n)]);
    case 6:
      return rng.pick(["hello", "keep", "exit", "stdout", "error", "evidence", "sealed-key"]);
    case 7: {
      const list = [];
      for (let i = rng.int(4); i > 0; i--) list.push(randomValue(rng, depth + 1));
      return list;
    }
    default: {
      const map: Record<string, unknown> = {};
      for (let i = rng.int(5); i > 0; i--) {
        Object.defineProperty(map, rng.pick(KEYS), {
          value: randomValue(rng, depth + 1),
          enumerable: true,
          configurable: true,
          writable: true,
        });
      }
      return map;
    }
  }
}

Deno.test("robustness: decodeCbor rejects random and mutated bytes with CborError only", () => {
  const rng = new Prng(SEED);
  for (let i = 0; i < 2000; i++) {
    const garbage = rng.bytes(1 + rng.int(40));
    const label = `seed ${rng.seed} garbage #${i} ${show(garbage)}`;
    cleanlySync(label, () => decodeCbor(garbage), { exit: 65 });
    cleanlySync(label, () => cborItemLength(garbage));
    let encoded: Uint8Array;
    try {
      encoded = encodeCbor(randomValue(rng));
    } catch {
      continue; // not every random value is encodable (e.g. out-of-range bigints)
    }
    const { bytes, where } = rng.flip(encoded, 3);
    const cut = encoded.subarray(0, rng.int(encoded.length));
    cleanlySync(
      `seed ${rng.seed} #${i} flipped at ${where}: ${show(bytes)}`,
      () => decodeCbor(bytes),
    );
    cleanlySync(`seed ${rng.seed} #${i} cut: ${show(cut)}`, () => decodeCbor(cut), { exit: 65 });
  }
});

Deno.test("robustness: CBOR heads claiming huge lengths or deep nesting fail fast", () => {
  const heads = [
    [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // byte string of 2^64-1
    [0x7a, 0xff, 0xff, 0xff, 0xff], // text string of 4 GiB
    [0x9b, 0, 0, 0, 1, 0, 0, 0, 0], // array of 2^32
    [0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // map of 2^63-1 pairs
    [0x9a, 0xff, 0xff, 0xff, 0xff, 0x00],
  ];
  for (const head of heads) {
    const bytes = new Uint8Array(head);
    cleanlySync(`head ${show(bytes)}`, () => decodeCbor(bytes), { exit: 65 });
    assert.equal(cborItemLength(bytes), undefined, `head ${show(bytes)} is incomplete`);
  }
  for (const depth of [1_000, 100_000]) {
    const arrays = new Uint8Array(depth).fill(0x81);
    cleanlySync(`${depth} nested arrays`, () => decodeCbor(arrays), { exit: 65 });
  }
});

Deno.test("robustness: every message validator throws only MessageError on wrong shapes", () => {
  const rng = new Prng(SEED + 1);
  for (let i = 0; i < 1500; i++) {
    const value = randomValue(rng);
    for (const [name, validate] of VALIDATORS) {
      cleanlySync(`seed ${rng.seed} #${i} ${name}`, () => validate(value));
    }
  }
  // Decoded CBOR, as a peer's bytes arrive (objects with __proto__ keys included).
  const proto = encodeCbor({ v: 1, t: "hello" });
  const odd = new Uint8Array([0xa1, 0x69, ...new TextEncoder().encode("__proto__"), 0xa0]);
  for (const bytes of [proto, odd]) {
    const value = decodeCbor(bytes);
    for (const [name, validate] of VALIDATORS) {
      cleanlySync(`${name}(${show(bytes)})`, () => validate(value));
    }
  }
});

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function readAllFrames(chunks: Uint8Array[]): Promise<unknown[]> {
  const reader = new FrameReader(streamOf(chunks), { peer: "test peer" });
  const out: unknown[] = [];
  try {
    for await (const frame of reader) out.push(frame);
  } finally {
    reader.close();
  }
  return out;
}

Deno.test("robustness: FrameReader refuses oversized prefixes before reading a byte more", async () => {
  for (const prefix of [[0xff, 0xff, 0xff, 0xff], [0x04, 0x00, 0x00, 0x01], [0x80, 0, 0, 0]]) {
    // A stream that would never end: the reader must refuse on the prefix alone.
    let pulls = 0;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(prefix));
      },
      pull(controller) {
        pulls++;
        controller.enqueue(new Uint8Array(1024));
      },
    });
    const reader = new FrameReader(stream);
    const error = await reader.read().then(() => undefined, (e) => e);
    reader.close();
    const label = `prefix ${show(new Uint8Array(prefix))}`;
    assertCleanError(error, label, { exit: 65 });
    assert.equal((error as EnarxError).code, "cbor-too-large", label);
    assert.ok(pulls < 4, `${label}: the reader pulled ${pulls} chunks`);
  }
});

Deno.test("robustness: FrameReader on truncated and random streams ends with an EnarxError", async () => {
  const rng = new Prng(SEED + 2);
  const good = new Uint8Array([0, 0, 0, 3, 0xa1, 0x61, 0x76]);
  // Truncated at every length: a clean end only before the first byte.
  for (let n = 0; n < good.length; n++) {
    const result = await cleanly(`truncated to ${n}`, () => readAllFrames([good.slice(0, n)]));
    if (n === 0) assert.deepEqual(result, [], "an empty stream is no frame");
    else assert.ok(result instanceof EnarxError, `truncated to ${n}: ${result}`);
  }
  for (let i = 0; i < 400; i++) {
    const bytes = rng.bytes(rng.int(24));
    if (bytes.length > 2 && rng.next() < 0.8) bytes[0] = bytes[1] = 0; // plausible lengths
    const split = rng.int(bytes.length + 1);
    await cleanly(
      `seed ${rng.seed} #${i} ${show(bytes)} split at ${split}`,
      () => readAllFrames([bytes.subarray(0, split), bytes.subarray(split)]),
    );
  }
});

Deno.test("robustness: readCborSequence on random streams ends with an EnarxError", async () => {
  const rng = new Prng(SEED + 3);
  for (let i = 0; i < 400; i++) {
    const bytes = rng.bytes(rng.int(24));
    await cleanly(`seed ${rng.seed} #${i} ${show(bytes)}`, async () => {
      for await (const _ of readCborSequence(streamOf([bytes]))) { /* drain */ }
    });
  }
});
