/**
 * The protocol's own CBOR codec against cborg, the library it replaced: on
 * thousands of generated values and byte strings, both must encode the same
 * bytes and agree on what they accept and what it decodes to. cborg is used
 * here only, as the reference; the deploy path must not load it (the module
 * graph test below).
 *
 * The reference for the deterministic mode is what `decodeCbor` did with
 * cborg: a strict decode, then a re-encode that had to give the same bytes.
 * Three differences are on purpose, and such inputs are counted, not
 * compared: a binary16 subnormal with more than one bit set (k × 2^-24) is
 * written in binary16, as RFC 8949 §4.2.2 asks, where cborg falls back to
 * binary32; a text string starting with U+FEFF keeps it, where cborg's
 * UTF-8 decoding drops it (so the old decodeCbor refused such text, and its
 * well-formed decoding lost the character); and invalid UTF-8 is refused
 * where cborg's well-formed decoding turned it into U+FFFD.
 */
import assert from "node:assert/strict";
import { decode as cborgDecode, encode as cborgEncode } from "cborg";
import {
  CborError,
  decodeCbor,
  decodeCborGeneric,
  encodeCbor,
  MAX_CBOR_DEPTH,
} from "../../runtime/protocol/cbor.ts";
import {
  adversarialHeads,
  differsOnPurpose,
  mutate,
  randomGenericValue,
  randomValue,
  Rng,
} from "./_cbor_corpus.ts";

const SEED = 0x5eed_cb0;

type Outcome = { ok: true; value: unknown } | { ok: false; message: string };

function hex(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 48), (b) => b.toString(16).padStart(2, "0")).join("") +
    (bytes.length > 48 ? `… (${bytes.length} bytes)` : "");
}

