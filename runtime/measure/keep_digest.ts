/**
 * The measurement of a keep without a TEE (nil, kvm): a SHA-384 over a
 * domain-separated list of its inputs' SHA-256 digests, each named by its
 * role. spec/measurement.md defines the encoding:
 *
 *   SHA-384(label || for each input, in order:
 *           u16be(len(role)) || role || SHA-256(input bytes))
 *
 * with label `enarx/v1 nil-keep-measurement\0` or
 * `enarx/v1 kvm-keep-measurement\0`. An auditor recomputes it from the
 * `inputs` that `enarx measure --json` prints.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import { MeasureInputError } from "./errors.ts";
import { cachedFileSha256 } from "./file_digest_cache.ts";

/** One measured input: its role, where it was read, and the SHA-256 of its bytes. */
export interface MeasuredInput {
  /** What the input is, e.g. `kernel` or `app/cli/wasmldr.ts`; part of the digest. */
  role: string;
  /** Where it was read (not part of the digest); undefined for inline bytes. */
  path?: string;
  /** SHA-256 of its bytes (32 bytes). */
  sha256: Uint8Array;
}

/** The backends whose keeps this module measures. */
export type KeepDigestKind = "nil" | "kvm";

/** The label that starts the digest of each kind. */
export const KEEP_DIGEST_LABELS: Readonly<Record<KeepDigestKind, string>> = {
  nil: "enarx/v1 nil-keep-measurement\0",
  kvm: "enarx/v1 kvm-keep-measurement\0",
};

/** SHA-256 of `bytes`. */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
}

/** Options of {@link measureFile}. */
export interface MeasureFileOptions {
  /**
   * A file-digest cache directory (runtime/measure/file_digest_cache.ts):
   * the file's SHA-256 is taken from there while the file's identity is
   * unchanged. Undefined reads and hashes the file.
   */
  digestCache?: string;
}

/** Reads `path` (or its cached digest) and returns it as a {@link MeasuredInput} named `role`. */
export async function measureFile(
  role: string,
  path: string,
  options: MeasureFileOptions = {},
): Promise<MeasuredInput> {
  if (options.digestCache === undefined) {
    return { role, path, sha256: await sha256(await Deno.readFile(path)) };
  }
  return { role, path, sha256: await cachedFileSha256(path, { cacheDir: options.digestCache }) };
}

/** Computes the 48-byte keep measurement of `inputs`, in the order given. */
export async function keepDigest(
  kind: KeepDigestKind,
  inputs: readonly MeasuredInput[],
): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [encoder.encode(KEEP_DIGEST_LABELS[kind])];
  for (const input of inputs) {
    const role = encoder.encode(input.role);
    if (role.length > 0xffff || input.sha256.length !== 32) {
      throw new MeasureInputError(`The measured input "${input.role}" is malformed`);
    }
    parts.push(new Uint8Array([role.length >> 8, role.length & 0xff]), role, input.sha256);
  }
  const digest = await crypto.subtle.digest("SHA-384", concatBytes(...parts) as BufferSource);
  return new Uint8Array(digest);
}

/** What a kvm keep boots: its kernel, initrd and command line. */
export interface KvmBootInputs {
  /** The kernel file (bzImage). */
  kernel: string;
  /** The initrd file. */
  initrd: string;
  /** The kernel command line. */
  append: string;
}

/**
 * The inputs of a kvm keep's measurement, in digest order: `kernel`,
 * `initrd`, `cmdline` (its UTF-8 bytes, no terminating NUL).
 */
export async function kvmInputs(boot: KvmBootInputs): Promise<MeasuredInput[]> {
  return [
    await measureFile("kernel", boot.kernel),
    await measureFile("initrd", boot.initrd),
    { role: "cmdline", sha256: await sha256(new TextEncoder().encode(boot.append)) },
  ];
}
