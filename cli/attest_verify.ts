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
  claimsToJson,
  type EvidenceFormat,
  MalformedEvidenceError,
  readEvidenceInputs,
  readPolicyFile,
  TCB_NOT_EVALUATED,
  type VerificationResult,
  verifyEvidence,
} from "../runtime/attestation/mod.ts";

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
                    Without TCB Info a quote gets the check "collateral":
                    "TCB not evaluated (no collateral)", a failure only when
                    the policy says require_collateral = true (the default
                    here is false; enarx deploy's is true).
  --json            Print the result as one JSON object
  -h, --help        Show this help

Exit status: 0 every check passed, 1 a check failed, 65 malformed evidence,
64 usage, 66 missing file, 78 invalid policy.
`;

const FORMATS = ["snp", "tdx", "sgx", "nitro", "sev", "auto"];

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
  const claims = claimsToJson(result.claims);
  const keys = Object.keys(claims);
  const kw = Math.max(...keys.map((k) => k.length));
  for (const k of keys) lines.push(`  ${k.padEnd(kw)}  ${claimText(claims[k])}`);
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
    claims: claimsToJson(result.claims),
  };
}

/** Parses the arguments of `attest verify`; undefined when --help was printed. */
function parseVerifyArgs(args: string[]) {
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
  if (values.help) return { values, positionals, format: "auto" as const };
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
  return { values, positionals, format: format as EvidenceFormat | "auto" };
}

/** Turns what a parser threw into an EnarxError, printing it as JSON with --json. */
async function reportError(caught: unknown, json: boolean | undefined): Promise<unknown> {
  // Anything a parser throws is malformed input: one line, never a stack trace.
  const error = caught instanceof EnarxError || caught instanceof Deno.errors.PermissionDenied
    ? caught
    : new MalformedEvidenceError(
      `The evidence could not be read: ${caught instanceof Error ? caught.message : caught}`,
      { cause: caught },
    );
  if (json && error instanceof EnarxError) {
    await printJson({
      schema: ATTEST_VERIFY_SCHEMA,
      ok: false,
      verdict: "error",
      error: { code: error.code, message: error.message, exitStatus: error.exitStatus },
    });
  }
  return error;
}

/** The `attest verify` command. */
export const command: Command = {
  name: "attest verify",
  summary: "Verify SEV-SNP, TDX, SGX, Nitro or legacy SEV evidence against a policy",
  async run(args: string[]): Promise<number> {
    const { values, positionals, format } = parseVerifyArgs(args);
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    const at = parseAtOption(values.at, new Date());
    try {
      const inputs = await readEvidenceInputs(positionals[0], {
        format,
        certs: values.certs,
        crls: values.crl,
        collateral: values.collateral,
      });
      const policy = values.policy === undefined ? undefined : await readPolicyFile(values.policy);
      const result = await verifyEvidence(inputs.evidence, {
        format,
        certs: inputs.certs,
        crls: inputs.crls,
        collateral: inputs.collateral,
        policy,
        at,
      });
      if (values.json) await printJson(resultJson(result, at));
      else await printOut(formatResult(result, at));
      const collateral = result.checks.find((c) => c.id === "collateral");
      if (collateral !== undefined) {
        await printErr(
          `enarx: WARNING: ${TCB_NOT_EVALUATED}: the quote's platform and TDX module or QE may be ` +
            "out of date or revoked; pass Intel's TCB Info and QE Identity with --collateral\n",
        );
      }
      if (result.simulated) {
        await printErr(
          "enarx: WARNING: this is SIMULATED evidence (snp-sim); it proves nothing about hardware\n",
        );
      }
      return result.ok ? 0 : 1;
    } catch (caught) {
      throw await reportError(caught, values.json);
    }
  },
};
