/**
 * Compiling modules, with a cache of compiled code on disk.
 *
 * An entry is keyed by the SHA-256 of the module's bytes, the engine
 * configuration that changes compiled code, the wasmtime version and the
 * cache format, and lives at `<dir>/<key>.cwasm`. wasmtime's
 * `wasmtime_module_deserialize` trusts its input (a corrupt entry could run
 * arbitrary code), so every entry carries a header with its key and the
 * SHA-256 of the serialized code, and a mismatch of either means the entry
 * is stale or corrupt: it is ignored, the module is recompiled and the entry
 * rewritten. Entries are written to a temporary file and renamed, so readers
 * never see a partial one. The cache is only as trustworthy as the directory
 * holding it: whoever may write there may also run code as its user.
 *
 * @module
 */
import type { Engine } from "../../ffi/wasmtime/engine.ts";
import { Module, wat2wasm } from "../../ffi/wasmtime/module.ts";
import { WasmtimeFfiError } from "../../ffi/wasmtime/trap.ts";
import { bytesEqual } from "../bytes.ts";
import { userCacheDir } from "../dirs.ts";
import { EnarxError } from "../errors.ts";
import { WASMTIME_VERSION } from "../version.ts";

/**
 * Joins path segments with `/` (no node:path, which would start Deno's Node
 * compatibility layer, about 2 ms of every `enarx run`): empty segments are
 * skipped, doubled and trailing slashes dropped.
 */
function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/").replace(/\/{2,}/g, "/");
  return joined.length > 1 ? joined.replace(/\/$/, "") : joined;
}

/** Bumped whenever the entry layout changes. */
const FORMAT = "enarx-module-cache-v1";
/** `ENARXCM1`: the magic at the start of every entry. */
const MAGIC = new TextEncoder().encode("ENARXCM1");
/** magic(8) + key(32) + payload sha256(32) + payload length(8). */
const HEADER_SIZE = 80;

/**
 * The default cache directory: $ENARX_MODULE_CACHE, else $ENARX_CACHE/modules,
 * else $XDG_CACHE_HOME/enarx/modules, else ~/.cache/enarx/modules.
 */
export function defaultModuleCacheDir(): string | undefined {
  const explicit = Deno.env.get("ENARX_MODULE_CACHE");
  if (explicit) return explicit;
  const enarx = Deno.env.get("ENARX_CACHE");
  if (enarx) return join(enarx, "modules");
  const user = userCacheDir();
  return user === undefined ? undefined : join(user, "modules");
}

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

/**
 * Returns binary wasm for `raw`: binary modules as they are, WebAssembly
 * text converted (like wasmtime's CLI). `origin` names the input in errors.
 */
export function decodeModuleBytes(raw: Uint8Array, origin: string): Uint8Array<ArrayBuffer> {
  if (raw.length >= 4 && WASM_MAGIC.every((b, i) => raw[i] === b)) return new Uint8Array(raw);
  let text: string | undefined;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    text = undefined;
  }
  const looksLikeText = text !== undefined &&
    (/\.wat$/i.test(origin) || /^\s*(\(|;;)/.test(text));
  if (!looksLikeText) {
    throw new EnarxError(
      "module-invalid",
      `"${origin}" is not a WebAssembly module (no \\0asm header, and not WebAssembly text)`,
      { exit: "dataError" },
    );
  }
  try {
    return new Uint8Array(wat2wasm(text!));
  } catch (error) {
    if (!(error instanceof WasmtimeFfiError)) throw error;
    throw new EnarxError(
      "module-invalid",
      `"${origin}" is not valid WebAssembly text: ${oneLine(error.message)}`,
      { exit: "dataError" },
    );
  }
}

