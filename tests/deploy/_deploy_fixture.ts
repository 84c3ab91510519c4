/**
 * Shared pieces of the deploy tests: a real local keepmgr tagged so that its
 * keeps can be found among the machine's processes, a hostile keepmgr in
 * front of it that can tamper with any message, and small workloads.
 */
import https from "node:https";
import { LocalKeepmgr } from "../../runtime/keepmgr/local.ts";
import type { DeployWorkload } from "../../runtime/client/deploy.ts";
import { SnpSimulator } from "../../runtime/attestation/amd/snp_sim.ts";

/** The snp-sim state shared by the deploy tests (its RSA chain is made once). */
export const SIM_DIR = new URL("../../.cache/test-snp-sim", import.meta.url).pathname;

/** The fingerprint of {@link SIM_DIR}'s root, `sha256:<hex>`: what deploys trust. */
export const SIM_ROOT = `sha256:${(await SnpSimulator.open(SIM_DIR)).rootFingerprint}`;

/** The probe workload built by tests/workloads/build.sh. */
export const PROBE_WASM = new URL("../workloads/build/probe.wasm", import.meta.url).pathname;

/** A WASI command that writes "out\n" to stdout, "err\n" to stderr and exits with 7. */
export const STREAMS_WAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "out\\n")
  (data (i32.const 32) "err\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 4))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 32)) (i32.store (i32.const 4) (i32.const 4))
    (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 7))))`;

/** A WASI command that never ends. */
export const LOOP_WAT = `(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))`;

/** A WASI command that writes its whole argv buffer (NUL-separated) to stdout. */
export const ARGV_WAT = `(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 64) (i32.const 1024)))
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))`;

/** Makes a workload from WAT text or module bytes. */
export function workload(
  module: string | Uint8Array,
  more: Partial<DeployWorkload> = {},
): DeployWorkload {
  return {
    module: typeof module === "string" ? new TextEncoder().encode(module) : module,
    config: null,
    args: [],
    env: {},
    stdin: new Uint8Array(0),
    ...more,
  };
}

/** Starts a real keepmgr whose every process carries ENARX_TEST_TAG=<tag>. */
export async function startKeepmgr(
  options: { stateDir?: string; args?: string[]; tag?: string; env?: Record<string, string> } = {},
): Promise<LocalKeepmgr & { tag: string }> {
  const tag = options.tag ?? crypto.randomUUID();
  const mgr = await LocalKeepmgr.start({
    simDir: SIM_DIR,
    stateDir: options.stateDir,
    args: options.args,
    env: { ...options.env, ENARX_TEST_TAG: tag },
  });
  return Object.assign(mgr, { tag });
}

/** Warm keeps a keepmgr started without --warm-keeps keeps ready (its default, nil=2). */
export const DEFAULT_WARM_KEEPS = 2;

/** The wasmldrs of a keepmgr: its keeps' and its warm keeps'. */
export function wasmldrsOf(mgr: { tag: string }): number[] {
  return taggedProcessesWith(mgr.tag, "wasmldr");
}

/**
 * The processes of the live keeps of a keepmgr, as their records name them
 * (keepmgr hosts its keeps: each is one process, its wasmldr).
 */
export function keepProcesses(mgr: { stateDir: string }): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync(`${mgr.stateDir}/keeps`)) {
    try {
      const record = JSON.parse(Deno.readTextFileSync(`${mgr.stateDir}/keeps/${entry.name}`));
      if (typeof record.pid === "number") pids.push(record.pid);
    } catch { /* removed meanwhile */ }
  }
  return pids;
}

/** Process ids whose environment carries ENARX_TEST_TAG=<tag> (keepmgr, keepldrs, wasmldrs). */
export function taggedProcesses(tag: string): number[] {
  const found: number[] = [];
  const marker = `ENARX_TEST_TAG=${tag}`;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const environ = Deno.readTextFileSync(`/proc/${entry.name}/environ`);
      if (environ.split("\0").includes(marker)) found.push(Number(entry.name));
    } catch { /* gone or not ours */ }
  }
  return found;
}

/** Process ids whose command line holds `word` and whose environment carries the tag. */
export function taggedProcessesWith(tag: string, word: string): number[] {
  return taggedProcesses(tag).filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").includes(word);
    } catch {
      return false;
    }
  });
}

/** Waits until `check` is true, polling every 50 ms, up to `ms`; returns its last value. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return await check();
}

/** One request for {@link forward}. */
export interface ForwardRequest {
  /** The HTTP method, e.g. `POST`. */
  method: string;
  /** The path, resolved against the base URL. */
  path: string;
  /** A CBOR body, or undefined for none. */
  body: Uint8Array | undefined;
  /** The client's authorization header, passed on. */
  authorization?: string;
}

/** A raw HTTP exchange with the real keepmgr, certificate not checked. */
export function forward(
  base: string,
  { method, path, body, authorization }: ForwardRequest,
): Promise<{ status: number; body: Uint8Array; type: string }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: url.hostname,
      port: Number(url.port),
      method,
      path: url.pathname,
      rejectUnauthorized: false,
      headers: {
        ...(authorization === undefined ? {} : { authorization }),
        ...(body === undefined
          ? {}
          : { "content-type": "application/cbor", "content-length": String(body.length) }),
      },
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(new Uint8Array(c)));
      res.on("end", () => {
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) {
          all.set(c, at);
          at += c.length;
        }
        resolve({
          status: res.statusCode ?? 0,
          body: all,
          type: String(res.headers["content-type"] ?? "application/cbor"),
        });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** What a hostile keepmgr may do to one exchange. */
export interface Tamper {
  /** Rewrites a request body before it is forwarded (path, decoded-free bytes). */
  request?: (path: string, body: Uint8Array) => Uint8Array | Promise<Uint8Array>;
  /** Rewrites a reply before it reaches the client. */
  reply?: (
    path: string,
    reply: { status: number; body: Uint8Array },
  ) => { status: number; body: Uint8Array } | Promise<{ status: number; body: Uint8Array }>;
}

/** A plain-HTTP keepmgr on 127.0.0.1 that relays to `upstream`, tampering as told, and logs paths. */
export function hostileKeepmgr(upstream: string, tamper: Tamper) {
  const seen: string[] = [];
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      seen.push(`${request.method} ${url.pathname}`);
      let body: Uint8Array | undefined = request.body === null
        ? undefined
        : new Uint8Array(await request.arrayBuffer());
      if (body !== undefined && body.length === 0 && request.method === "GET") body = undefined;
      if (body !== undefined && tamper.request) body = await tamper.request(url.pathname, body);
      let reply = await forward(upstream, {
        method: request.method,
        path: url.pathname,
        body,
        authorization: request.headers.get("authorization") ?? undefined,
      });
      if (tamper.reply) reply = { ...reply, ...(await tamper.reply(url.pathname, reply)) };
      return new Response(new Uint8Array(reply.body), {
        status: reply.status,
        headers: { "content-type": reply.type },
      });
    },
  );
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    seen,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await server.finished;
    },
  };
}

/** `enarx deploy` arguments for keepmgr `mgr`, trusting the test simulator, with `toml` and `more`. */
export function deployArgs(mgr: LocalKeepmgr, toml: string, more: string[]): string[] {
  return [
    "deploy",
    "--keepmgr",
    mgr.url,
    "--keepmgr-token",
    mgr.tokenFile,
    "--trust-simulated",
    SIM_ROOT,
    "--wasmcfgfile",
    toml,
    ...more,
  ];
}

/** `--wasmldr-command` for keepmgr: the fake wasmldr (fake_wasmldr.ts) in `mode`, as JSON. */
export function fakeWasmldrCommand(mode: string): string {
  return JSON.stringify([
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    "--config",
    new URL("../../deno.json", import.meta.url).pathname,
    new URL("./fake_wasmldr.ts", import.meta.url).pathname,
    mode,
  ]);
}
