/**
 * Reading an HTTP request body with a size limit, for the two HTTPS servers
 * of the deploy protocol (keepmgr's `/v1` API and wasmldr's upload).
 *
 * @module
 */
import { CborError } from "./cbor.ts";

/** Options of {@link readLimitedBody}. */
export interface BodyLimitOptions {
  /** The most bytes accepted. */
  limit: number;
  /** Names the body in the error, e.g. "The request body" (the default). */
  what?: string;
  /** Says what to do about a body that is too large; appended to the error. */
  remedy?: string;
}

/**
 * Reads a whole request body of at most `limit` bytes. A declared or actual
 * size past the limit is CborError `cbor-too-large` (exit dataError; HTTP 413),
 * and the rest of the body is not read.
 */
export async function readLimitedBody(
  request: Request,
  options: BodyLimitOptions,
): Promise<Uint8Array> {
  const { limit } = options;
  const tooLarge = (n: number | string) =>
    new CborError(
      "cbor-too-large",
      `${options.what ?? "The request body"} is ${n} bytes, over the limit of ${limit} bytes` +
        (options.remedy === undefined ? "" : `; ${options.remedy}`),
    );
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    await request.body?.cancel().catch(() => {});
    throw tooLarge(declared);
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = request.body.getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(`over ${limit}`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