function attempt(decode: () => unknown): Outcome {
  try {
    return { ok: true, value: decode() };
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
}

/** What decodeCbor did on cborg: strict decode, then the bytes must re-encode the same. */
function cborgDeterministic(bytes: Uint8Array): Outcome {
  return attempt(() => {
    const value = cborgDecode(bytes, {
      strict: true,
      allowIndefinite: false,
      allowUndefined: false,
      allowInfinity: false,
      allowNaN: false,
      rejectDuplicateMapKeys: true,
      useMaps: false,
    });
    const again = cborgEncode(value, { ignoreUndefinedProperties: true });
    if (!Buffer.from(again).equals(Buffer.from(bytes))) throw new Error("not deterministic");
    return value;
  });
}

/** What cose.ts did on cborg: a strict decode with maps as Map. */
function cborgGeneric(bytes: Uint8Array): Outcome {
  return attempt(() =>
    cborgDecode(bytes, {
      useMaps: true,
      rejectDuplicateMapKeys: true,
      strict: true,
      allowIndefinite: false,
      allowUndefined: false,
    })
  );
}

/** Our decoder, which may only ever throw CborError. */
function ours(decode: () => unknown): Outcome {
  const outcome = attempt(decode);
  if (!outcome.ok) {
    try {
      decode();
    } catch (error) {
      assert.ok(error instanceof CborError, `not a CborError: ${error}`);
      assert.equal(error.code, "cbor-malformed");
    }
  }
  return outcome;
}

interface Tally {
  accepted: number;
  rejected: number;
  /** Inputs where the two differ on purpose (see the module comment). */
  excused: number;
}

function compare(bytes: Uint8Array, generic: boolean, tally: Tally): void {
  const mine = ours(() => generic ? decodeCborGeneric(bytes) : decodeCbor(bytes));
  const theirs = generic ? cborgGeneric(bytes) : cborgDeterministic(bytes);
  if (mine.ok !== theirs.ok) {
    const accepted = mine.ok ? mine.value : theirs.ok ? theirs.value : undefined;
    // cborg reads invalid UTF-8 as U+FFFD; we refuse it (RFC 8949 §5.3.1).
    const utf8 = !mine.ok && mine.message.includes("UTF-8");
    if (differsOnPurpose(accepted) || (generic && utf8)) {
      tally.excused++;
      return;
    }
    assert.fail(
      `${generic ? "generic" : "deterministic"} ${hex(bytes)}: ours ${
        mine.ok ? "accepts" : `rejects (${mine.message})`
      }, cborg ${theirs.ok ? "accepts" : `rejects (${theirs.message})`}`,
    );
  }
  if (mine.ok && theirs.ok) {
    if (differsOnPurpose(mine.value)) {
      tally.excused++;
      return;
    }
    assert.deepStrictEqual(mine.value, theirs.value, hex(bytes));
    tally.accepted++;
  } else {
    tally.rejected++;
  }
}

Deno.test("cbor differential: encodes generated values to cborg's bytes", () => {
  const rng = new Rng(SEED);
  let compared = 0;
  for (let i = 0; i < 4000; i++) {
    const value = randomValue(rng);
    if (differsOnPurpose(value)) continue;
    const mine = encodeCbor(value);
    const theirs = new Uint8Array(cborgEncode(value, { ignoreUndefinedProperties: true }));
    assert.deepStrictEqual(mine, theirs, `value #${i}`);
    assert.equal(mine.constructor, Uint8Array);
    compared++;
  }
  assert.ok(compared > 3900, `${compared} values compared`);
});

Deno.test("cbor differential: agrees with cborg on generated, mutated and random bytes", () => {
  const rng = new Rng(SEED + 1);
  const tally: Tally = { accepted: 0, rejected: 0, excused: 0 };
  for (let i = 0; i < 4000; i++) {
    const bytes = encodeCbor(randomValue(rng));
    compare(bytes, false, tally);
    for (let m = 0; m < 3; m++) compare(mutate(rng, bytes), false, tally);
    compare(rng.bytes(1 + rng.int(12)), false, tally);
  }
  for (const bytes of adversarialHeads()) compare(bytes, false, tally);
  // Both sides saw plenty of each answer, so agreement means something.
  assert.ok(tally.accepted > 4000, JSON.stringify(tally));
  assert.ok(tally.rejected > 10000, JSON.stringify(tally));
  assert.ok(tally.excused < tally.accepted / 10, JSON.stringify(tally));
});

Deno.test("cbor differential: the well-formed mode agrees with cborg's COSE options", () => {
  const rng = new Rng(SEED + 2);
  const tally: Tally = { accepted: 0, rejected: 0, excused: 0 };
  for (let i = 0; i < 3000; i++) {
    const value = randomGenericValue(rng);
    // cborg's own map order and float widths: not ours, and accepted all the same.
    const theirs = new Uint8Array(cborgEncode(value, { float64: rng.int(2) === 0 }));
    compare(theirs, true, tally);
    compare(encodeCbor(value), true, tally);
    for (let m = 0; m < 2; m++) compare(mutate(rng, theirs), true, tally);
    compare(rng.bytes(1 + rng.int(12)), true, tally);
  }
  for (const bytes of adversarialHeads()) compare(bytes, true, tally);
  assert.ok(tally.accepted > 6000, JSON.stringify(tally));
  assert.ok(tally.rejected > 4000, JSON.stringify(tally));
  assert.ok(tally.excused < tally.accepted / 10, JSON.stringify(tally));
});

Deno.test("cbor: binary16 subnormals are written in binary16 (RFC 8949 §4.2.2)", () => {
  // 3 × 2^-24 is exactly binary16 0x0003; binary32 is not the shortest form.
  assert.deepStrictEqual(encodeCbor(3 * 2 ** -24), Uint8Array.of(0xf9, 0x00, 0x03));
  assert.equal(decodeCbor(Uint8Array.of(0xf9, 0x00, 0x03)), 3 * 2 ** -24);
  assert.throws(
    () => decodeCbor(Uint8Array.of(0xfa, 0x34, 0x40, 0x00, 0x00)),
    /not deterministically encoded CBOR .*float longer than needed at byte 0/,
  );
});

Deno.test("cbor: a leading U+FEFF is text like any other and survives a round trip", () => {
  for (const text of ["\uFEFF", "\uFEFFkeep", "\uFEFF".repeat(40)]) {
    assert.equal(decodeCbor(encodeCbor(text)), text);
    assert.deepStrictEqual(decodeCbor(encodeCbor({ [text]: text })), { [text]: text });
  }
});

function nested(depth: number, open: number[], leaf: number[]): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < depth; i++) bytes.push(...open);
  return new Uint8Array([...bytes, ...leaf]);
}

