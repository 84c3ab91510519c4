/**
 * `enarx attest verify EVIDENCE`: verifies SEV-SNP, TDX, SGX or Nitro
 * evidence (raw, or an evidence bundle), or a legacy SEV platform
 * certificate chain (a directory of pdh.cert, pek.cert, oca.cert and
 * cek.cert), against a policy and prints the
 * verdict, every check and the claims. Exit status 0 only when every check
 * passes, 1 when one fails, 65 when the evidence cannot be parsed. The JSON
 * output (`--json`) is specified in spec/attestation-json.md.
 *
 * @module
 */
import { EnarxError, UsageError } from "../runtime/errors.ts";
import {
  detectEvidence,
  type EvidenceFormat,
  MalformedEvidenceError,
  readPolicyFile,
  splitCertificateInputs,
  type VerificationResult,
  verifyEvidence,
} from "../runtime/attestation/mod.ts";
import {
  MalformedCollateralError,
  MAX_COLLATERAL_BYTES,
  parseIntelCollateral,
} from "../runtime/attestation/intel/intel_collateral.ts";
import { crlDerList, parseCrl } from "../runtime/attestation/intel/intel_crl.ts";
import { type Command, parseCommandArgs, printErr, printJson, printOut } from "./_command.ts";

const HELP = `Usage: enarx attest verify EVIDENCE [OPTIONS]

Verify attestation evidence: an SEV-SNP report, a TDX or SGX quote, an AWS
Nitro document, or an enarx evidence bundle (CBOR). EVIDENCE is a file, or
"-" for standard input. For a legacy SEV platform certificate chain
(--format sev), EVIDENCE is a directory with pdh.cert, pek.cert, oca.cert
and cek.cert (and optionally ask.cert and ark.cert, AMD's format), or a file
of PDH‖PEK‖OCA‖CEK; AMD's ASKs and ARKs of every generation are built in.

Options:
  --format FORMAT   snp, tdx, sgx, nitro, sev or auto (default: auto)
  --certs PATH      Certificates: a DER or PEM file (a PEM may hold a chain),
                    an SNP certificate table, or a directory of such files
                    (other files in it are skipped).
                    For SNP, the VCEK or VLEK is needed; AMD's ASK/ASVK and
                    ARK are built in. For sev, SEV certificates and an ASK
                    or ARK in AMD's format. May be given more than once.
  --policy FILE     A TOML policy (see spec/attestation-json.md). Without one,
                    debug and migration are refused and no simulated root is
                    trusted.
  --at TIME         Verify as of TIME (ISO 8601, e.g. 2025-06-01 or
                    2025-06-01T12:00:00Z) instead of now
  --crl FILE        An AMD CRL, or an Intel PCK or root CRL (DER or PEM);
                    revoked certificates fail. May be given more than once.
  --collateral PATH Intel collateral for TDX and SGX quotes: a TCB Info or
                    QE Identity JSON file as Intel's PCS serves it, a CRL, or
                    a directory of such files (other files in it are
                    skipped). Adds the tcb-info and tcb-status checks; for
                    TCB Info issued after 2025-05-21 pass a current Intel SGX
                    TCB Signing certificate with --certs. May be repeated.
  --json            Print the result as one JSON object
  -h, --help        Show this help

Exit status: 0 every check passed, 1 a check failed, 65 malformed evidence,
64 usage, 66 missing file, 78 invalid policy.
`;

const FORMATS = ["snp", "tdx", "sgx", "nitro", "sev", "auto"];

/** The files of a legacy SEV chain directory: required, then optional. */
const SEV_REQUIRED_FILES = ["pdh.cert", "pek.cert", "oca.cert", "cek.cert"];
const SEV_OPTIONAL_FILES = ["ask.cert", "ark.cert"];
/** Sizes of legacy SEV inputs: SEV certificates (0x824 each) and AMD CA certificates. */
const SEV_CA_SIZES = [832, 1600, 1664, 3200];