/** Joins wasmtime's multi-line messages ("Caused by: ...") into one line. */
export function oneLine(message: string): string {
  return message.split("\n").map((l) => l.trim()).filter((l) => l && l !== "Caused by:")
    .map((l) => l.replace(/^\d+: /, "")).join(": ");
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** The cache key of `wasm` compiled by `engine`, as 32 bytes. */
export async function moduleCacheKey(
  engine: Engine,
  wasm: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array> {
  const moduleHash = (await sha256(wasm)).toHex();
  const o = engine.options;
  const description = [
    FORMAT,
    `wasmtime=${WASMTIME_VERSION}`,
    `arch=${Deno.build.target}`,
    `opt=${o.optLevel}`,
    `epoch=${o.epochInterruption}`,
    `fuel=${o.consumeFuel}`,
    `module=${moduleHash}`,
  ].join("\n");
  return await sha256(new TextEncoder().encode(description));
}

/** Where the entry for `key` lives in `dir`. */
export function moduleCachePath(dir: string, key: Uint8Array): string {
  return join(dir, `${key.toHex()}.cwasm`);
}

/** Builds an entry: header (magic, key, payload hash, length) then the payload. */
async function encodeEntry(key: Uint8Array, payload: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const entry = new Uint8Array(HEADER_SIZE + payload.length);
  entry.set(MAGIC, 0);
  entry.set(key, 8);
  entry.set(await sha256(payload), 40);
  new DataView(entry.buffer).setBigUint64(72, BigInt(payload.length), true);
  entry.set(payload, HEADER_SIZE);
  return entry;
}

/** Returns the payload of a sound entry for `key`, or undefined if stale or corrupt. */
async function decodeEntry(
  key: Uint8Array,
  entry: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  if (entry.length < HEADER_SIZE) return undefined;
  if (!bytesEqual(entry.subarray(0, 8), MAGIC)) return undefined;
  if (!bytesEqual(entry.subarray(8, 40), key)) return undefined;
  const length = new DataView(entry.buffer, entry.byteOffset).getBigUint64(72, true);
  if (length !== BigInt(entry.length - HEADER_SIZE)) return undefined;
  const payload = entry.subarray(HEADER_SIZE);
  if (!bytesEqual(await sha256(payload), entry.subarray(40, 72))) return undefined;
  return payload;
}

/** What {@link compileModule} did, for tests and benchmarks. */
export type CacheOutcome = "disabled" | "hit" | "miss" | "rejected";

/** Options of {@link compileModule}. */
export interface CompileOptions {
  /** Cache directory; undefined compiles without a cache. */
  cacheDir?: string;
  /** Names the module in error messages. */
  origin?: string;
  /** Called with what the cache did. */
  onCache?: (outcome: CacheOutcome, path?: string) => void;
  /** Called just before Cranelift compiles the module (not for a cache hit): it may take long. */
  onCompile?: (info: { bytes: number }) => void;
}

async function compileFresh(
  engine: Engine,
  wasm: Uint8Array<ArrayBuffer>,
  origin: string,
): Promise<Module> {
  try {
    return await Module.compile(engine, wasm);
  } catch (error) {
    if (!(error instanceof WasmtimeFfiError)) throw error;
    throw new EnarxError(
      "module-invalid",
      `Module "${origin}" is not valid WebAssembly: ${oneLine(error.message)}`,
      { exit: "dataError" },
    );
  }
}

async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes, { mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
}

/**
 * Compiles `wasm` for `engine`, reusing a sound cache entry when there is
 * one and writing one when there is not. Cache I/O failures only cost a
 * recompilation; an invalid module throws EnarxError `module-invalid`.
 */
export async function compileModule(
  engine: Engine,
  wasm: Uint8Array<ArrayBuffer>,
  options: CompileOptions = {},
): Promise<Module> {
  const origin = options.origin ?? "<bytes>";
  const dir = options.cacheDir;
  if (dir === undefined) {
    options.onCache?.("disabled");
    options.onCompile?.({ bytes: wasm.length });
    return await compileFresh(engine, wasm, origin);
  }
  const key = await moduleCacheKey(engine, wasm);
  const path = moduleCachePath(dir, key);
  let outcome: CacheOutcome = "miss";
  let entry: Uint8Array<ArrayBuffer> | undefined;
  try {
    entry = await Deno.readFile(path);
  } catch {
    entry = undefined;
  }
  if (entry !== undefined) {
    const payload = await decodeEntry(key, entry);
    if (payload !== undefined) {
      try {
        const module = Module.deserialize(engine, new Uint8Array(payload));
        options.onCache?.("hit", path);
        return module;
      } catch {
        // wasmtime refused it (another build of the same version): recompile.
      }
    }
    outcome = "rejected";
  }
  options.onCompile?.({ bytes: wasm.length });
  const module = await compileFresh(engine, wasm, origin);
  try {
    const payload = new Uint8Array(module.serialize());
    await Deno.mkdir(dir, { recursive: true });
    await writeAtomically(path, await encodeEntry(key, payload));
  } catch {
    // A read-only or full cache is not an error: the next run compiles again.
  }
  options.onCache?.(outcome, path);
  return module;
}
