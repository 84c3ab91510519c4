/**
 * keepmgr's limits on what one client can hold (spec/protocol.md, "Limits and
 * timeouts"): connections, time to finish the TLS handshake and the request
 * head, head size and header count, body size, and the rate of keep creation
 * per client address. Creates past the rate are 429 `rate-limited` with
 * `retry-after`; how many are created at once, and how many may wait, is the
 * create queue's (create_queue.ts).
 *
 * @module
 */
import { KeepError } from "../keep_table.ts";

/** Connection and request limits of keepmgr's HTTPS server. */
export interface ServerLimits {
  /** Connections open at once; more are closed on accept. */
  maxConnections: number;
  /** Time from accept to the end of the request head (TLS handshake included), ms. */
  headerTimeoutMs: number;
  /** Time to receive the body once the head arrived, ms. */
  bodyTimeoutMs: number;
  /** Time to write the response, ms. */
  writeTimeoutMs: number;
  /** Bytes of the request line and headers. */
  maxHeadBytes: number;
  /** Header fields. */
  maxHeaders: number;
  /** Bytes of any request body (each endpoint has its own, smaller limit). */
  maxBodyBytes: number;
}

/** The defaults, documented in spec/protocol.md. */
export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxConnections: 256,
  headerTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  writeTimeoutMs: 10_000,
  maxHeadBytes: 16 * 1024,
  maxHeaders: 64,
  maxBodyBytes: 64 * 1024,
};

/** Limits of keep creation. */
export interface CreateLimits {
  /** Creates one client address may start in a burst. */
  burst: number;
  /** Creates per second that refill a client's burst. */
  perSecond: number;
}

/** The defaults, documented in spec/protocol.md. */
export const DEFAULT_CREATE_LIMITS: CreateLimits = { burst: 256, perSecond: 4 };

/** A refused create: 429 `rate-limited` or 503 `queue-full`, with the seconds to wait. */
export class RetryLaterError extends KeepError {
  /** Seconds the client should wait (the `retry-after` header). */
  readonly retryAfter: number;
  /** Makes the error. */
  constructor(code: string, message: string, status: number, retryAfter: number) {
    super(code, message, status);
    this.name = "RetryLaterError";
    this.retryAfter = retryAfter;
  }
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Admits keep creates: a token bucket per client address. */
export class CreateGate {
  readonly #limits: CreateLimits;
  readonly #buckets = new Map<string, Bucket>();

  /** Makes a gate with `limits`. */
  constructor(limits: CreateLimits = DEFAULT_CREATE_LIMITS) {
    this.#limits = limits;
  }

  /** Takes one create for `client` (an address) or throws RetryLaterError `rate-limited`. */
  admit(client: string, now = performance.now()): void {
    const { burst, perSecond } = this.#limits;
    const bucket = this.#refill(client, now);
    if (bucket.tokens < 1) {
      const wait = Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
      throw new RetryLaterError(
        "rate-limited",
        `Too many keeps created from ${client} (at most ${burst} at once, then ${perSecond} ` +
          `a second); retry after ${wait} s`,
        429,
        wait,
      );
    }
    bucket.tokens -= 1;
  }

  #refill(client: string, now: number): Bucket {
    const { burst, perSecond } = this.#limits;
    let bucket = this.#buckets.get(client);
    if (bucket === undefined) {
      if (this.#buckets.size >= 4096) this.#forgetFull(now);
      bucket = { tokens: burst, at: now };
      this.#buckets.set(client, bucket);
    }
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    return bucket;
  }

  /** Drops buckets that have refilled (they hold nothing a new one would not). */
  #forgetFull(now: number): void {
    const { burst, perSecond } = this.#limits;
    for (const [client, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * perSecond >= burst) {
        this.#buckets.delete(client);
      }
    }
  }
}
