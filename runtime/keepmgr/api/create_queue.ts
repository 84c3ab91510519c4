/**
 * keepmgr's queue of keep creates (spec/protocol.md, "POST /v1/keeps"): at
 * most `maxCreating` keeps are being created at once, the rest wait in the
 * order they came, up to `maxQueued`; past that a create is refused with 503
 * `queue-full`. Each create holds a ticket; a client that waits polls with it
 * and learns how many creates are ahead of it. A ticket nobody polled for
 * `abandonMs` is dropped from the queue, or, when its keep was created
 * meanwhile, handed to `abandon` (keepmgr deletes that keep).
 *
 * @module
 */
import { KeepError } from "../keep_table.ts";
import { RetryLaterError } from "./limits.ts";

/** Limits of the create queue. */
export interface CreateQueueLimits {
  /** Keeps being created at once (`--max-creating`). */
  maxCreating: number;
  /** Creates waiting for a free slot (`--max-queued`); more are 503 `queue-full`. */
  maxQueued: number;
  /** Time after which a ticket nobody polls is given up, ms. */
  abandonMs: number;
}

/** The default number of keeps created at once: the CPUs, at least 2. */
export function defaultMaxCreating(): number {
  let cpus = 2;
  try {
    cpus = navigator.hardwareConcurrency || 2;
  } catch { /* not known */ }
  return Math.max(2, cpus);
}

/** The defaults, documented in spec/protocol.md. */
export const DEFAULT_QUEUE_LIMITS: CreateQueueLimits = {
  maxCreating: defaultMaxCreating(),
  maxQueued: 1000,
  abandonMs: 60_000,
};

/** Where one create is: waiting (`ahead` creates before it), being created, or done. */
export type TicketState = "queued" | "creating" | "done";

/** One create in the queue. */
export class Ticket<T> {
  /** 16 random bytes, in hex: what the client polls with. */
  readonly id = crypto.getRandomValues(new Uint8Array(16)).toHex();
  /** The create's result, once it started (settles when it ends). */
  result?: Promise<T>;
  /** Its outcome once settled. */
  outcome?: { value: T } | { error: unknown };
  /** Where it is. */
  state: TicketState = "queued";
  /** Requests waiting on it now. */
  holders = 0;
  /** When a request last let go of it (performance.now()). */
  seen = performance.now();
  /** Settles once the create ended (never rejects). */
  readonly ended: Promise<void>;
  #ended!: () => void;
  readonly #start: () => Promise<T>;
  readonly #abandon: (value: T) => void;

  /** Makes a ticket that runs `start` when its turn comes. */
  constructor(start: () => Promise<T>, abandon: (value: T) => void) {
    this.#start = start;
    this.#abandon = abandon;
    this.ended = new Promise((resolve) => this.#ended = resolve);
  }

  /** Starts the create (the queue calls this once, in order). */
  run(onEnd: () => void): void {
    this.state = "creating";
    this.result = this.#start();
    this.result.then(
      (value) => void (this.outcome = { value }),
      (error) => void (this.outcome = { error }),
    ).finally(() => {
      this.state = "done";
      this.#ended();
      onEnd();
    });
  }

  /** Ends a create that never started with `error`. */
  cancel(error: unknown): void {
    this.outcome = { error };
    this.state = "done";
    this.#ended();
  }

  /** Gives a created keep back: its client is gone. */
  abandon(): void {
    if (this.outcome !== undefined && "value" in this.outcome) this.#abandon(this.outcome.value);
  }
}

/** A FIFO of creates with at most `maxCreating` running. */
export class CreateQueue<T> {
  readonly #limits: CreateQueueLimits;
  readonly #waiting: Ticket<T>[] = [];
  readonly #tickets = new Map<string, Ticket<T>>();
  #creating = 0;
  #sweeper?: ReturnType<typeof setInterval>;

  /** Makes an empty queue. */
  constructor(limits: CreateQueueLimits = DEFAULT_QUEUE_LIMITS) {
    this.#limits = limits;
  }

  /** Creates running now. */
  get creating(): number {
    return this.#creating;
  }

  /** Creates waiting for a slot. */
  get queued(): number {
    return this.#waiting.length;
  }

  /**
   * Queues a create that runs `start` when its turn comes; `abandon` gets its
   * keep if nobody collects it. Throws RetryLaterError 503 `queue-full`.
   */
  enter(start: () => Promise<T>, abandon: (value: T) => void): Ticket<T> {
    const { maxCreating, maxQueued } = this.#limits;
    if (this.#creating >= maxCreating && this.#waiting.length >= maxQueued) {
      throw new RetryLaterError(
        "queue-full",
        `${this.#waiting.length} creates wait already, the limit (--max-queued ${maxQueued}); ` +
          "retry in a few seconds or ask the operator to raise it",
        503,
        5,
      );
    }
    const ticket = new Ticket(start, abandon);
    this.#tickets.set(ticket.id, ticket);
    this.#waiting.push(ticket);
    this.#pump();
    this.#sweepLater();
    return ticket;
  }

  /** The ticket `id` (hex); KeepError `ticket-unknown` (404) if unknown or given up. */
  get(id: string): Ticket<T> {
    const ticket = this.#tickets.get(id);
    if (ticket === undefined) {
      throw new KeepError(
        "ticket-unknown",
        `No queued create "${id.slice(0, 40)}" (it was not polled for ${
          this.#limits.abandonMs / 1000
        } s or already answered); create the keep again`,
        404,
      );
    }
    return ticket;
  }

  /** Creates ahead of `ticket` in the queue (0 once it runs). */
  ahead(ticket: Ticket<T>): number {
    const at = this.#waiting.indexOf(ticket);
    return at < 0 ? 0 : at;
  }

  /** Forgets `ticket` once its outcome was answered. */
  collect(ticket: Ticket<T>): void {
    this.#tickets.delete(ticket.id);
  }

  /** Ends every waiting create with `shutting-down` (keepmgr is stopping) and stops sweeping. */
  close(): void {
    const error = new KeepError(
      "shutting-down",
      "The keepmgr is shutting down; try another host",
      503,
    );
    for (const ticket of this.#waiting.splice(0)) ticket.cancel(error);
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #pump(): void {
    while (this.#creating < this.#limits.maxCreating && this.#waiting.length > 0) {
      const ticket = this.#waiting.shift()!;
      this.#creating++;
      ticket.run(() => {
        this.#creating--;
        this.#pump();
      });
    }
  }

  /** Gives up tickets nobody polls: their clients are gone. */
  sweep(now = performance.now()): void {
    for (const ticket of this.#tickets.values()) {
      if (ticket.holders > 0 || ticket.state === "creating") continue;
      if (now - ticket.seen < this.#limits.abandonMs) continue;
      this.#tickets.delete(ticket.id);
      const at = this.#waiting.indexOf(ticket);
      if (at >= 0) this.#waiting.splice(at, 1);
      ticket.abandon();
    }
    if (this.#tickets.size === 0 && this.#sweeper !== undefined) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  #sweepLater(): void {
    if (this.#sweeper !== undefined) return;
    this.#sweeper = setInterval(() => this.sweep(), Math.min(5_000, this.#limits.abandonMs));
    Deno.unrefTimer(this.#sweeper as unknown as number);
  }
}
