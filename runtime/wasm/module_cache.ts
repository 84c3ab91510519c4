/**
 * Compiling modules, with a cache of compiled code on disk.
 *
 * An entry is the code wasmtime serialized, `<dir>/<key>.cwasm`, and its
 * record `<dir>/<key>.json`. The key is the SHA-256 of the module's SHA-256,
 * the engine configuration that changes compiled code, the wasmtime version
 * and the cache format. A hit memory-maps the `.cwasm` file
 * (`wasmtime_module_deserialize_file`): nothing is read or copied through
 * JavaScript. The record holds the file's identity (device, inode, size,
 * mtime, ctime) when it was written and its SHA-256; a file whose identity
 * differs is stale or corrupt and is recompiled, and one written in the last
 * {@link QUIET_MS} is also hashed.
 *
 * A module given as a file is not hashed on every start either: a link
 * `<dir>/file-<dev>-<ino>-<engine>.json` records the file's identity and
 * the SHA-256 taken when it was compiled. A link is written only for a file
 * unchanged for {@link QUIET_MS} before it was read, so that any later change
 * gives it a later ctime (which no user can set back) or another size or
 * inode: a changed module is recompiled, never run stale.
 *
 * Trust: wasmtime runs whatever machine code a `.cwasm` file holds, so
 * whoever can write the cache can run native code as its user. The cache is
 * used only when its directory belongs to this user (or root), is writable by
 * nobody else, and every directory above it belongs to root or this user and
 * is writable by nobody else unless sticky (like `/tmp`); entries must be
 * regular files of this user, writable by nobody else. Otherwise the cache is
 * bypassed (outcome `refused`, with the reason). New directories are made
 * 0700, entries 0600, written to a temporary file and renamed.
 *
 * @module
 */
import type { Engine } from "../../ffi/wasmtime/engine.ts";
import { Module, wat2wasm } from "../../ffi/wasmtime/module.ts";
import { WasmtimeFfiError } from "../../ffi/wasmtime/trap.ts";
import {
  changedRecently,
  checkCacheDir,
  type FileIdentity,
  fileIdentity,
  sameFileIdentity,
  untrustedCacheFile,
} from "../cache_dir.ts";
import { userCacheDir } from "../dirs.ts";
import { EnarxError } from "../errors.ts";
import { WASMTIME_VERSION } from "../version.ts";

export { type CacheDirCheck, checkCacheDir, QUIET_MS } from "../cache_dir.ts";

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
const FORMAT = "enarx-module-cache-v2";

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

/** What changes compiled code: format, wasmtime, target and engine options. */
function engineDescription(engine: Engine): string {
  const o = engine.options;
  return [
    FORMAT,
    `wasmtime=${WASMTIME_VERSION}`,
    `arch=${Deno.build.target}`,
    `opt=${o.optLevel}`,
    `epoch=${o.epochInterruption}`,
    `fuel=${o.consumeFuel}`,
  ].join("\n");
}

/** The cache key of the module whose SHA-256 is `moduleHash` (hex), compiled by `engine`. */
async function keyOf(engine: Engine, moduleHash: string): Promise<Uint8Array> {
  const description = `${engineDescription(engine)}\nmodule=${moduleHash}`;
  return await sha256(new TextEncoder().encode(description));
}

