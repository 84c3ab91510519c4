/**
 * The keepmgr certificates this user's client has seen, one PEM file per
 * keepmgr origin in `$XDG_CACHE_HOME/enarx/keepmgr-certs/` (default
 * `~/.cache/enarx`): a speed-up, not a trust decision.
 *
 * By default the client does not authenticate the keepmgr's TLS certificate
 * (docs/security.md, "The keepmgr's own TLS"), and Deno's own TLS cannot
 * connect without verifying one. The first connection to a keepmgr therefore
 * goes through Node's TLS layer, unverified as before, and records the
 * certificate it saw here; later ones connect with `Deno.connectTls`, with
 * that certificate as their only added root, and need no `node:*` module
 * (loading `node:https` cost a deploy about 25 ms of CPU). A certificate
 * that no longer verifies (keepmgr made a new one, or another server
 * answers) sends that connection back to the unverified path, which
 * records the new one: the client accepts exactly what it accepted before,
 * so whoever can write this cache gains nothing over whoever can answer on
 * the keepmgr's address. With `--keepmgr-ca` none of this is used.
 *
 * @module
 */
import { userCacheDir } from "../dirs.ts";
import { ensurePrivateDirectory, writeFileAtomic } from "../fs.ts";

/** The cache's directory, or undefined when this user has no cache directory. */
export function keepmgrCertCacheDir(): string | undefined {
  const base = userCacheDir();
  return base === undefined ? undefined : `${base}/keepmgr-certs`;
}

/** The file for keepmgr `origin` in `dir` (`https://127.0.0.1:8443` → `https_127.0.0.1_8443.pem`). */
export function keepmgrCertPath(dir: string, origin: string): string {
  return `${dir}/${origin.replace(/[^A-Za-z0-9.-]+/g, "_")}.pem`;
}

/** The certificate (PEM) last seen at `origin`, or undefined when `dir` holds none readable. */
export function readKeepmgrCert(dir: string, origin: string): string | undefined {
  try {
    const pem = Deno.readTextFileSync(keepmgrCertPath(dir, origin));
    return pem.includes("-----BEGIN CERTIFICATE-----") ? pem : undefined;
  } catch {
    return undefined;
  }
}

/** PEM of one DER certificate. */
export function certificatePem(der: Uint8Array): string {
  const lines = der.toBase64().match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/**
 * How many keepmgr certificates the cache keeps: one file per origin ever
 * contacted would grow without end for a user (or a test suite) that meets
 * keepmgrs on ever-new ports.
 */
export const KEEPMGR_CERT_CACHE_ENTRIES = 256;

/**
 * Records `der` in `dir` as the certificate seen at `origin`, then removes
 * the least recently recorded files beyond `maxEntries`. Best effort: a
 * cache that cannot be written only means the next connection is the slow one.
 */
export async function recordKeepmgrCert(
  dir: string,
  origin: string,
  der: Uint8Array,
  maxEntries = KEEPMGR_CERT_CACHE_ENTRIES,
): Promise<void> {
  try {
    await ensurePrivateDirectory(dir);
    await writeFileAtomic(keepmgrCertPath(dir, origin), certificatePem(der), { mode: 0o600 });
    await pruneKeepmgrCerts(dir, maxEntries);
  } catch { /* a cache */ }
}

/** Removes the oldest (by modification time) `.pem` files of `dir` beyond `maxEntries`. */
async function pruneKeepmgrCerts(dir: string, maxEntries: number): Promise<void> {
  const entries: { path: string; mtime: number }[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".pem")) continue;
    const path = `${dir}/${entry.name}`;
    try {
      entries.push({ path, mtime: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    } catch { /* removed meanwhile */ }
  }
  if (entries.length <= maxEntries) return;
  entries.sort((a, b) => a.mtime - b.mtime);
  for (const { path } of entries.slice(0, entries.length - maxEntries)) {
    await Deno.remove(path).catch(() => {});
  }
}
