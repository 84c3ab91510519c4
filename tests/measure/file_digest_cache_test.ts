/** The file-digest cache: hits by identity, changed files, corrupt entries, untrusted directories. */
import assert from "node:assert/strict";
import {
  cachedFileSha256,
  cachedFileSha256s,
  defaultDigestCacheDir,
  type DigestCacheOutcome,
  digestCachePath,
} from "../../runtime/measure/file_digest_cache.ts";
import { fileIdentity, QUIET_MS } from "../../runtime/cache_dir.ts";
import { keepDigest } from "../../runtime/measure/keep_digest.ts";
import { nilKeepInputs } from "../../runtime/keep/measurement.ts";

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}

/** Looks `path` up in `dir`, returning the digest (hex) and what the cache did. */
async function lookUp(
  path: string,
  dir: string,
): Promise<{ hex: string; outcome?: DigestCacheOutcome; reason?: string }> {
  let outcome: DigestCacheOutcome | undefined;
  let reason: string | undefined;
  const digest = await cachedFileSha256(path, {
    cacheDir: dir,
    onCache: (o, d) => {
      outcome = o;
      reason = d.reason;
    },
  });
  return reason === undefined
    ? { hex: digest.toHex(), outcome }
    : { hex: digest.toHex(), outcome, reason };
}

function quiet(): Promise<void> {
  return new Promise((r) => setTimeout(r, QUIET_MS + 100));
}

