/**
 * The measurement of a nil keep: a SHA-384 over what the keep's process
 * executes (spec/measurement.md), standing in for the launch digest that
 * SEV-SNP hardware computes over a guest's initial memory.
 *
 * What is measured, in this order: the Deno executable (role `deno`), the
 * libwasmtime shared library (`libwasmtime`), then every TypeScript file
 * reachable through relative imports (static `import`/`export ... from` and
 * `import("...")` with a literal) from cli/wasmldr.ts, plus
 * package-lock.json, which pins the exact npm packages (with their integrity
 * hashes) that those files import by name, and the socket shim's C source
 * (ffi/native/enarx_wasi_sockets.c, which a keep with sockets loads,
 * compiled), each as `app/<path relative to the repository root>`, sorted.
 * The digest is runtime/measure/keep_digest.ts's encoding with the label
 * `enarx/v1 nil-keep-measurement\0`. Not covered:
 * the C library and the other shared libraries Deno links, and the npm
 * packages' own files beyond the lock file's pins.
 *
 * Both keepldr (whose simulated platform signs it for the nil keep it
 * launched) and the client (to know what to expect, when the policy names no
 * measurement) compute it from their own copy, so a client accepts exactly
 * the wasmldr, Deno and libwasmtime of its own enarx installation. The
 * digests of Deno and libwasmtime (about 100 MB) come from the user's
 * file-digest cache while those files' identity is unchanged
 * (runtime/measure/file_digest_cache.ts). Where
 * hashing Deno would be slow or impossible the value is read instead: a
 * compiled binary carries the one compile.sh embedded, and
 * {@link MEASUREMENT_FILE_ENV} may name a file that holds it.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { keepDigest, type MeasuredInput, measureFile, sha256 } from "../measure/keep_digest.ts";
import { defaultDigestCacheDir } from "../measure/file_digest_cache.ts";
import {
  type CachedMeasurementInput,
  readCachedMeasurement,
  recordCachedMeasurement,
} from "../measure/measurement_cache.ts";
import {
  changedRecently,
  type FileIdentity,
  fileIdentity,
  sameFileIdentity,
} from "../cache_dir.ts";

const ROOT = new URL("../../", import.meta.url);
const ENTRY = "cli/wasmldr.ts";
/**
 * Measured beside the TypeScript: the lock file (the npm packages' pins) and
 * the socket shim's C source, which a keep with sockets compiles (or finds
 * compiled, by a name that hashes this source) and loads into its process.
 */
const EXTRA = ["package-lock.json", "ffi/native/enarx_wasi_sockets.c"];