/** The schema name of the JSON output; bumped only on incompatible changes. */
export const ATTEST_VERIFY_SCHEMA = "enarx.attest.verify/v1";

/** Parses --at: ISO 8601 date or date-time; "now" or absent means the current time. */
export function parseAtOption(value: string | undefined, now: Date): Date {
  if (value === undefined || value === "now") return now;
  const ok = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(
    value,
  );
  const date = new Date(value);
  if (!ok || isNaN(date.getTime())) {
    throw new UsageError(
      `Invalid --at "${value}"; give an ISO 8601 time such as 2025-06-01 or 2025-06-01T12:00:00Z`,
    );
  }
  return date;
}

async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    if (path === "-") return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new EnarxError("not-found", `Cannot read ${what} "${path}": no such file`, {
        exit: "noInput",
        cause: error,
      });
    }
    if (error instanceof Deno.errors.IsADirectory) {
      throw new UsageError(`${what[0].toUpperCase()}${what.slice(1)} "${path}" is a directory`);
    }
    throw new EnarxError("io", `Cannot read ${what} "${path}": ${(error as Error).message}`, {
      exit: "io",
      cause: error,
    });
  }
}

/** Reads certificate files (a file, or every file of a directory), checking each parses. */
async function readCerts(paths: string[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const path of paths) {
    let files: string[] = [path];
    let isDirectory = false;
    try {
      if ((await Deno.stat(path)).isDirectory) {
        isDirectory = true;
        files = [];
        for await (const e of Deno.readDir(path)) {
          if (e.isFile && !e.name.startsWith(".")) {
            files.push(`${path.replace(/\/+$/, "")}/${e.name}`);
          }
        }
        files.sort();
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new EnarxError(
          "not-found",
          `Cannot read --certs "${path}": no such file or directory`,
          {
            exit: "noInput",
            cause: error,
          },
        );
      }
      throw error;
    }
    for (const file of files) {
      const bytes = await readInput(file, "the certificate file");
      try {
        splitCertificateInputs([bytes]);
      } catch (error) {
        // A directory may hold other files (the report itself, notes): skip them.
        if (isDirectory) continue;
        throw new MalformedEvidenceError(
          `The certificate file "${file}" is neither DER, PEM nor an SNP certificate table`,
          { cause: error },
        );
      }
      out.push(bytes);
    }
  }
  return out;
}

