/**
 * Who may do what on keepmgr's API (docs/security.md, "The keepmgr API"):
 * the operator holds a bearer token kept in a file of the state directory
 * (made on first start, mode 0600 in a 0700 directory); the deployer who
 * created a keep holds that keep's capability (32 random bytes returned at
 * create time). Both travel as `authorization: Bearer <hex>`, and are
 * compared in constant time.
 *
 * @module
 */
import { EnarxError } from "../../errors.ts";
import { bytesEqualConstantTime } from "../../bytes.ts";
import { KeepError } from "../keep_table.ts";

/** Bytes of a generated operator token and of a keep capability. */
export const SECRET_BYTES = 32;

/** The file name of the operator token in the state directory. */
export const TOKEN_FILE_NAME = "token";

/** The operator token and where it is kept. */
export interface OperatorToken {
  /** The token as sent in `authorization: Bearer <token>`. */
  token: string;
  /** The file holding it. */
  file: string;
  /** True when this call made it. */
  generated: boolean;
}

/**
 * Reads the operator token from `file` (default `<stateDir>/token`), or makes
 * one there: 32 random bytes as hex, written to a private temporary file
 * (mode 0600 from its creation, so there is no moment at a wider mode) and
 * linked into place, so that a reader sees the whole token or no file. The
 * state directory is made, or narrowed to, mode 0700.
 */
export async function loadOrCreateToken(
  stateDir: string,
  options: { file?: string } = {},
): Promise<OperatorToken> {
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(stateDir, 0o700);
  const file = options.file ?? `${stateDir}/${TOKEN_FILE_NAME}`;
  let generated = false;
  if (!(await exists(file))) {
    const dir = file.slice(0, Math.max(file.lastIndexOf("/"), 0)) || ".";
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const token = crypto.getRandomValues(new Uint8Array(SECRET_BYTES)).toHex();
    const temp = `${file}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(temp, token + "\n", { createNew: true, mode: 0o600 });
      await Deno.link(temp, file); // fails if another keepmgr made it meanwhile: use theirs
      generated = true;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw tokenError(file, error);
    } finally {
      await Deno.remove(temp).catch(() => {});
    }
  }
  return { token: await readToken(file), file, generated };
}

/** Reads a token file (its first line), refusing an empty or short one. */
export async function readToken(file: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    throw tokenError(file, error);
  }
  const token = text.split("\n")[0].trim();
  if (token.length < 16 || !/^[\x21-\x7e]+$/.test(token)) {
    throw new EnarxError(
      "token-invalid",
      `The token file "${file}" holds no token (16 or more printable characters on its first line)`,
      { exit: "config" },
    );
  }
  return token;
}

function tokenError(file: string, error: unknown): EnarxError {
  return new EnarxError(
    "token-file",
    `Cannot read or make the token file "${file}": ${
      error instanceof Error ? error.message : error
    }; check the path and its permissions`,
    { exit: error instanceof Deno.errors.NotFound ? "noInput" : "permission", cause: error },
  );
}

/** A fresh keep capability (32 random bytes). */
export function newCapability(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
}

/** The bearer credential of a request, or undefined. */
export function bearerOf(request: Request): string | undefined {
  const header = request.headers.get("authorization");
  const m = header === null ? null : /^Bearer +(\S+) *$/i.exec(header);
  return m === null ? undefined : m[1];
}

/** True when `presented` equals `expected`, in time independent of where they differ. */
export function credentialMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const encoder = new TextEncoder();
  return bytesEqualConstantTime(encoder.encode(presented), encoder.encode(expected));
}

/** The 401 error of a request without the credential an endpoint needs. */
export function unauthorized(what: string): KeepError {
  return new KeepError(
    "unauthorized",
    `${what} needs authorization: Bearer <the operator's token, or the keep's capability>`,
    401,
  );
}

/**
 * The authority of one keepmgr: its operator token, and the capability of
 * each keep created through it (held here, keyed by keep id, so that the keep
 * table need not know about credentials).
 */
export class KeepmgrAuth {
  readonly #token: string;
  readonly #capabilities = new Map<string, string>();

  /** Makes the authority of the operator holding `token`. */
  constructor(token: string) {
    this.#token = token;
  }

  /** True when the request carries the operator token. */
  isOperator(request: Request): boolean {
    return credentialMatches(bearerOf(request), this.#token);
  }

  /** Throws 401 `unauthorized` unless the request carries the operator token. */
  requireOperator(request: Request, what: string): void {
    if (!this.isOperator(request)) throw unauthorized(what);
  }

  /** Throws 401 unless the request carries the operator token or keep `id`'s capability. */
  requireKeep(request: Request, id: string, what: string): void {
    if (this.isOperator(request)) return;
    const capability = this.#capabilities.get(id);
    if (capability === undefined || !credentialMatches(bearerOf(request), capability)) {
      throw unauthorized(what);
    }
  }

  /** Makes and remembers the capability of a new keep; returns its bytes. */
  grant(id: string): Uint8Array {
    const capability = newCapability();
    this.#capabilities.set(id, capability.toHex());
    return capability;
  }

  /** Forgets the capabilities of keeps not in `alive` (keeps the table forgot). */
  retain(alive: Iterable<string>): void {
    const keep = new Set(alive);
    for (const id of this.#capabilities.keys()) if (!keep.has(id)) this.#capabilities.delete(id);
  }

  /** Forgets keep `id`'s capability. */
  revoke(id: string): void {
    this.#capabilities.delete(id);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