const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+\.ts)["']/g;

/**
 * The last measurement, the test input it was computed with, and the
 * identity of every file it covers (none when it was given, not computed;
 * "recomputed" when a file had just changed, so it cannot be trusted again).
 */
let cached: {
  extra: string | undefined;
  digest: Promise<Uint8Array>;
  files: Promise<Map<string, FileIdentity> | undefined | "recompute">;
} | undefined;

/**
 * Tests only: names one more file that the nil keep's measurement covers
 * (role `test/extra`), so that a test can change one measured byte
 * between what the client expects and what keepldr measures.
 */
export const TEST_MEASURED_EXTRA_ENV = "ENARX_TEST_MEASURED_EXTRA";

/** Lists the files that make up wasmldr, relative to the repository root, sorted. */
export async function wasmldrFiles(): Promise<string[]> {
  return [...(await readWasmldrSources()).keys()].sort();
}

/**
 * Reads the files that make up wasmldr (see {@link wasmldrFiles}), each
 * once: the bytes whose imports are followed are the bytes that are hashed.
 */
async function readWasmldrSources(): Promise<Map<string, Uint8Array>> {
  const sources = new Map<string, Uint8Array>();
  const decoder = new TextDecoder();
  const pending = [ENTRY];
  while (pending.length > 0) {
    const path = pending.pop()!;
    if (sources.has(path)) continue;
    const bytes = await Deno.readFile(new URL(path, ROOT));
    sources.set(path, bytes);
    for (const match of decoder.decode(bytes).matchAll(IMPORT_RE)) {
      const target = new URL(match[1], new URL(path, ROOT));
      const relative = target.href.slice(ROOT.href.length);
      if (!target.href.startsWith(ROOT.href)) continue;
      if (!sources.has(relative)) pending.push(relative);
    }
  }
  return sources;
}

/**
 * Where compile.sh puts the measurement of the sources it compiled, as hex,
 * for the single binary: a `deno compile` binary carries its modules but not
 * necessarily as readable source files.
 */
export const EMBEDDED_MEASUREMENT_FILE = "build/embed/wasmldr-measurement.hex";

/** Options of {@link readEmbeddedMeasurement}. */
export interface EmbeddedMeasurementOptions {
  /** The file to read (default: {@link EMBEDDED_MEASUREMENT_FILE} in this build). */
  file?: URL;
}

/**
 * Reads the measurement that compile.sh embedded; undefined when there is
 * none. Throws when the file exists but is not 48 bytes of hex.
 */
export async function readEmbeddedMeasurement(
  options: EmbeddedMeasurementOptions = {},
): Promise<Uint8Array | undefined> {
  const file = options.file ?? new URL(EMBEDDED_MEASUREMENT_FILE, ROOT);
  let text: string;
  try {
    text = (await Deno.readTextFile(file)).trim();
  } catch {
    return undefined;
  }
  if (!/^[0-9a-f]{96}$/.test(text)) {
    throw new Error(`the embedded measurement "${file.pathname}" is not 48 bytes of hex`);
  }
  return Uint8Array.fromHex(text);
}

/**
 * The environment variable naming a file that holds this keep's
 * measurement as hex, set by a kvm keep's init: the guest's Deno is the
 * host's, and hashing it under emulation would cost seconds.
 */
export const MEASUREMENT_FILE_ENV = "ENARX_WASMLDR_MEASUREMENT_FILE";

/**
 * Returns the 48-byte measurement of this enarx's nil keep (computed again
 * only when one of its files changed): in a compiled binary the one compile.sh embedded, where
 * {@link MEASUREMENT_FILE_ENV} names a file the value it holds, else
 * computed from the files ({@link nilKeepInputs}). Throws EnarxError
 * `measurement-unavailable` when none can be read.
 */
export async function wasmldrMeasurement(): Promise<Uint8Array> {
  // Only a compiled binary uses the embedded value: in a checkout it could
  // be stale, left by an earlier compile.sh.
  const fromEnv = readEnv(MEASUREMENT_FILE_ENV);
  const given = fromEnv !== undefined && fromEnv !== ""
    ? readEmbeddedMeasurement({ file: new URL(`file://${fromEnv}`) }).then((m) => {
      if (m === undefined) {
        throw new Error(`${MEASUREMENT_FILE_ENV} names "${fromEnv}", unreadable`);
      }
      return m;
    })
    : Deno.build.standalone
    ? readEmbeddedMeasurement()
    : Promise.resolve(undefined);
  const extra = readEnv(TEST_MEASURED_EXTRA_ENV) || undefined;
  if (cached !== undefined && cached.extra === extra && await unchanged(cached.files)) {
    return await cached.digest;
  }
  // From the files: the last process's value while none of them changed.
  const store = fromEnv || Deno.build.standalone ? undefined : await measurementStore(extra);
  const stored = store === undefined ? undefined : readCachedMeasurement(store.dir, store.key);
  if (stored !== undefined) {
    cached = {
      extra,
      digest: Promise.resolve(stored.digest),
      files: Promise.resolve(stored.files),
    };
    return stored.digest;
  }
  const inputs = given.then((m) => m === undefined ? nilKeepInputs() : undefined);
  const files = inputs.then(identities, () => "recompute" as const);
  const digest = given.then(async (m) => m ?? await keepDigest("nil", (await inputs)!))
    .catch((cause) => {
      cached = undefined;
      throw new EnarxError(
        "measurement-unavailable",
        `Cannot compute the measurement of this enarx's wasmldr: ${
          cause instanceof Error ? cause.message : String(cause)
        }; give a policy that lists the keep's measurement`,
        { exit: "unavailable", cause },
      );
    });
  cached = { extra, digest, files };
  if (store !== undefined) await storeMeasurement(store, { digest, inputs, files });
  return await digest;
}

/**
 * Where this process's nil measurement is cached across processes
 * (runtime/measure/measurement_cache.ts), and its key: what the value
 * depends on besides the files' contents. Undefined without a cache.
 */
async function measurementStore(
  extra: string | undefined,
): Promise<{ dir: string; key: string } | undefined> {
  const dir = defaultDigestCacheDir({ getEnv: readEnv });
  if (dir === undefined) return undefined;
  const { libwasmtimePath } = await import("../wasm/libwasmtime_path.ts");
  let library: string;
  try {
    library = await libwasmtimePath({ getEnv: readEnv });
  } catch {
    return undefined; // computing says why
  }
  const present = EXTRA.filter((file) => {
    try {
      return Deno.statSync(new URL(file, ROOT)).isFile;
    } catch {
      return false;
    }
  });
  const key = JSON.stringify(["nil", ROOT.href, Deno.execPath(), library, extra ?? "", present]);
  return { dir, key };
}

/** Records a measurement just computed from files whose identities are known and settled. */
async function storeMeasurement(
  store: { dir: string; key: string },
  computed: {
    digest: Promise<Uint8Array>;
    inputs: Promise<MeasuredInput[] | undefined>;
    files: Promise<Map<string, FileIdentity> | undefined | "recompute">;
  },
): Promise<void> {
  let digest: Uint8Array;
  let inputs: MeasuredInput[] | undefined;
  let files: Map<string, FileIdentity> | undefined | "recompute";
  try {
    [digest, inputs, files] = await Promise.all([computed.digest, computed.inputs, computed.files]);
  } catch {
    return; // the caller reports it
  }
  if (inputs === undefined || !(files instanceof Map)) return;
  const covered: CachedMeasurementInput[] = [];
  for (const input of inputs) {
    const file = input.path === undefined ? undefined : files.get(input.path);
    if (input.path === undefined || file === undefined) return;
    covered.push({ role: input.role, path: input.path, file });
  }
  await recordCachedMeasurement(store.dir, store.key, { digest, inputs: covered });
}

/**
 * The identities of the files `inputs` read, or "recompute" when one of
 * them changed in the last 2 s (it may have changed after it was read).
 */
async function identities(
  inputs: MeasuredInput[] | undefined,
): Promise<Map<string, FileIdentity> | undefined | "recompute"> {
  if (inputs === undefined) return undefined;
  const files = new Map<string, FileIdentity>();
  for (const input of inputs) {
    if (input.path === undefined) return "recompute";
    const identity = fileIdentity(await Deno.stat(input.path));
    if (changedRecently(identity)) return "recompute";
    files.set(input.path, identity);
  }
  return files;
}

/**
 * Whether every file of a measurement is as it was (a stat each): a
 * long-running keepmgr measures each keep it launches, as the firmware it
 * stands for would, without reading anything that did not change.
 */
async function unchanged(
  pending: Promise<Map<string, FileIdentity> | undefined | "recompute">,
): Promise<boolean> {
  const files = await pending;
  if (files === undefined) return true; // given, not computed from files
  if (files === "recompute") return false;
  // Synchronous: ~75 stats in well under a millisecond, where as many
  // async ops cost keepmgr ~2 ms of CPU per keep it launches.
  for (const [path, identity] of files) {
    try {
      if (!sameFileIdentity(identity, fileIdentity(Deno.statSync(path)))) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** An environment variable, or undefined where it is unset or not readable (no --allow-env). */
function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Options of {@link nilKeepInputs}. */
export interface NilKeepInputsOptions {
  /**
   * Where the digests of the Deno executable and libwasmtime are cached
   * (runtime/measure/file_digest_cache.ts): default `digests` in the user's
   * cache (runtime/dirs.ts); `false` reads and hashes them.
   */
  digestCache?: string | false;
}

/**
 * The inputs of the nil keep's measurement, in digest order: `deno`,
 * `libwasmtime`, then `app/<path>` for wasmldr's files, package-lock.json and
 * the socket shim's source.
 */
export async function nilKeepInputs(options: NilKeepInputsOptions = {}): Promise<MeasuredInput[]> {
  // Loaded here: the registry imports this module and must not pull in the
  // wasmtime bindings.
  const { libwasmtimePath } = await import("../wasm/libwasmtime_path.ts");
  // The two large files (about 100 MB) by their identity; the sources are read anyway.
  const digestCache = options.digestCache === false
    ? undefined
    : options.digestCache ?? defaultDigestCacheDir({ getEnv: readEnv });
  const inputs = [
    await measureFile("deno", Deno.execPath(), { digestCache }),
    await measureFile("libwasmtime", await libwasmtimePath({ getEnv: readEnv }), { digestCache }),
  ];
  const sources = await readWasmldrSources();
  for (const extra of EXTRA) {
    try {
      await Deno.stat(new URL(extra, ROOT));
    } catch {
      continue; // not present in this build
    }
    sources.set(extra, await Deno.readFile(new URL(extra, ROOT)));
  }
  for (const path of [...sources.keys()].sort()) {
    const file = decodeURIComponent(new URL(path, ROOT).pathname);
    inputs.push({ role: `app/${path}`, path: file, sha256: await sha256(sources.get(path)!) });
  }
  const extra = readEnv(TEST_MEASURED_EXTRA_ENV);
  if (extra !== undefined && extra !== "") inputs.push(await measureFile("test/extra", extra));
  return inputs;
}