async function isDirectory(path: string): Promise<boolean> {
  if (path === "-") return false;
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Reads a legacy SEV chain directory: PDH‖PEK‖OCA‖CEK as the evidence, and
 * ask.cert / ark.cert when present.
 */
async function readSevDirectory(
  dir: string,
): Promise<{ evidence: Uint8Array; certs: Uint8Array[] }> {
  const base = dir.replace(/\/+$/, "");
  const parts: Uint8Array[] = [];
  for (const name of SEV_REQUIRED_FILES) {
    try {
      parts.push(await Deno.readFile(`${base}/${name}`));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new EnarxError(
          "not-found",
          `The SEV directory "${dir}" has no ${name}; it needs ${SEV_REQUIRED_FILES.join(", ")} ` +
            `(and optionally ${SEV_OPTIONAL_FILES.join(", ")})`,
          { exit: "noInput", cause: error },
        );
      }
      throw error;
    }
  }
  const evidence = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    evidence.set(p, offset);
    offset += p.length;
  }
  const certs: Uint8Array[] = [];
  for (const name of SEV_OPTIONAL_FILES) {
    try {
      certs.push(await Deno.readFile(`${base}/${name}`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return { evidence, certs };
}

/**
 * Reads --certs paths for a legacy SEV chain: raw SEV certificates and AMD
 * CA certificates; a directory contributes the files whose size fits.
 */
async function readSevCerts(paths: string[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const path of paths) {
    if (!(await isDirectory(path))) {
      out.push(await readInput(path, "the certificate file"));
      continue;
    }
    const files: string[] = [];
    for await (const e of Deno.readDir(path)) {
      if (e.isFile && !e.name.startsWith(".")) files.push(`${path.replace(/\/+$/, "")}/${e.name}`);
    }
    files.sort();
    for (const file of files) {
      const size = (await Deno.stat(file)).size;
      const fits = (size > 0 && size % 0x824 === 0 && size <= 8 * 0x824) ||
        SEV_CA_SIZES.includes(size);
      if (fits) out.push(await readInput(file, "the certificate file"));
    }
  }
  return out;
}

/** Whether bytes are a CRL (DER or PEM); used to sort files of a collateral directory. */
function looksLikeCrl(bytes: Uint8Array): boolean {
  try {
    return crlDerList([bytes]).every((der) => parseCrl(der, "CRL") !== undefined);
  } catch {
    return false;
  }
}

/**
 * Reads --collateral paths: JSON files (TCB Info, QE Identity) and CRLs; a
 * directory contributes the files that are either, and skips the rest.
 */
async function readCollateral(
  paths: string[],
): Promise<{ json: Uint8Array[]; crls: Uint8Array[] }> {
  const json: Uint8Array[] = [];
  const crls: Uint8Array[] = [];
  for (const path of paths) {
    let files = [path];
    let isDirectory = false;
    try {
      isDirectory = (await Deno.stat(path)).isDirectory;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new EnarxError(
          "not-found",
          `Cannot read --collateral "${path}": no such file or directory`,
          { exit: "noInput", cause: error },
        );
      }
      throw error;
    }
    if (isDirectory) {
      files = [];
      for await (const e of Deno.readDir(path)) {
        if (e.isFile && !e.name.startsWith(".")) {
          files.push(`${path.replace(/\/+$/, "")}/${e.name}`);
        }
      }
      files.sort();
    }
    for (const file of files) {
      const info = await Deno.stat(file);
      if (info.size > MAX_COLLATERAL_BYTES && isDirectory) continue;
      if (info.size > MAX_COLLATERAL_BYTES) {
        throw new MalformedCollateralError(
          `The collateral "${file}" is ${info.size} bytes, more than the ${MAX_COLLATERAL_BYTES} ` +
            `allowed; pass a TCB Info or QE Identity JSON file or a CRL`,
        );
      }
      const bytes = await readInput(file, "the collateral file");
      const first = bytes.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
      if (first === 0x7b) {
        parseIntelCollateral(bytes, file); // fail here, naming the file
        json.push(bytes);
      } else if (looksLikeCrl(bytes)) {
        crls.push(bytes);
      } else if (!isDirectory) {
        throw new MalformedCollateralError(
          `The collateral "${file}" is neither TCB Info or QE Identity JSON nor a CRL; ` +
            `pass the files Intel's PCS serves`,
        );
      }
    }
  }
  return { json, crls };
}

function claimText(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** The result as text for a person: verdict, checks, claims. */
export function formatResult(result: VerificationResult, at: Date): string {
  const lines: string[] = [];
  const verdict = result.ok ? "PASS" : "FAIL";
  lines.push(`${verdict}: ${result.format} evidence, verified as of ${at.toISOString()}`);
  if (result.simulated) {
    lines.push(
      "",
      "  !!! SIMULATED EVIDENCE: made by snp-sim, a software stand-in for the AMD !!!",
      "  !!! secure processor. It proves NOTHING about hardware: anyone can make  !!!",
      "  !!! it. Trust it only to develop and test.                              !!!",
      "",
    );
  }
  lines.push("Checks:");
  const width = Math.max(...result.checks.map((c) => c.id.length));
  for (const c of result.checks) {
    lines.push(
      `  ${c.ok ? "ok  " : "FAIL"} ${c.id.padEnd(width)}  ${c.description}${
        c.detail ? `: ${c.detail}` : ""
      }`,
    );
  }
  lines.push("Claims:");
  const keys = Object.keys(result.claims);
  const kw = Math.max(...keys.map((k) => k.length));
  for (const k of keys) lines.push(`  ${k.padEnd(kw)}  ${claimText(result.claims[k])}`);
  return lines.join("\n") + "\n";
}

/** The JSON document of `attest verify --json` (spec/attestation-json.md). */
export function resultJson(result: VerificationResult, at: Date): Record<string, unknown> {
  return {
    schema: ATTEST_VERIFY_SCHEMA,
    ok: result.ok,
    verdict: result.ok ? "pass" : "fail",
    format: result.format,
    simulated: result.simulated,
    at: at.toISOString(),
    checks: result.checks.map((c) => ({
      id: c.id,
      ok: c.ok,
      description: c.description,
      detail: c.detail ?? null,
    })),
    claims: result.claims,
  };
}

/** The `attest verify` command. */
export const command: Command = {
  name: "attest verify",
  summary: "Verify SEV-SNP, TDX, SGX, Nitro or legacy SEV evidence against a policy",
  async run(args: string[]): Promise<number> {
    const { values, positionals } = parseCommandArgs("attest verify", args, {
      options: {
        format: { type: "string" },
        certs: { type: "string", multiple: true },
        policy: { type: "string" },
        at: { type: "string" },
        crl: { type: "string", multiple: true },
        collateral: { type: "string", multiple: true },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0
          ? `Missing the EVIDENCE file; see "enarx attest verify --help"`
          : `Expected one EVIDENCE file, got ${positionals.length}; see "enarx attest verify --help"`,
      );
    }
    const format = values.format ?? "auto";
    if (!FORMATS.includes(format)) {
      throw new UsageError(`Unknown --format "${format}"; use one of ${FORMATS.join(", ")}`);
    }
    const at = parseAtOption(values.at, new Date());
    try {
      const directory = await isDirectory(positionals[0]);
      if (directory && format !== "sev" && format !== "auto") {
        throw new UsageError(
          `EVIDENCE "${positionals[0]}" is a directory, which only --format sev takes ` +
            `(pdh.cert, pek.cert, oca.cert, cek.cert)`,
        );
      }
      const sevDir = directory ? await readSevDirectory(positionals[0]) : undefined;
      const evidence = sevDir?.evidence ?? await readInput(positionals[0], "the evidence");
      let sev = directory || format === "sev";
      if (format === "auto" && !sev) {
        try {
          sev = detectEvidence(evidence).format === "sev";
        } catch {
          // verifyEvidence reports it
        }
      }
      const certs = sev
        ? [...(sevDir?.certs ?? []), ...await readSevCerts(values.certs ?? [])]
        : await readCerts(values.certs ?? []);
      const crls = await Promise.all((values.crl ?? []).map((f) => readInput(f, "the CRL")));
      const collateral = await readCollateral(values.collateral ?? []);
      crls.push(...collateral.crls);
      const policy = values.policy === undefined ? undefined : await readPolicyFile(values.policy);
      const result = await verifyEvidence(evidence, {
        format: format as EvidenceFormat | "auto",
        certs,
        crls,
        collateral: collateral.json,
        policy,
        at,
      });
      if (values.json) await printJson(resultJson(result, at));
      else await printOut(formatResult(result, at));
      if (result.simulated) {
        await printErr(
          "enarx: WARNING: this is SIMULATED evidence (snp-sim); it proves nothing about hardware\n",
        );
      }
      return result.ok ? 0 : 1;
    } catch (caught) {
      // Anything a parser throws is malformed input: one line, never a stack trace.
      const error = caught instanceof EnarxError || caught instanceof Deno.errors.PermissionDenied
        ? caught
        : new MalformedEvidenceError(
          `The evidence could not be read: ${caught instanceof Error ? caught.message : caught}`,
          { cause: caught },
        );
      if (values.json && error instanceof EnarxError) {
        await printJson({
          schema: ATTEST_VERIFY_SCHEMA,
          ok: false,
          verdict: "error",
          error: { code: error.code, message: error.message, exitStatus: error.exitStatus },
        });
      }
      throw error;
    }
  },
};
