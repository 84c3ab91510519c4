/** The protocol's CBOR codec: deterministic encoding and strict decoding. */
import assert from "node:assert/strict";
import {
  CborError,
  cborItemLength,
  decodeCbor,
  encodeCbor,
  encodeCborSequence,
  readCborSequence,
} from "../../runtime/protocol/cbor.ts";
import { ExitStatus } from "../../runtime/errors.ts";

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function rejects(bytes: Uint8Array, code = "cbor-malformed", maxSize?: number): CborError {
  try {
    decodeCbor(bytes, { maxSize });
  } catch (error) {
    assert.ok(error instanceof CborError, String(error));
    assert.equal(error.code, code);
    assert.equal(error.exitStatus, ExitStatus.dataError);
    assert.match(error.message, /^The input /);
    return error;
  }
  assert.fail(`accepted ${Array.from(bytes, (b) => b.toString(16)).join(" ")}`);
}

Deno.test("cbor: encodes RFC 8949 examples deterministically", () => {
  // RFC 8949 Appendix A, and §4.2.1 key order (shorter keys first).
  assert.deepEqual(encodeCbor(0), hex("00"));
  assert.deepEqual(encodeCbor(23), hex("17"));
  assert.deepEqual(encodeCbor(24), hex("1818"));
  assert.deepEqual(encodeCbor(1000000), hex("1a000f4240"));
  assert.deepEqual(encodeCbor(-1), hex("20"));
  assert.deepEqual(encodeCbor("IETF"), hex("6449455446"));
  assert.deepEqual(encodeCbor(Uint8Array.of(1, 2, 3, 4)), hex("4401020304"));
  assert.deepEqual(encodeCbor([1, [2, 3]]), hex("8201820203"));
  assert.deepEqual(encodeCbor({ b: 1, a: 2, aa: 3 }), hex("a361610261620162616103"));
  assert.deepEqual(encodeCbor(null), hex("f6"));
  assert.deepEqual(encodeCbor(1.5), hex("f93e00"));
  // undefined properties are left out.
  assert.deepEqual(encodeCbor({ a: 1, b: undefined }), hex("a1616101"));
  // A plain Uint8Array, not a node Buffer.
  assert.equal(encodeCbor({ x: new Uint8Array(5000) }).constructor, Uint8Array);
});

Deno.test("cbor: round-trips values", () => {
  const value = {
    v: 1,
    text: "héllo",
    bytes: Uint8Array.of(0, 255),
    list: [1, -2, null, true, false, 1.25],
    nested: { k: "v" },
  };
  assert.deepEqual(decodeCbor(encodeCbor(value)), value);
});

Deno.test("cbor: rejects malformed and non-deterministic input", () => {
  rejects(new Uint8Array(0)); // nothing
  rejects(hex("a16161")); // truncated map
  rejects(hex("0102")); // trailing bytes
  rejects(hex("1801")); // non-shortest integer head
  rejects(hex("5f4101ff")); // indefinite byte string
  rejects(hex("9fff")); // indefinite array
  rejects(hex("f7")); // undefined
  rejects(hex("f97e00")); // NaN
  rejects(hex("f97c00")); // Infinity
  rejects(hex("c11a514b67b0")); // a tag
  rejects(hex("a2616101616102")); // duplicate key
  rejects(hex("a1010203".slice(0, 6))); // integer key
  rejects(hex("a2616201616102")); // keys out of order
  rejects(hex("fb3ff8000000000000")); // 1.5 as float64: not the shortest float
  rejects(hex("62c328")); // invalid UTF-8
  const error = rejects(hex("ff"));
  assert.match(error.message, /not valid CBOR/);
});

Deno.test("cbor: enforces the size limit before decoding", () => {
  const big = encodeCbor({ data: new Uint8Array(2000) });
  assert.ok(decodeCbor(big, { maxSize: 4096 }));
  const error = rejects(big, "cbor-too-large", 1024);
  assert.match(error.message, /over the limit of 1024 bytes/);
});

Deno.test("cbor: deep nesting is an error, not a crash", () => {
  const depth = 100_000;
  const bytes = new Uint8Array(depth + 1).fill(0x81);
  bytes[depth] = 0x00;
  rejects(bytes);
});

Deno.test("cbor: cborItemLength splits sequences and needs more bytes when truncated", () => {
  const seq = encodeCborSequence([{ t: "stdout", data: Uint8Array.of(1, 2) }, 7, "x"]);
  const first = cborItemLength(seq)!;
  assert.deepEqual(decodeCbor(seq.subarray(0, first)), { t: "stdout", data: Uint8Array.of(1, 2) });
  assert.equal(cborItemLength(seq, first), 1);
  for (let n = 0; n < first; n++) assert.equal(cborItemLength(seq.subarray(0, n)), undefined);
  assert.throws(() => cborItemLength(hex("9f")), CborError);
});

Deno.test("cbor: readCborSequence yields items split across chunks", async () => {
  const items = [{ t: "stdout", data: new Uint8Array(300) }, { t: "exit", status: 0 }];
  const bytes = encodeCborSequence(items);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
      controller.close();
    },
  });
  const got: unknown[] = [];
  for await (const item of readCborSequence(stream)) got.push(item);
  assert.deepEqual(got, items);

  const truncated = ReadableStream.from([bytes.subarray(0, bytes.length - 1)]);
  await assert.rejects(async () => {
    for await (const _ of readCborSequence(truncated)) { /* drain */ }
  }, /ended inside an item/);
});
