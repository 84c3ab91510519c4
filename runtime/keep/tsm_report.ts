/**
 * configfs-tsm attestation reports (Linux >= 6.7,
 * `Documentation/ABI/testing/configfs-tsm-report`): plain files under
 * `/sys/kernel/config/tsm/report/<name>/`. Make a directory, write up to 64
 * bytes of report data to `inblob` (and `privlevel` for SNP), read `outblob`
 * (the SNP report or TDX quote), `auxblob` (SNP certificate table, may be
 * empty), `provider`, and `generation` before and after to detect another
 * writer; then remove the directory.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

/** The report directory's parent. */
export const TSM_REPORT_ROOT = "/sys/kernel/config/tsm/report";

/** What configfs-tsm returned. */
export interface TsmReport {
  /** `provider`: `sev_guest` or `tdx_guest`. */
  provider: string;
  /** `outblob`: the raw SNP ATTESTATION_REPORT, or the TDX quote. */
  outblob: Uint8Array;
  /** `auxblob`: the SNP certificate table; null when empty or not offered. */
  auxblob: Uint8Array | null;
  /** `generation` after the read. */
  generation: number;
}

/** A configfs-tsm failure, with the path and the error's name. */
export class TsmReportError extends EnarxError {
  /** Makes an error; `exit` defaults to io. */
  constructor(
    code: string,
    message: string,
    options: { exit?: "io" | "unavailable" | "permission" | "usage"; cause?: unknown } = {},
  ) {
    super(code, message, { exit: options.exit ?? "io", cause: options.cause });
    this.name = "TsmReportError";
  }
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" ? code : error instanceof Error ? error.name : String(error);
}

async function readTrimmed(path: string): Promise<string> {
  return (await Deno.readTextFile(path)).trim();
}

function ioError(action: string, path: string, error: unknown): TsmReportError {
  const code = errorCode(error);
  if (code === "EACCES" || code === "EPERM" || error instanceof Deno.errors.PermissionDenied) {
    return new TsmReportError(
      "tsm-permission",
      `Cannot ${action} "${path}": permission denied; run as root`,
      { exit: "permission", cause: error },
    );
  }
  return new TsmReportError("tsm-io", `Cannot ${action} "${path}": ${code}`, { cause: error });
}

/**
 * Fetches one report through configfs-tsm. `inblob` is at most 64 bytes and
 * is zero-padded to 64 (the sev-guest provider accepts exactly 64).
 * `privlevel` is the SNP VMPL (0–3); left unset it is the kernel's default.
 * Retries up to three times if another writer changes `generation`.
 */
export async function fetchTsmReport(
  inblob: Uint8Array,
  options: { privlevel?: number; root?: string } = {},
): Promise<TsmReport> {
  if (inblob.length > 64) {
    throw new TsmReportError(
      "tsm-inblob-size",
      `Report data is ${inblob.length} bytes; configfs-tsm takes at most 64`,
      { exit: "usage" },
    );
  }
  const root = options.root ?? TSM_REPORT_ROOT;
  try {
    await Deno.stat(root);
  } catch (error) {
    throw new TsmReportError(
      "tsm-missing",
      `Cannot open "${root}": ${
        errorCode(error) === "ENOENT" ? "no such directory" : errorCode(error)
      }; this host has no configfs-tsm ` +
        `(needs an SEV-SNP or TDX guest on Linux >= 6.7)`,
      { exit: "unavailable", cause: error },
    );
  }
  const data = new Uint8Array(64);
  data.set(inblob);
  const dir = `${root}/enarx-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.mkdir(dir);
  } catch (error) {
    throw ioError("create", dir, error);
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (options.privlevel !== undefined) {
        await write(`${dir}/privlevel`, new TextEncoder().encode(`${options.privlevel}\n`));
      }
      await write(`${dir}/inblob`, data);
      const before = await readGeneration(dir);
      const outblob = await read(`${dir}/outblob`);
      const auxblob = await readOptional(`${dir}/auxblob`);
      const provider = await readTrimmed(`${dir}/provider`).catch((e) => {
        throw ioError("read", `${dir}/provider`, e);
      });
      const after = await readGeneration(dir);
      if (before !== after) continue;
      return {
        provider,
        outblob,
        auxblob: auxblob === null || auxblob.length === 0 ? null : auxblob,
        generation: after,
      };
    }
    throw new TsmReportError(
      "tsm-busy",
      `Another program kept writing to "${dir}"; retry when it is done`,
    );
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

async function write(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await Deno.writeFile(path, bytes);
  } catch (error) {
    throw ioError("write", path, error);
  }
}

async function read(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw ioError("read", path, error);
  }
}

async function readOptional(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    // auxblob is absent for providers without certificates; ENOENT/EOPNOTSUPP/ENXIO mean "none".
    const code = errorCode(error);
    if (code === "ENOENT" || code === "EOPNOTSUPP" || code === "ENXIO" || code === "NotFound") {
      return null;
    }
    throw ioError("read", path, error);
  }
}

async function readGeneration(dir: string): Promise<number> {
  const path = `${dir}/generation`;
  let text: string;
  try {
    text = await readTrimmed(path);
  } catch (error) {
    throw ioError("read", path, error);
  }
  if (!/^\d+$/.test(text)) {
    throw new TsmReportError("tsm-io", `"${path}" holds "${text}", not a generation number`);
  }
  return Number(text);
}