/** The cache key of `wasm` compiled by `engine`, as 32 bytes. */
export async function moduleCacheKey(
  engine: Engine,
  wasm: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array> {
  return await keyOf(engine, (await sha256(wasm)).toHex());
}

/** Where the compiled code for `key` lives in `dir` (its record: `.json` beside it). */
export function moduleCachePath(dir: string, key: Uint8Array): string {
  return join(dir, `${key.toHex()}.cwasm`);
}

/** Reads a JSON record of the cache; undefined when missing, foreign or unreadable. */
function readRecord<T>(path: string): T | undefined {
  try {
    if (untrustedCacheFile(path, Deno.lstatSync(path)) !== undefined) return undefined;
    const value = JSON.parse(Deno.readTextFileSync(path));
    return value?.format === FORMAT ? value as T : undefined;
  } catch {
    return undefined;
  }
}

/** `<key>.json`: the compiled code's identity and SHA-256 when it was written. */
interface EntryRecord {
  format: string;
  key: string;
  code: FileIdentity;
  sha256: string;
}

/** `file-*.json`: a module file's identity and the SHA-256 of its module when compiled. */
interface LinkRecord {
  format: string;
  engine: string;
  module: FileIdentity;
  sha256: string;
  /** The entry's key (hex): what keyOf gives for `engine` and `sha256`. */
  key: string;
}

/** What {@link compileModule} did, for tests and benchmarks. */
export type CacheOutcome = "disabled" | "hit" | "miss" | "rejected" | "refused";

/** Details of a cache outcome. */
export interface CacheDetail {
  /** The compiled code's file. */
  path?: string;
  /** How a file module was found: by its recorded identity, or by hashing its bytes. */
  via?: "identity" | "hash";
  /** Why the cache was refused. */
  reason?: string;
}

/** Options of {@link compileModule} and {@link compileModuleFile}. */
export interface CompileOptions {
  /** Cache directory; undefined compiles without a cache. */
  cacheDir?: string;
  /** Names the module in error messages. */
  origin?: string;
  /** Called with what the cache did. */
  onCache?: (outcome: CacheOutcome, detail: CacheDetail) => void;
  /**
   * Called just before Cranelift compiles the module (not for a cache hit): it
   * may take long. `cacheRefused` says why an untrusted cache was not used.
   */
  onCompile?: (info: { bytes: number; cacheRefused?: string }) => void;
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

/** The sound entry for `key`, memory-mapped; "absent" or "rejected" (stale or corrupt) if none. */
async function loadEntry(
  engine: Engine,
  dir: string,
  key: Uint8Array,
): Promise<Module | "absent" | "rejected"> {
  const path = moduleCachePath(dir, key);
  const record = readRecord<EntryRecord>(path.replace(/\.cwasm$/, ".json"));
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return record === undefined ? "absent" : "rejected";
  }
  if (record === undefined || record.key !== key.toHex()) return "rejected";
  const code = fileIdentity(info);
  if (untrustedCacheFile(path, info) !== undefined || !sameFileIdentity(code, record.code)) {
    return "rejected";
  }
  // Fresh entries are hashed: a change in the clock tick of their writing keeps their identity.
  if (
    changedRecently(code) && (await sha256(await Deno.readFile(path))).toHex() !== record.sha256
  ) {
    return "rejected";
  }
  try {
    return Module.deserializeFile(engine, path);
  } catch {
    return "rejected"; // wasmtime refused it (another build of the same version)
  }
}

/** Serializes `module` into the entry for `key`: code, then its record. */
async function writeEntry(dir: string, key: Uint8Array, module: Module): Promise<void> {
  const path = moduleCachePath(dir, key);
  const payload = new Uint8Array(module.serialize());
  await writeAtomically(path, payload);
  const record: EntryRecord = {
    format: FORMAT,
    key: key.toHex(),
    code: fileIdentity(await Deno.lstat(path)),
    sha256: (await sha256(payload)).toHex(),
  };
  await writeAtomically(
    path.replace(/\.cwasm$/, ".json"),
    new TextEncoder().encode(JSON.stringify(record)),
  );
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
  const dir = options.cacheDir;
  const check = dir === undefined ? undefined : checkCacheDir(dir);
  if (dir === undefined || !check?.ok) {
    const refused = check?.ok === false ? check.refused : undefined;
    if (refused !== undefined) options.onCache?.("refused", { reason: refused });
    else options.onCache?.(dir === undefined ? "disabled" : "miss", {});
    options.onCompile?.({ bytes: wasm.length, cacheRefused: refused });
    return await compileFresh(engine, wasm, options.origin ?? "<bytes>");
  }
  return (await compileCached(engine, wasm, { ...options, cacheDir: dir })).module;
}

/** compileModule's cached path, for a trusted `options.cacheDir`; also gives the key. */
async function compileCached(
  engine: Engine,
  wasm: Uint8Array<ArrayBuffer>,
  options: CompileOptions & { cacheDir: string; via?: "hash" },
): Promise<{ module: Module; key: Uint8Array }> {
  const dir = options.cacheDir;
  const key = await moduleCacheKey(engine, wasm);
  const path = moduleCachePath(dir, key);
  const found = await loadEntry(engine, dir, key);
  if (typeof found !== "string") {
    options.onCache?.("hit", { path, via: options.via });
    return { module: found, key };
  }
  options.onCompile?.({ bytes: wasm.length });
  const module = await compileFresh(engine, wasm, options.origin ?? "<bytes>");
  try {
    await writeEntry(dir, key, module);
  } catch {
    // A read-only or full cache is not an error: the next run compiles again.
  }
  options.onCache?.(found === "absent" ? "miss" : "rejected", { path, via: options.via });
  return { module, key };
}

/**
 * Stats a module file, with the errors a person can act on (EnarxError
 * `module-not-found`, `module-unreadable`, exit status noInput).
 */
export function statModuleFile(path: string): Deno.FileInfo {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new EnarxError("module-not-found", `Cannot find module "${path}"; check the path`, {
        exit: "noInput",
      });
    }
    const why = error instanceof Error ? error.message : String(error);
    throw new EnarxError("module-unreadable", `Cannot read module "${path}": ${why}`, {
      exit: "noInput",
    });
  }
  if (info.isDirectory) {
    throw new EnarxError("module-not-found", `Module "${path}" is a directory, not a file`, {
      exit: "noInput",
    });
  }
  return info;
}

