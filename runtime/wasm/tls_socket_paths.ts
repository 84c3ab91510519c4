/**
 * Where `prot = "tls"` sockets put their plaintext Unix sockets
 * (tls_bridge.ts): a fresh private directory, or, in a deployed nil keep,
 * the fixed directory named by {@link TLS_SOCKET_DIR_ENV} inside the keep's
 * work directory, so that keepmgr can grant the keep's sandbox exactly those
 * socket paths (Deno asks for net access to each `unix:` path).
 *
 * @module
 */

/** The environment variable naming the fixed directory. */
export const TLS_SOCKET_DIR_ENV = "ENARX_TLS_SOCKET_DIR";

/** The most sockets one run bridges (Enarx.toml holds at most this many socket entries). */
export const MAX_BRIDGED_SOCKETS = 64;

/** The path of bridged socket number `n` (from 0, counted over both kinds) in `dir`. */
export function bridgedSocketPath(dir: string, kind: "listen" | "connect", n: number): string {
  return `${dir}/${kind}-${n}.sock`;
}

/** Every path {@link bridgedSocketPath} may give in `dir`. */
export function bridgedSocketPaths(dir: string): string[] {
  const paths: string[] = [];
  for (let n = 0; n < MAX_BRIDGED_SOCKETS; n++) {
    paths.push(bridgedSocketPath(dir, "listen", n), bridgedSocketPath(dir, "connect", n));
  }
  return paths;
}
