/**
 * The measurement of a nil or kvm keep under the simulated SNP platform: a
 * SHA-384 over the code that makes up wasmldr, standing in for the launch
 * digest that SEV-SNP hardware computes over a guest's initial memory.
 *
 * What is measured: every TypeScript file reachable through relative imports
 * (static `import`/`export ... from` and `import("...")` with a literal) from
 * cli/wasmldr.ts, sorted by their path relative to the repository root, plus
 * package-lock.json, which pins the exact npm packages (with their integrity
 * hashes) that those files import by name. The digest is
 *
 *   SHA-384("enarx/v1 wasmldr-measurement\0" ||
 *           for each file: path || "\0" || u32be(length) || bytes)
 *
 * Both wasmldr (to ask the simulator for a report) and the client (to know
 * what to expect, when the policy names no measurement) compute it from
 * their own copy of the code, so a client accepts exactly the wasmldr of its
 * own enarx version.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

const LABEL = "enarx/v1 wasmldr-measurement\0";
const ROOT = new URL("../../", import.meta.url);
const ENTRY = "cli/wasmldr.ts";
const EXTRA = ["package-lock.json"];

const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+\.ts)["']/g;

let cached: Promise<Uint8Array> | undefined;

/** Lists the files that make up wasmldr, relative to the repository root, sorted. */
export async function wasmldrFiles(): Promise<string[]> {
  const seen = new Set<string>();
  const pending = [ENTRY];
  while (pending.length > 0) {
    const path = pending.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const text = await Deno.readTextFile(new URL(path, ROOT));
    for (const match of text.matchAll(IMPORT_RE)) {
      const target = new URL(match[1], new URL(path, ROOT));
      const relative = target.href.slice(ROOT.href.length);
      if (!target.href.startsWith(ROOT.href)) continue;
      if (!seen.has(relative)) pending.push(relative);
    }
  }
  return [...seen].sort();
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
  return Uint8Array.from(text.match(/../g)!, (h) => parseInt(h, 16));
}

/**
 * Returns the 48-byte measurement of this enarx's wasmldr (computed once per
 * process): in a compiled binary the one compile.sh embedded, else computed
 * from the source files. Throws EnarxError `measurement-unavailable` when
 * neither can be read.
 */
export function wasmldrMeasurement(): Promise<Uint8Array> {
  // Only a compiled binary uses the embedded value: in a checkout it could
  // be stale, left by an earlier compile.sh.
  const embedded = Deno.build.standalone ? readEmbeddedMeasurement() : Promise.resolve(undefined);
  cached ??= embedded.then((m) => m ?? computeMeasurement()).catch((cause) => {
    cached = undefined;
    throw new EnarxError(
      "measurement-unavailable",
      `Cannot compute the measurement of this enarx's wasmldr: ${
        cause instanceof Error ? cause.message : String(cause)
      }; give a policy that lists the keep's measurement`,
      { exit: "unavailable", cause },
    );
  });
  return cached;
}

async function computeMeasurement(): Promise<Uint8Array> {
  const files = [...await wasmldrFiles()];
  for (const extra of EXTRA) {
    try {
      await Deno.stat(new URL(extra, ROOT));
      files.push(extra);
    } catch { /* not present in this build */ }
  }
  files.sort();
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [encoder.encode(LABEL)];
  for (const path of files) {
    const bytes = await Deno.readFile(new URL(path, ROOT));
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, bytes.length, false);
    parts.push(encoder.encode(path + "\0"), head, bytes);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const input = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    input.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-384", input));
}
