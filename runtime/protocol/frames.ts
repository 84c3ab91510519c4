/**
 * Length-prefixed CBOR frames, the transport between keepmgr, keepldr and
 * wasmldr (spec/protocol.md, "Frames"): a 4-byte big-endian length, then
 * that many bytes holding one deterministic CBOR map. Frames travel over a
 * child's stdin/stdout or a unix socket, as web streams.
 *
 * @module
 */
import { CborError, decodeCbor, encodeCbor, MAX_CBOR_SIZE } from "./cbor.ts";
import { EnarxError } from "../errors.ts";

/** The largest frame payload accepted by default: 64 MiB. */
export const MAX_FRAME_SIZE = MAX_CBOR_SIZE;

/** Options of {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Largest payload accepted, in bytes (default {@link MAX_FRAME_SIZE}). */
  maxSize?: number;
  /** Names the peer in error messages, e.g. `keepldr` (default `peer`). */
  peer?: string;
}

/** Returns the frame bytes (length prefix and CBOR) for a value. */
export function encodeFrame(value: unknown): Uint8Array {
  return framePayload(encodeCbor(value));
}

/** Returns a frame holding already-encoded CBOR `payload` (used when relaying). */
export function framePayload(payload: Uint8Array): Uint8Array {
  if (payload.length > 0xffffffff) {
    throw new CborError("cbor-too-large", `A frame of ${payload.length} bytes cannot be sent`);
  }
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length, false);
  frame.set(payload, 4);
  return frame;
}

/**
 * Reads frames from a byte stream. `readPayload()` returns a frame's raw CBOR
 * (for relays), `read()` its decoded value; both return `null` at a clean end
 * of stream (between frames). A stream that ends inside a frame, a frame over
 * `maxSize`, or an empty or malformed payload throws an EnarxError.
 */
export class FrameReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer: Uint8Array = new Uint8Array(0);
  #maxSize: number;
  #peer: string;
  #closed = false;

  /** Takes the stream's reader; {@link close} releases and cancels it. */
  constructor(stream: ReadableStream<Uint8Array>, options: FrameReaderOptions = {}) {
    this.#reader = stream.getReader();
    this.#maxSize = options.maxSize ?? MAX_FRAME_SIZE;
    this.#peer = options.peer ?? "peer";
  }

  /** Reads one frame's CBOR payload, or `null` at the end of the stream. */
  async readPayload(): Promise<Uint8Array | null> {
    const head = await this.#fill(4, true);
    if (head === null) return null;
    const length = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, false);
    if (length > this.#maxSize) {
      throw new CborError(
        "cbor-too-large",
        `The ${this.#peer} sent a frame of ${length} bytes, over the limit of ${this.#maxSize}`,
      );
    }
    if (length === 0) {
      throw new CborError("cbor-malformed", `The ${this.#peer} sent an empty frame`);
    }
    const body = await this.#fill(4 + length, false);
    const payload = body!.slice(4, 4 + length);
    this.#buffer = body!.slice(4 + length);
    return payload;
  }

  /** Reads and strictly decodes one frame, or returns `null` at the end of the stream. */
  async read(): Promise<unknown | null> {
    const payload = await this.readPayload();
    if (payload === null) return null;
    return decodeCbor(payload, { maxSize: this.#maxSize, what: `frame from the ${this.#peer}` });
  }

  /** Yields decoded frames until the end of the stream. */
  async *[Symbol.asyncIterator](): AsyncGenerator<unknown> {
    while (true) {
      const value = await this.read();
      if (value === null) return;
      yield value;
    }
  }

  /** Cancels the underlying stream; pending reads end. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader.cancel().catch(() => {});
    try {
      this.#reader.releaseLock();
    } catch { /* a read was pending */ }
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Buffers at least `n` bytes and returns them flattened; `null` if the
   * stream ends cleanly before any byte. Chunks are joined once, when enough
   * have arrived, so a large frame costs one copy.
   */
  async #fill(n: number, atBoundary: boolean): Promise<Uint8Array | null> {
    if (this.#buffer.length >= n) return this.#buffer;
    const chunks = [this.#buffer];
    let length = this.#buffer.length;
    while (length < n) {
      if (this.#closed) throw new EnarxError("closed", `The frame reader is closed`);
      const { value, done } = await this.#reader.read();
      if (done) {
        if (atBoundary && length === 0) return null;
        throw new EnarxError(
          "protocol",
          `The ${this.#peer} closed its stream inside a frame (${length} of ${n} bytes)`,
          { exit: "protocol" },
        );
      }
      if (value.length === 0) continue;
      chunks.push(value);
      length += value.length;
    }
    const joined = new Uint8Array(length);
    let at = 0;
    for (const chunk of chunks) {
      joined.set(chunk, at);
      at += chunk.length;
    }
    this.#buffer = joined;
    return joined;
  }
}

/**
 * Writes frames to a byte stream, one whole frame at a time even when
 * several callers write at once.
 */
export class FrameWriter {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  /** Takes the stream's writer; {@link close} closes the stream. */
  constructor(stream: WritableStream<Uint8Array>) {
    this.#writer = stream.getWriter();
  }

  /** Encodes `value` as deterministic CBOR and writes it as one frame. */
  write(value: unknown): Promise<void> {
    return this.writePayload(encodeCbor(value));
  }

  /** Writes already-encoded CBOR as one frame (used when relaying). */
  writePayload(payload: Uint8Array): Promise<void> {
    const frame = framePayload(payload);
    const next = this.#queue.then(() => {
      if (this.#closed) throw new EnarxError("closed", "The frame writer is closed");
      return this.#writer.write(frame);
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  /** Waits for pending frames, then closes the stream. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#queue;
    this.#closed = true;
    await this.#writer.close().catch(() => {});
  }

  /** Closes without waiting (errors ignored). */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.abort().catch(() => {});
  }
}
