/**
 * Robustness of the module path against bad wasm: a real module (probe.wasm,
 * built by tests/workloads/build.sh) truncated and with random bytes
 * changed, and WebAssembly text with random edits, run through runWorkload.
 * Each is refused with an EnarxError (exit 65) or runs to an end under a
 * timeout; the process never crashes and nothing hangs. Seeded: a failure
 * names its seed and the change.
 *
 * @module
 */
import assert from "node:assert/strict";
import { runWorkload } from "../../runtime/wasm/workload.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { cleanly, Prng } from "./_robustness.ts";

const SEED = 0x5eed_0005;
const PROBE = new URL("../workloads/build/probe.wasm", import.meta.url).pathname;
const HELLO = new URL("../../examples/hello.wat", import.meta.url).pathname;

async function runCleanly(label: string, module: Uint8Array): Promise<void> {
  const outcome = await cleanly(label, () =>
    runWorkload(
      { module, limits: { timeoutMs: 2000, maxMemoryBytes: 64 << 20 } },
      { stdin: "null", stdout: "null", stderr: "null" },
    ));
  if (outcome instanceof EnarxError) {
    assert.equal(outcome.exitStatus, 65, `${label}: ${outcome.code}: ${outcome.message}`);
  } else {
    assert.ok(typeof outcome.status === "number", `${label}: no status`);
  }
}

Deno.test("robustness: truncated and flipped probe.wasm is refused (65) or runs", async () => {
  const wasm = Deno.readFileSync(PROBE);
  const rng = new Prng(SEED);
  for (const n of [0, 1, 4, 7, 8, 9, 11]) {
    await runCleanly(`truncated to ${n}`, wasm.subarray(0, n));
  }
  for (let i = 0; i < 40; i++) {
    const n = rng.int(wasm.length);
    await runCleanly(`seed ${rng.seed} truncated to ${n}`, wasm.subarray(0, n));
  }
  for (let i = 0; i < 40; i++) {
    const { bytes, where } = rng.flip(wasm, 3);
    await runCleanly(`seed ${rng.seed} flipped at ${where}`, bytes);
  }
  // Flips within the header and the first sections, where the structure is.
  for (let i = 0; i < 40; i++) {
    const { bytes, where } = rng.flip(wasm.subarray(0, 64), 2);
    await runCleanly(
      `seed ${rng.seed} head flipped at ${where}`,
      new Uint8Array([...bytes, ...wasm.subarray(64)]),
    );
  }
});

Deno.test("robustness: WebAssembly text with random edits is refused (65) or runs", async () => {
  const text = Deno.readTextFileSync(HELLO);
  const rng = new Prng(SEED + 1);
  const noise = ["(", ")", '"', "\\", ";;", "\0", "😀", "i32", "$", " ", "\n"];
  for (let i = 0; i < 60; i++) {
    const chars = text.split("");
    const edits: string[] = [];
    for (let j = 1 + rng.int(3); j > 0; j--) {
      const at = rng.int(chars.length);
      const what = rng.pick(noise);
      if (rng.next() < 0.5) chars.splice(at, 1);
      else chars.splice(at, 0, what);
      edits.push(`${at}:${JSON.stringify(what)}`);
    }
    const edited = new TextEncoder().encode(chars.join(""));
    await runCleanly(`seed ${rng.seed} text edits ${edits.join(" ")}`, edited);
  }
});
