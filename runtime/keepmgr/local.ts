/**
 * A keepmgr started as a child process on 127.0.0.1 with a temporary state
 * directory, for `enarx demo`, the deploy tests and the deploy benchmark. It
 * is the real daemon (`enarx keepmgr`), reached over its real HTTPS API.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { selfCommand } from "./keepldr.ts";
import { readToken } from "./api/auth.ts";
import { userCacheDir } from "../dirs.ts";

/**
 * The simulated platform of the keepmgrs this machine starts for itself
 * (`enarx demo`, `enarx run --backend kvm`): `$ENARX_SNP_SIM_DIR`, else
 * `demo-snp-sim` in the user's cache. Its chain is made on first use.
 */
export function localSimulatorDir(): string {
  return Deno.env.get("ENARX_SNP_SIM_DIR") ??
    `${userCacheDir() ?? `${Deno.env.get("HOME") ?? "/tmp"}/.cache/enarx`}/demo-snp-sim`;
}

/** Options of {@link LocalKeepmgr.start}. */
export interface LocalKeepmgrOptions {
  /** State directory (default: a new temporary directory, removed on close). */
  stateDir?: string;
  /** snp-sim state directory passed to keepldrs as ENARX_SNP_SIM_DIR (default: inside stateDir). */
  simDir?: string;
  /** More `enarx keepmgr` arguments, e.g. ["--max-keeps", "200"]. */
  args?: string[];
  /** Receives each line the keepmgr logs (JSON lines) on standard error. */
  onLog?: (line: string) => void;
  /** More environment variables for the keepmgr and so its keeps. */
  env?: Record<string, string>;
  /** Time allowed to start, in milliseconds (default 30 s). */
  startTimeoutMs?: number;
  /**
   * The command that runs enarx, e.g. another checkout's `["/path/enarx"]`
   * (benchmarks compare two); default this program.
   */
  enarx?: string[];
}

/** A running local keepmgr; close() stops it (SIGTERM, then SIGKILL) and removes its state. */
export class LocalKeepmgr {
  /** Its HTTPS URL, e.g. https://127.0.0.1:40123. */
  readonly url: string;
  /** Its state directory. */
  readonly stateDir: string;
  /** The snp-sim state directory its keepldrs sign keeps' reports with. */
  readonly simDir: string;
  /**
   * Its simulated SNP root's fingerprint, `sha256:<hex>`, as its start line
   * says: pass it to `deploy` as `trustSimulated`. Undefined when it has none.
   */
  readonly simulatorRoot: string | undefined;
  /** The child's process id. */
  readonly pid: number;
  /** The operator's bearer token (read from its token file). */
  readonly token: string;
  /** The file holding {@link token}. */
  readonly tokenFile: string;
  readonly #child: Deno.ChildProcess;
  readonly #ownsStateDir: boolean;
  readonly #logsDone: Promise<void>;
  #closed = false;

  private constructor(
    started: { url: string; token: string; tokenFile: string },
    stateDir: string,
    simDir: string,
    simulatorRoot: string | undefined,
    child: Deno.ChildProcess,
    ownsStateDir: boolean,
    logsDone: Promise<void>,
  ) {
    this.url = started.url;
    this.token = started.token;
    this.tokenFile = started.tokenFile;
    this.stateDir = stateDir;
    this.simDir = simDir;
    this.simulatorRoot = simulatorRoot;
    this.pid = child.pid;
    this.#child = child;
    this.#ownsStateDir = ownsStateDir;
    this.#logsDone = logsDone;
  }

  /**
   * Prepares the simulated platform (its chain is made once, which takes a
   * few seconds), starts `enarx keepmgr --listen 127.0.0.1:0 --json-logs`
   * and waits for the line that says where it listens.
   */
  static async start(options: LocalKeepmgrOptions = {}): Promise<LocalKeepmgr> {
    const ownsStateDir = options.stateDir === undefined;
    const stateDir = options.stateDir ?? await Deno.makeTempDir({ prefix: "enarx-keepmgr-" });
    const simDir = options.simDir ?? `${stateDir}/snp-sim`;
    // Made here, once (a few seconds), rather than by the keepmgr's start.
    const { SnpSimulator } = await import("../attestation/amd/snp_sim.ts");
    await SnpSimulator.open(simDir);
    const args = [
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      stateDir,
      "--json-logs",
      ...(options.args ?? []),
    ];
    const command = options.enarx === undefined
      ? selfCommand("keepmgr", args)
      : [...options.enarx, "keepmgr", ...args];
    const child = new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { ...options.env, ENARX_SNP_SIM_DIR: simDir },
    }).spawn();
    const onLog = options.onLog;
    const logsDone = (async () => {
      const decoder = new TextDecoderStream();
      let rest = "";
      for await (const text of child.stderr.pipeThrough(decoder)) {
        rest += text;
        const lines = rest.split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) onLog?.(line);
      }
      if (rest !== "") onLog?.(rest);
    })().catch(() => {});
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const timeoutMs = options.startTimeoutMs ?? 30_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const started = await Promise.race([
        readStartLine(reader, stateDir),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`not listening after ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      // Drain the rest of standard output so that the child never blocks on it.
      (async () => {
        while (!(await reader.read()).done) { /* discard */ }
      })().catch(() => {});
      return new LocalKeepmgr(
        started,
        stateDir,
        simDir,
        started.root,
        child,
        ownsStateDir,
        logsDone,
      );
    } catch (cause) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      if (ownsStateDir) await Deno.remove(stateDir, { recursive: true }).catch(() => {});
      throw new EnarxError(
        "keepmgr-unreachable",
        `Cannot start a local keepmgr: ${cause instanceof Error ? cause.message : cause}`,
        { exit: "unavailable", cause },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal to the keepmgr (tests use SIGKILL to crash it). */
  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
  }

  /** Resolves when the keepmgr process has ended. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }

  /** Stops the keepmgr (and so every keep) and removes a temporary state directory. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), 10_000);
    await this.#child.status;
    clearTimeout(timer);
    await this.#logsDone;
    if (this.#ownsStateDir) await Deno.remove(this.stateDir, { recursive: true }).catch(() => {});
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** keepmgr's first line on stdout (JSON): where it listens, its token file, its simulator root. */
async function readStartLine(
  reader: ReadableStreamDefaultReader<string>,
  stateDir: string,
): Promise<{ url: string; token: string; tokenFile: string; root: string | undefined }> {
  let buffered = "";
  while (!buffered.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("it exited before listening");
    buffered += value;
  }
  const first = JSON.parse(buffered.slice(0, buffered.indexOf("\n")));
  if (typeof first.listening !== "string") throw new Error(`unexpected "${buffered}"`);
  const tokenFile = typeof first.token_file === "string" ? first.token_file : `${stateDir}/token`;
  const root = typeof first.simulator_root === "string" ? first.simulator_root : undefined;
  return { url: first.listening as string, token: await readToken(tokenFile), tokenFile, root };
}