/** Reads a module file (binary or WebAssembly text) as binary wasm, with statModuleFile's errors. */
export async function readModuleFile(path: string): Promise<Uint8Array<ArrayBuffer>> {
  statModuleFile(path);
  let raw: Uint8Array;
  try {
    raw = await Deno.readFile(path);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new EnarxError("module-unreadable", `Cannot read module "${path}": ${why}`, {
      exit: "noInput",
    });
  }
  return decodeModuleBytes(raw, path);
}

/** Where the link of a module file with `identity` lives, for `engine`. */
function linkPath(dir: string, identity: FileIdentity, engine: Engine): string {
  const o = engine.options;
  const tag = `${o.optLevel}${o.epochInterruption ? "-epoch" : ""}${o.consumeFuel ? "-fuel" : ""}`;
  return join(dir, `file-${identity.dev}-${identity.ino}-${tag}.json`);
}

/**
 * Compiles the module in file `path` (binary or text) like
 * {@link compileModule}, but finds its entry by the file's identity when a
 * link recorded it: a cached start neither reads nor hashes the module.
 */
export async function compileModuleFile(
  engine: Engine,
  path: string,
  options: CompileOptions = {},
): Promise<Module> {
  const info = statModuleFile(path);
  const before = fileIdentity(info);
  // Only a regular file's identity stands for its content (not a pipe's or a device's).
  const linkable = info.isFile;
  const dir = options.cacheDir;
  const check = dir === undefined ? undefined : checkCacheDir(dir);
  if (dir === undefined || !check?.ok) {
    return await compileModule(engine, await readModuleFile(path), { ...options, origin: path });
  }
  const link = linkPath(dir, before, engine);
  const recorded = readRecord<LinkRecord>(link);
  if (
    linkable && recorded?.engine === engineDescription(engine) &&
    sameFileIdentity(before, recorded.module) &&
    /^[0-9a-f]{64}$/.test(recorded.key)
  ) {
    // The record's own key: hashing again would only cost time (the directory is trusted).
    const key = Uint8Array.fromHex(recorded.key);
    const found = await loadEntry(engine, dir, key);
    if (typeof found !== "string") {
      options.onCache?.("hit", { path: moduleCachePath(dir, key), via: "identity" });
      return found;
    }
  }
  const wasm = await readModuleFile(path);
  const { module, key } = await compileCached(engine, wasm, {
    ...options,
    cacheDir: dir,
    origin: path,
    via: "hash",
  });
  // Linked only when the file was quiet before it was read and did not change while read.
  const after = fileIdentity(statModuleFile(path));
  if (linkable && sameFileIdentity(before, after) && !changedRecently(before)) {
    const record: LinkRecord = {
      format: FORMAT,
      engine: engineDescription(engine),
      module: before,
      sha256: (await sha256(wasm)).toHex(),
      key: key.toHex(),
    };
    await writeAtomically(link, new TextEncoder().encode(JSON.stringify(record))).catch(() => {});
  }
  return module;
}
