/**
 * The last output of a detached workload, as keepmgr keeps it for `GET
 * /v1/keeps/{id}/logs`: chunks tagged with their stream and their offset in
 * the whole output, at most {@link OUTPUT_LOG_LIMIT} bytes (older chunks are
 * dropped, the oldest kept one cut at the front). Offsets let a follower ask
 * only for what it has not seen.
 *
 * @module
 */
import type { OutputChunk } from "../../protocol/messages.ts";

/** Bytes of output kept per keep. */
export const OUTPUT_LOG_LIMIT = 256 * 1024;

/** One keep's recent output. */
export class OutputLog {
  readonly #limit: number;
  #chunks: OutputChunk[] = [];
  #size = 0;
  #end = 0;

  /** Keeps at most `limit` bytes (default {@link OUTPUT_LOG_LIMIT}). */
  constructor(limit = OUTPUT_LOG_LIMIT) {
    this.#limit = limit;
  }

  /** The offset just past the last byte written. */
  get end(): number {
    return this.#end;
  }

  /** Adds `data` (copied) from `stream`, dropping the oldest output past the limit. */
  append(stream: "stdout" | "stderr", data: Uint8Array): void {
    if (data.length === 0) return;
    const kept = data.length > this.#limit ? data.subarray(data.length - this.#limit) : data;
    this.#chunks.push({ stream, at: this.#end + data.length - kept.length, data: kept.slice() });
    this.#size += kept.length;
    this.#end += data.length;
    while (this.#size > this.#limit) {
      const first = this.#chunks[0];
      const over = this.#size - this.#limit;
      if (first.data.length <= over) {
        this.#chunks.shift();
        this.#size -= first.data.length;
      } else {
        this.#chunks[0] = { ...first, at: first.at + over, data: first.data.slice(over) };
        this.#size -= over;
      }
    }
  }

  /** The chunks from offset `from` on (what is still kept of them). */
  since(from = 0): OutputChunk[] {
    const out: OutputChunk[] = [];
    for (const chunk of this.#chunks) {
      const stop = chunk.at + chunk.data.length;
      if (stop <= from) continue;
      out.push(
        chunk.at >= from
          ? chunk
          : { ...chunk, at: from, data: chunk.data.subarray(from - chunk.at) },
      );
    }
    return out;
  }
}