Deno.test("cbor: nesting is bounded in both directions, as an error and not a crash", () => {
  for (const [open, leaf] of [[[0x81], [0x00]], [[0xa1, 0x61, 0x61], [0xf6]]]) {
    const deepest = nested(MAX_CBOR_DEPTH, open, leaf);
    assert.deepStrictEqual(encodeCbor(decodeCbor(deepest)), deepest);
    for (const depth of [MAX_CBOR_DEPTH + 1, 1_000_000]) {
      assert.throws(
        () => decodeCbor(nested(depth, open, leaf)),
        (e: unknown) =>
          e instanceof CborError && e.code === "cbor-malformed" &&
          e.message.includes(`nested deeper than ${MAX_CBOR_DEPTH} arrays and maps at byte`),
      );
      assert.throws(() => decodeCborGeneric(nested(depth, open, leaf)), CborError);
    }
  }
  let deep: unknown = 0;
  for (let i = 0; i <= MAX_CBOR_DEPTH; i++) deep = [deep];
  assert.throws(() => encodeCbor(deep), RangeError);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => encodeCbor(cycle), RangeError);
});

Deno.test("cbor: lengths claimed but absent are refused before anything is allocated", () => {
  const rssBefore = Deno.memoryUsage().rss;
  const claims: [number[], string][] = [
    [[0x5b, 0, 0, 0, 1, 0, 0, 0, 0], "4294967296"], // a 4 GiB byte string
    [[0x7a, 0xff, 0xff, 0xff, 0xff], "4294967295"], // a 4 GiB text string
    [[0x9a, 0x7f, 0xff, 0xff, 0xff, 0x00], "2147483647"], // 2^31 - 1 items
    [[0xbb, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "9007199254740991"], // 2^53 - 1 pairs
    [[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "18446744073709551615"],
  ];
  for (const [head, claimed] of claims) {
    for (const decode of [decodeCbor, decodeCborGeneric]) {
      assert.throws(
        () => decode(new Uint8Array(head)),
        (e: unknown) =>
          e instanceof CborError && e.message.includes(`claims a length of ${claimed}, `),
        hex(new Uint8Array(head)),
      );
    }
  }
  // A 4 GiB buffer made for the first claim would show here.
  assert.ok(Deno.memoryUsage().rss - rssBefore < 512 * 1024 * 1024);
});

async function moduleGraph(entry: string): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout));
  const npm = Object.keys(graph.npmPackages ?? {});
  return [...graph.modules.map((m: { specifier: string }) => m.specifier), ...npm];
}

Deno.test("cbor: the codec and the deploy path's entry points do not load cborg", async () => {
  // The check itself works: a test that imports cborg shows it.
  assert.ok(
    (await moduleGraph("tests/attestation/nitro_test.ts")).some((m) => m.includes("cborg")),
  );
  // cbor.ts loads only its own three local modules.
  const codec = await moduleGraph("runtime/protocol/cbor.ts");
  assert.deepStrictEqual(
    codec.map((m) => m.replace(/^.*\/runtime\//, "runtime/")).sort(),
    [
      "runtime/bytes.ts",
      "runtime/errors.ts",
      "runtime/protocol/_cbor_codec.ts",
      "runtime/protocol/cbor.ts",
    ],
  );
  for (const entry of ["cli/deploy.ts", "cli/keepmgr.ts", "cli/wasmldr.ts", "cli/keepldr.ts"]) {
    const loaded = (await moduleGraph(entry)).filter((m) => m.includes("cborg"));
    assert.deepStrictEqual(loaded, [], `${entry} loads cborg`);
  }
});
