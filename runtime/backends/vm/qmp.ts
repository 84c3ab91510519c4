/**
 * A client of QEMU's machine protocol (QMP) on a unix socket: the greeting,
 * capabilities negotiation, then one command at a time. keepldr uses it to
 * add user-net forwards to a running VM keep (user_net.ts).
 *
 * @module
 */

/** How long QEMU has to answer one QMP command. */
export const QMP_TIMEOUT_MS = 5_000;

/** A QMP reply: `return` on success, `error` on failure. */
interface QmpReply {
  return?: unknown;
  error?: { class?: string; desc?: string };
}

/**
 * One connection to QEMU's QMP socket: greeting, capabilities negotiation,
 * then one command at a time (QMP answers in order; events are skipped).
 */
export class QmpClient {
  readonly #conn: Deno.UnixConn;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#reader = conn.readable.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Connects to `path` and leaves capabilities negotiation mode. */
  static async connect(path: string): Promise<QmpClient> {
    const client = new QmpClient(await Deno.connect({ transport: "unix", path }));
    try {
      const greeting = await client.#next();
      if (!("QMP" in greeting)) throw new Error(`"${path}" did not greet as QMP`);
      await client.execute("qmp_capabilities");
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /** Runs `command`; returns its `return` value, or throws with QEMU's description. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const line = JSON.stringify(
      args === undefined ? { execute: command } : {
        execute: command,
        arguments: args,
      },
    ) + "\n";
    await this.#conn.write(new TextEncoder().encode(line));
    while (true) {
      const reply = await this.#next() as QmpReply & { event?: string };
      if (reply.event !== undefined) continue;
      if (reply.error !== undefined) {
        throw new Error(`QEMU refused ${command}: ${reply.error.desc ?? reply.error.class}`);
      }
      return reply.return;
    }
  }

  /** Runs a human-monitor command; returns what it printed (empty when it succeeded quietly). */
  async human(commandLine: string): Promise<string> {
    const out = await this.execute("human-monitor-command", { "command-line": commandLine });
    return typeof out === "string" ? out.trim() : "";
  }

  /** The next JSON object QEMU sends, within {@link QMP_TIMEOUT_MS}. */
  async #next(): Promise<Record<string, unknown>> {
    const deadline = Date.now() + QMP_TIMEOUT_MS;
    while (true) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl).trim();
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line !== "") return JSON.parse(line);
        continue;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`QEMU did not answer within ${QMP_TIMEOUT_MS} ms`)),
          Math.max(0, deadline - Date.now()),
        );
      });
      try {
        const { value, done } = await Promise.race([this.#reader.read(), timeout]);
        if (done) throw new Error("QEMU closed its QMP socket");
        this.#buffer += value;
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}
