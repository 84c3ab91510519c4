/**
 * The measurement cache (runtime/measure/measurement_cache.ts): a recorded
 * measurement is found again only for the same key while every covered
 * file keeps its identity; a file changed in the last 2 s is not recorded;
 * a directory others may write is not used. And across processes: a nil
 * keep's measurement comes from the cache in the next process (shown by
 * altering the entry), and equals the one computed without any cache.
 */
import assert from "node:assert/strict";
import {
  measurementCachePath,
  readCachedMeasurement,
  recordCachedMeasurement,
} from "../../runtime/measure/measurement_cache.ts";
import { fileIdentity } from "../../runtime/cache_dir.ts";
import { nilKeepInputs } from "../../runtime/keep/measurement.ts";
import { keepDigest } from "../../runtime/measure/keep_digest.ts";

const DIGEST = Uint8Array.from({ length: 48 }, (_, i) => i);

function input(role: string, path: string) {
  return { role, path, file: fileIdentity(Deno.statSync(path)) };
}

Deno.test("measurement cache: found again for its key while its files are unchanged", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cache = `${dir}/cache`;
    const file = `${dir}/measured.txt`;
    await Deno.writeTextFile(file, "version 1");
    // Changed just now: not recorded (it may still be changing as it is read).
    await recordCachedMeasurement(cache, "k", { digest: DIGEST, inputs: [input("app/f", file)] });
    assert.equal(readCachedMeasurement(cache, "k"), undefined);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const inputs = [input("deno", Deno.execPath()), input("app/f", file)];
    await recordCachedMeasurement(cache, "k", { digest: DIGEST, inputs });
    const found = readCachedMeasurement(cache, "k");
    assert.deepEqual(found?.digest, DIGEST);
    assert.deepEqual([...found!.files.keys()], [Deno.execPath(), file]);
    assert.equal(readCachedMeasurement(cache, "another key"), undefined);
    // Another key that lands on the same file name is not taken for this one.
    const entry = measurementCachePath(cache, "k");
    const record = JSON.parse(await Deno.readTextFile(entry));
    await Deno.writeTextFile(entry, JSON.stringify({ ...record, key: "k2" }));
    assert.equal(readCachedMeasurement(cache, "k"), undefined);
    await Deno.writeTextFile(entry, JSON.stringify(record));
    assert.ok(readCachedMeasurement(cache, "k"));
    // One changed file: no longer found.
    await Deno.writeTextFile(file, "version 2");
    assert.equal(readCachedMeasurement(cache, "k"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("measurement cache: malformed entries and a directory others can write are not used", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cache = `${dir}/cache`;
    const inputs = [input("deno", Deno.execPath())];
    await recordCachedMeasurement(cache, "k", { digest: DIGEST, inputs });
    assert.ok(readCachedMeasurement(cache, "k"));
    const entry = measurementCachePath(cache, "k");
    const record = JSON.parse(await Deno.readTextFile(entry));
    for (const bad of [{ ...record, digest: "00" }, { ...record, inputs: [{ role: 1 }] }, null]) {
      await Deno.writeTextFile(entry, JSON.stringify(bad));
      assert.equal(readCachedMeasurement(cache, "k"), undefined, JSON.stringify(bad));
    }
    await Deno.writeTextFile(entry, JSON.stringify(record));
    await Deno.chmod(cache, 0o777);
    assert.equal(readCachedMeasurement(cache, "k"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The nil measurement as a fresh `deno` process computes it, with `env`. */
async function measureInProcess(env: Record<string, string>): Promise<string> {
  const module = new URL("../../runtime/keep/measurement.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const m = await import(${JSON.stringify(module)});` +
      `console.log((await m.wasmldrMeasurement()).toHex());`,
    ],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success);
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("measurement cache: the next process takes the nil measurement from it", async () => {
  const home = await Deno.makeTempDir();
  try {
    const env = { XDG_CACHE_HOME: home, ENARX_TEST_MEASURED_EXTRA: "" };
    const computed = (await keepDigest("nil", await nilKeepInputs({ digestCache: false })))
      .toHex();
    assert.equal(await measureInProcess(env), computed);
    const entries = [...Deno.readDirSync(`${home}/enarx/digests`)]
      .filter((e) => e.name.startsWith("measurement-"));
    assert.equal(entries.length, 1);
    // Altered, the entry's value is what the next process reports: it was read, not computed.
    const entry = `${home}/enarx/digests/${entries[0].name}`;
    const record = JSON.parse(await Deno.readTextFile(entry));
    await Deno.writeTextFile(entry, JSON.stringify({ ...record, digest: "ab".repeat(48) }));
    assert.equal(await measureInProcess(env), "ab".repeat(48));
    // An entry that names a file changed since is not: it is computed again, and recorded.
    const changed = record.inputs.map((i: { file: { size: number } }, n: number) =>
      n === record.inputs.length - 1 ? { ...i, file: { ...i.file, size: i.file.size + 1 } } : i
    );
    await Deno.writeTextFile(
      entry,
      JSON.stringify({ ...record, digest: "ab".repeat(48), inputs: changed }),
    );
    assert.equal(await measureInProcess(env), computed);
    assert.equal(JSON.parse(await Deno.readTextFile(entry)).digest, computed);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
