/**
 * The host ports keepmgr may forward to keeps' services (`--service-ports
 * FIRST-LAST`, default 20000-20999), and which of them its keeps hold. A
 * service gets the port its Enarx.toml asks for when that port is in the
 * range and free, else the next free one of the range (searched from where
 * the last search ended, so that a port just freed is not handed out again
 * at once); when none is free the keep fails with `no-free-port`.
 *
 * @module
 */
import { EnarxError, UsageError } from "../../errors.ts";
import { KeepError } from "../keep_table.ts";

/** The default `--service-ports`. */
export const DEFAULT_SERVICE_PORTS = "20000-20999";

/** An inclusive range of ports. */
export interface PortRange {
  /** The first port. */
  first: number;
  /** The last port (inclusive). */
  last: number;
}

/** Parses `FIRST-LAST` (or one port); UsageError naming `flag` if it is not one. */
export function parsePortRange(value: string, flag = "--service-ports"): PortRange {
  const match = value.match(/^(\d{1,5})(?:-(\d{1,5}))?$/);
  const first = Number(match?.[1]);
  const last = Number(match?.[2] ?? match?.[1]);
  if (match === null || first < 1 || last > 65535 || first > last) {
    throw new UsageError(
      `${flag} "${value}" is not a port range; use FIRST-LAST with 1 <= FIRST <= LAST <= 65535, ` +
        `e.g. ${DEFAULT_SERVICE_PORTS}`,
    );
  }
  return { first, last };
}

/** The listening sockets of keepmgr's service ports, from one {@link PortRange}. */
export class ServicePorts {
  readonly #range: PortRange;
  readonly #hostname: string;
  readonly #held = new Set<number>();
  #next: number;

  /** Ports of `range`, listened on at `hostname`. */
  constructor(range: PortRange, hostname: string) {
    this.#range = range;
    this.#hostname = hostname;
    this.#next = range.first;
  }

  /** The range, as `FIRST-LAST`. */
  get range(): string {
    return `${this.#range.first}-${this.#range.last}`;
  }

  /** The number of ports held now. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * Listens on `asked` if it is in the range and free, else on the next free
   * port of the range. Throws KeepError `no-free-port` (503) for `what`.
   */
  listen(asked: number, what: string): Deno.TcpListener {
    const { first, last } = this.#range;
    if (asked >= first && asked <= last) {
      const listener = this.#tryListen(asked);
      if (listener !== undefined) return listener;
    }
    const size = last - first + 1;
    for (let i = 0; i < size; i++) {
      const port = first + (this.#next - first + i) % size;
      const listener = this.#tryListen(port);
      if (listener === undefined) continue;
      this.#next = port === last ? first : port + 1;
      return listener;
    }
    throw new KeepError(
      "no-free-port",
      `No free port for ${what}: all ${size} of --service-ports ${this.range} on ${this.#hostname} ` +
        `are in use; stop a keep ("enarx keep stop KEEP") or widen --service-ports`,
      503,
    );
  }

  /** Gives `port` back to the range. */
  release(port: number): void {
    this.#held.delete(port);
  }

  #tryListen(port: number): Deno.TcpListener | undefined {
    if (this.#held.has(port)) return undefined;
    try {
      const listener = Deno.listen({ hostname: this.#hostname, port, transport: "tcp" });
      this.#held.add(port);
      return listener;
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) return undefined;
      if (error instanceof Deno.errors.PermissionDenied) return undefined;
      throw new EnarxError(
        "service-listen-failed",
        `Cannot listen on ${this.#hostname}:${port} for a keep's service: ${
          error instanceof Error ? error.message : error
        }; check --forward-address`,
        { exit: "unavailable", cause: error },
      );
    }
  }
}
