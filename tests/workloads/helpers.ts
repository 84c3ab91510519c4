/**
 * Helpers shared by the tests of `enarx run`: paths of the built workloads
 * (tests/workloads/build.sh) and a runner for the real CLI as a subprocess.
 *
 * @module
 */
import { fileURLToPath as fromFileUrl } from "node:url";
import { loadWasmtime } from "../../ffi/wasmtime/mod.ts";

/** The repository root. */
export const ROOT = fromFileUrl(new URL("../../", import.meta.url));
/** Where build.sh puts the workloads. */
export const BUILD = fromFileUrl(new URL("./build/", import.meta.url));

/** Path of a built workload, e.g. `probe.wasm`. */
export function workload(name: string): string {
  return `${BUILD}${name}`;
}

/**
 * Loads libwasmtime for in-process tests of ffi/ (ENARX_LIBWASMTIME, else the
 * checkout's cache, where tools/test.sh puts it), and sets ENARX_LIBWASMTIME
 * for the CLI runs of the tests.
 */
export function ensureLibwasmtime(): void {
  if (!Deno.env.get("ENARX_LIBWASMTIME")) {
    Deno.env.set("ENARX_LIBWASMTIME", `${ROOT}.cache/wasmtime-50.0.1/libwasmtime.so`);
  }
  loadWasmtime(Deno.env.get("ENARX_LIBWASMTIME"));
}

/** What a CLI run produced. */
export interface CliResult {
  /** Exit status. */
  code: number;
  /** Standard output as text. */
  stdout: string;
  /** Standard error as text. */
  stderr: string;
  /** Standard output as bytes. */
  stdoutBytes: Uint8Array;
}

/** Runs `./enarx ARGS...` with optional stdin bytes and extra environment. */
export async function enarx(
  args: string[],
  options: { stdin?: Uint8Array; env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  const child = new Deno.Command(`${ROOT}enarx`, {
    args,
    cwd: options.cwd ?? ROOT,
    env: options.env,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    // Written concurrently with reading, so that a large echo cannot deadlock.
    const writing = writer.write(options.stdin).then(() => writer.close());
    const out = await child.output();
    await writing;
    return decode(out);
  }
  return decode(await child.output());
}

function decode(out: Deno.CommandOutput): CliResult {
  const text = new TextDecoder();
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}