Deno.test("digest cache: a quiet file is found by its identity; a changed file is hashed again, never given its old digest", async () => {
  const work = await Deno.makeTempDir();
  try {
    const dir = `${work}/digests`;
    const file = `${work}/input.bin`;
    const first = crypto.getRandomValues(new Uint8Array(4096));
    await Deno.writeFile(file, first);
    // Too fresh to be recorded: a change in the same clock tick would keep its identity.
    assert.deepEqual(await lookUp(file, dir), { hex: await sha256Hex(first), outcome: "miss" });
    assert.equal((await lookUp(file, dir)).outcome, "miss");
    await quiet();
    assert.equal((await lookUp(file, dir)).outcome, "miss");
    assert.deepEqual(await lookUp(file, dir), { hex: await sha256Hex(first), outcome: "hit" });

    // Same size, mtime set back: only the ctime says it changed.
    const { mtime, atime } = await Deno.stat(file);
    const second = first.slice();
    second[100] ^= 0xff;
    await Deno.writeFile(file, second);
    await Deno.utime(file, atime!, mtime!);
    assert.equal((await Deno.stat(file)).mtime?.getTime(), mtime?.getTime());
    assert.deepEqual(await lookUp(file, dir), { hex: await sha256Hex(second), outcome: "stale" });

    // Another file renamed over it (another inode), same size and mtime.
    await quiet();
    assert.equal((await lookUp(file, dir)).outcome, "stale"); // recorded now
    const third = crypto.getRandomValues(new Uint8Array(4096));
    await Deno.writeFile(`${file}.new`, third);
    await Deno.utime(`${file}.new`, atime!, mtime!);
    await Deno.rename(`${file}.new`, file);
    assert.deepEqual(await lookUp(file, dir), { hex: await sha256Hex(third), outcome: "miss" });

    // Without a cache directory the file is hashed.
    const bare = await cachedFileSha256(file);
    assert.equal(bare.toHex(), await sha256Hex(third));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("digest cache: a corrupt, foreign or malformed entry is ignored and rewritten, not an error", async () => {
  const work = await Deno.makeTempDir();
  try {
    const dir = `${work}/digests`;
    const file = `${work}/input.bin`;
    const bytes = crypto.getRandomValues(new Uint8Array(1000));
    await Deno.writeFile(file, bytes);
    await quiet();
    await lookUp(file, dir);
    const entry = digestCachePath(dir, fileIdentity(await Deno.stat(file)));
    const good = await Deno.readTextFile(entry);
    const wrong = "00".repeat(32);
    const corrupt = [
      "",
      "{",
      "null",
      good.slice(0, good.length / 2),
      good.replace(/"sha256":"[0-9a-f]+"/, `"sha256":"zz"`),
      good.replace(/"format":"[^"]+"/, `"format":"other"`),
      good.replace(/"file":\{[^}]*\}/, `"file":"x"`),
    ];
    for (const text of corrupt) {
      await Deno.writeTextFile(entry, text, { mode: 0o600 });
      const found = await lookUp(file, dir);
      assert.equal(found.hex, await sha256Hex(bytes), JSON.stringify(text));
      assert.notEqual(found.outcome, "hit");
      assert.equal(await Deno.readTextFile(entry), good, "rewritten");
      assert.equal((await lookUp(file, dir)).outcome, "hit");
    }
    // A well-formed entry with another digest, but writable by others: not believed.
    await Deno.writeTextFile(entry, good.replace(/"sha256":"[0-9a-f]+"/, `"sha256":"${wrong}"`));
    await Deno.chmod(entry, 0o666);
    assert.equal((await lookUp(file, dir)).hex, await sha256Hex(bytes));
    assert.equal((await Deno.stat(entry)).mode! & 0o777, 0o600);
    // An entry that is a directory, not a file.
    await Deno.remove(entry);
    await Deno.mkdir(entry);
    assert.equal((await lookUp(file, dir)).hex, await sha256Hex(bytes));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("digest cache: a directory others can write is not trusted; the file is hashed", async () => {
  const work = await Deno.makeTempDir();
  try {
    const file = `${work}/input.bin`;
    const bytes = crypto.getRandomValues(new Uint8Array(1000));
    await Deno.writeFile(file, bytes);
    await quiet();
    const open = `${work}/open`;
    await Deno.mkdir(open);
    await Deno.chmod(open, 0o777);
    // Someone else planted an entry (as if it were ours, 0600) with another digest.
    const identity = fileIdentity(await Deno.stat(file));
    const forged = {
      format: "enarx-file-digest-cache-v1",
      file: identity,
      sha256: "11".repeat(32),
    };
    await Deno.writeTextFile(digestCachePath(open, identity), JSON.stringify(forged), {
      mode: 0o600,
    });
    const found = await lookUp(file, open);
    assert.equal(found.hex, await sha256Hex(bytes));
    assert.equal(found.outcome, "refused");
    assert.match(found.reason!, /is writable by others \(mode 0777\); run chmod go-w/);
    assert.equal(
      JSON.parse(await Deno.readTextFile(digestCachePath(open, identity))).sha256,
      forged.sha256,
      "not rewritten",
    );

    // Below a parent others can write (not sticky): they could swap the directory.
    const below = `${open}/cache`;
    await Deno.mkdir(below, { mode: 0o700 });
    await Deno.writeTextFile(digestCachePath(below, identity), JSON.stringify(forged), {
      mode: 0o600,
    });
    const under = await lookUp(file, below);
    assert.equal(under.hex, await sha256Hex(bytes));
    assert.equal(under.outcome, "refused");
    assert.match(under.reason!, new RegExp(`"${open}" is writable by others`));

    // Once the parent is only ours, the same directory is trusted.
    await Deno.chmod(open, 0o755);
    await Deno.remove(digestCachePath(below, identity));
    assert.equal((await lookUp(file, below)).outcome, "miss");
    assert.equal((await lookUp(file, below)).outcome, "hit");
  } finally {
    await Deno.chmod(`${work}/open`, 0o755).catch(() => {});
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("digest cache: many files at once give each its own digest, in order, the directory checked once", async () => {
  const work = await Deno.makeTempDir();
  try {
    const dir = `${work}/digests`;
    const contents = [1, 2, 3].map(() => crypto.getRandomValues(new Uint8Array(1000)));
    const files = contents.map((_, i) => `${work}/f${i}`);
    for (let i = 0; i < files.length; i++) await Deno.writeFile(files[i], contents[i]);
    await quiet();
    const expected = await Promise.all(contents.map(sha256Hex));
    const outcomes: DigestCacheOutcome[] = [];
    const onCache = (o: DigestCacheOutcome) => void outcomes.push(o);
    const first = await cachedFileSha256s(files, { cacheDir: dir, onCache });
    assert.deepEqual(first.map((d) => d.toHex()), expected);
    assert.deepEqual(outcomes, ["miss", "miss", "miss"]);
    outcomes.length = 0;
    const again = await cachedFileSha256s([files[2], files[0]], { cacheDir: dir, onCache });
    assert.deepEqual(again.map((d) => d.toHex()), [expected[2], expected[0]]);
    assert.deepEqual(outcomes, ["hit", "hit"]);

    // A directory others can write: refused once for the whole batch, every file still hashed.
    await Deno.chmod(dir, 0o777);
    outcomes.length = 0;
    const refused = await cachedFileSha256s(files, { cacheDir: dir, onCache });
    assert.deepEqual(refused.map((d) => d.toHex()), expected);
    assert.deepEqual(outcomes, ["refused"]);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("digest cache: the nil keep's inputs and measurement are the same with the cache and without", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const hashed = await nilKeepInputs({ digestCache: false });
    const recorded = await nilKeepInputs({ digestCache: dir });
    const cached = await nilKeepInputs({ digestCache: dir });
    for (const inputs of [recorded, cached]) {
      assert.deepEqual(inputs, hashed);
      assert.deepEqual(await keepDigest("nil", inputs), await keepDigest("nil", hashed));
    }
    // Deno's executable was recorded (it is not fresh), with its true digest.
    const deno = hashed.find((i) => i.role === "deno")!;
    const entry = digestCachePath(dir, fileIdentity(await Deno.stat(Deno.execPath())));
    assert.equal(JSON.parse(await Deno.readTextFile(entry)).sha256, deno.sha256.toHex());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("digest cache: lives in the user's cache; a missing file fails as reading it does", async () => {
  const env = (vars: Record<string, string>) => ({ getEnv: (name: string) => vars[name] });
  assert.equal(
    defaultDigestCacheDir(env({ XDG_CACHE_HOME: "/x", HOME: "/h" })),
    "/x/enarx/digests",
  );
  assert.equal(defaultDigestCacheDir(env({ HOME: "/h" })), "/h/.cache/enarx/digests");
  assert.equal(defaultDigestCacheDir(env({})), undefined);
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      cachedFileSha256(`${dir}/absent`, { cacheDir: dir }),
      Deno.errors.NotFound,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
