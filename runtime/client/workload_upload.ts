/**
 * The body of POST /v1/workload (spec/protocol.md, "workload-request") as a
 * stream: the module is read from its file a piece at a time while it is
 * sent, so a large module never sits whole in the client's memory, and the
 * body's exact length is known before anything is sent, so a module over the
 * keep's upload limit is refused before a keep is even created.
 *
 * Deterministic CBOR sorts map keys by their encoded bytes; `module` sorts
 * last of the request's six keys, so the body is the other five fields as a
 * six-entry map, then the `module` key and the module as one byte string.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { encodeCbor } from "../protocol/cbor.ts";
import { MAX_WORKLOAD_REQUEST_SIZE } from "../protocol/messages.ts";
import { concatBytes } from "../bytes.ts";
import type { Http1StreamedBody } from "./http1_client.ts";

/** A module read from a file while it is uploaded. */
export interface ModuleFile {
  /** The file's path. */
  path: string;
}

/** What {@link workloadUploadBody} sends. */
export interface WorkloadUpload {
  /** The module's bytes, or its file. */
  module: Uint8Array | ModuleFile;
  /** Enarx.toml text, or null. */
  config: string | null;
  /** Arguments after the program name. */
  args: string[];
  /** Environment variables. */
  env: Record<string, string>;
  /** Standard input. */
  stdin: Uint8Array;
  /** Run detached (sent only when true). */
  detach?: boolean;
  /** The keep's service certificate chain, DER (sent only when given). */
  chain?: Uint8Array[];
}

/** A request body of known length, produced piece by piece. */
export type StreamedBody = Http1StreamedBody;

/** Bytes read from a module file at a time. */
const READ_SIZE = 256 * 1024;

/**
 * The workload request body for `workload`. A module file is only looked at
 * (its size) here; it is read when the body is iterated. An unreadable file
 * is EnarxError `input-unreadable` (exit 66).
 */
export async function workloadUploadBody(workload: WorkloadUpload): Promise<StreamedBody> {
  const { module } = workload;
  const moduleSize = module instanceof Uint8Array ? module.length : await fileSize(module.path);
  const rest = encodeCbor({
    v: 1,
    config: workload.config,
    args: workload.args,
    env: workload.env,
    stdin: workload.stdin,
    ...(workload.detach === true ? { detach: true } : {}),
    ...(workload.chain === undefined ? {} : { chain: workload.chain }),
  });
  // A five-entry map (0xa5) becomes a six-entry one (0xa6) with `module`
  // last ("detach" and "chain" sort before it too).
  const head = rest.slice();
  head[0] = rest[0] + 1;
  const key = encodeCbor("module");
  const prefix = concatBytes(head, key, byteStringHeader(moduleSize));
  return {
    length: prefix.length + moduleSize,
    async *chunks() {
      yield prefix;
      if (module instanceof Uint8Array) {
        if (module.length > 0) yield module;
        return;
      }
      yield* fileChunks(module.path, moduleSize);
    },
  };
}

/**
 * Refuses a body over `limit` (default the protocol's
 * {@link MAX_WORKLOAD_REQUEST_SIZE}): EnarxError `workload-too-large`, exit 65.
 */
export function checkUploadSize(body: StreamedBody, limit = MAX_WORKLOAD_REQUEST_SIZE): void {
  if (body.length <= limit) return;
  throw new EnarxError(
    "workload-too-large",
    `The workload request would be ${body.length} bytes, over a keep's upload limit of ${
      describeBytes(limit)
    }; send a smaller module (or less stdin), e.g. one built with optimisation and without debug info`,
    { exit: "dataError" },
  );
}

/** `64 MiB (67108864 bytes)`. */
export function describeBytes(bytes: number): string {
  const mib = bytes / (1 << 20);
  return Number.isInteger(mib) ? `${mib} MiB (${bytes} bytes)` : `${bytes} bytes`;
}

/** The CBOR head of a byte string of `length` bytes (major type 2, RFC 8949 §3.1). */
function byteStringHeader(length: number): Uint8Array {
  if (length < 24) return new Uint8Array([0x40 + length]);
  if (length < 0x100) return new Uint8Array([0x58, length]);
  if (length < 0x10000) return new Uint8Array([0x59, length >> 8, length & 0xff]);
  const out = new Uint8Array(length < 2 ** 32 ? 5 : 9);
  const view = new DataView(out.buffer);
  if (out.length === 5) {
    out[0] = 0x5a;
    view.setUint32(1, length);
  } else {
    out[0] = 0x5b;
    view.setBigUint64(1, BigInt(length));
  }
  return out;
}

async function fileSize(path: string): Promise<number> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new Error("not a regular file");
    return info.size;
  } catch (cause) {
    throw unreadable(path, cause);
  }
}

/** Reads exactly `size` bytes of `path`; a file that changed size meanwhile is an error. */
async function* fileChunks(path: string, size: number): AsyncGenerator<Uint8Array> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (cause) {
    throw unreadable(path, cause);
  }
  try {
    let left = size;
    while (left > 0) {
      const buf = new Uint8Array(Math.min(READ_SIZE, left));
      const n = await file.read(buf);
      if (n === null) throw unreadable(path, new Error(`it shrank while being sent`));
      left -= n;
      yield buf.subarray(0, n);
    }
  } finally {
    file.close();
  }
}

function unreadable(path: string, cause: unknown): EnarxError {
  return new EnarxError(
    "input-unreadable",
    `Cannot read the module "${path}": ${cause instanceof Error ? cause.message : cause}`,
    { exit: "noInput", cause },
  );
}
