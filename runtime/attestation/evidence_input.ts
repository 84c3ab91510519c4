/**
 * Reads the inputs of evidence verification from files: the evidence (a
 * file, standard input, or a legacy SEV certificate directory), the
 * certificates, the CRLs and Intel's collateral. Each file is checked as it
 * is read, so that an error names the file; a directory contributes the files
 * that fit and skips the rest.
 *
 * @module
 */
import { EnarxError, UsageError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";
import { detectEvidence } from "./evidence_format.ts";
import { type EvidenceFormat, MalformedEvidenceError } from "./result.ts";
import { SEV_CERT_SIZE } from "./amd/sev_cert.ts";
import { splitCertificateInputs } from "./amd/snp_verify.ts";
import {
  MalformedCollateralError,
  MAX_COLLATERAL_BYTES,
  parseIntelCollateral,
} from "./intel/intel_collateral.ts";
import { crlDerList, parseCrl } from "./intel/intel_crl.ts";

/** The files of a legacy SEV chain directory: required, then optional. */
const SEV_REQUIRED_FILES = ["pdh.cert", "pek.cert", "oca.cert", "cek.cert"];
const SEV_OPTIONAL_FILES = ["ask.cert", "ark.cert"];
/** Sizes of AMD CA certificates (ASK, ARK) in AMD's format. */
const SEV_CA_SIZES = [832, 1600, 1664, 3200];
/** A file of SEV certificates holds at most this many. */
const MAX_SEV_CERTS = 8;

/** Where the inputs are: paths as given on the command line. */
export interface EvidenceInputPaths {
  /** The format asked for, or "auto". */
  format: EvidenceFormat | "auto";
  /** Certificate files or directories. */
  certs?: readonly string[];
  /** CRL files. */
  crls?: readonly string[];
  /** Intel collateral files or directories (JSON and CRLs). */
  collateral?: readonly string[];
}

/** The inputs read: bytes, ready for `verifyEvidence`. */
export interface EvidenceInputs {
  /** The evidence. */
  evidence: Uint8Array;
  /** Certificates (DER, PEM, SNP certificate tables, or SEV certificates for a SEV chain). */
  certs: Uint8Array[];
  /** CRLs, those of a collateral directory included. */
  crls: Uint8Array[];
  /** Intel collateral JSON (TCB Info, QE Identity). */
  collateral: Uint8Array[];
}

/**
 * Reads a file, or standard input for "-". `what` names it in errors:
 * NotFound is exit status 66, a directory a usage error.
 */
export async function readInputFile(path: string, what: string): Promise<Uint8Array> {
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

async function isDirectory(path: string): Promise<boolean> {
  if (path === "-") return false;
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** The visible regular files of a directory, sorted. */
async function directoryFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && !e.name.startsWith(".")) files.push(`${dir.replace(/\/+$/, "")}/${e.name}`);
  }
  return files.sort();
}

/** The files of `path` and whether it is a directory; `option` names it when it is missing. */
async function filesOf(
  path: string,
  option: string,
): Promise<{ files: string[]; isDirectory: boolean }> {
  try {
    if (!(await Deno.stat(path)).isDirectory) return { files: [path], isDirectory: false };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new EnarxError(
        "not-found",
        `Cannot read ${option} "${path}": no such file or directory`,
        { exit: "noInput", cause: error },
      );
    }
    throw error;
  }
  return { files: await directoryFiles(path), isDirectory: true };
}

/** Reads certificate files (a file, or every file of a directory), checking each parses. */
export async function readCertificateFiles(paths: readonly string[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const path of paths) {
    const { files, isDirectory } = await filesOf(path, "--certs");
    for (const file of files) {
      const bytes = await readInputFile(file, "the certificate file");
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

/**
 * Reads a legacy SEV chain directory: PDH‖PEK‖OCA‖CEK as the evidence, and
 * ask.cert / ark.cert when present.
 */
export async function readSevDirectory(
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
  const certs: Uint8Array[] = [];
  for (const name of SEV_OPTIONAL_FILES) {
    try {
      certs.push(await Deno.readFile(`${base}/${name}`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return { evidence: concatBytes(...parts), certs };
}

/** Whether a file of `size` bytes can be SEV certificates or an AMD CA certificate. */
function fitsSevCertificates(size: number): boolean {
  return (size > 0 && size % SEV_CERT_SIZE === 0 && size <= MAX_SEV_CERTS * SEV_CERT_SIZE) ||
    SEV_CA_SIZES.includes(size);
}

/**
 * Reads --certs paths for a legacy SEV chain: raw SEV certificates and AMD
 * CA certificates; a directory contributes the files whose size fits.
 */
export async function readSevCertificateFiles(paths: readonly string[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const path of paths) {
    if (!(await isDirectory(path))) {
      out.push(await readInputFile(path, "the certificate file"));
      continue;
    }
    for (const file of await directoryFiles(path)) {
      if (fitsSevCertificates((await Deno.stat(file)).size)) {
        out.push(await readInputFile(file, "the certificate file"));
      }
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

/** Whether the first byte that is not white space opens a JSON object. */
function looksLikeJsonObject(bytes: Uint8Array): boolean {
  const first = bytes.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
  return first === 0x7b;
}

/** Reads one collateral file into `out`; `inDirectory` skips what does not fit. */
async function readCollateralFile(
  file: string,
  inDirectory: boolean,
  out: { json: Uint8Array[]; crls: Uint8Array[] },
): Promise<void> {
  const info = await Deno.stat(file);
  if (info.size > MAX_COLLATERAL_BYTES && inDirectory) return;
  if (info.size > MAX_COLLATERAL_BYTES) {
    throw new MalformedCollateralError(
      `The collateral "${file}" is ${info.size} bytes, more than the ${MAX_COLLATERAL_BYTES} ` +
        `allowed; pass a TCB Info or QE Identity JSON file or a CRL`,
    );
  }
  const bytes = await readInputFile(file, "the collateral file");
  if (looksLikeJsonObject(bytes)) {
    parseIntelCollateral(bytes, file); // fail here, naming the file
    out.json.push(bytes);
  } else if (looksLikeCrl(bytes)) {
    out.crls.push(bytes);
  } else if (!inDirectory) {
    throw new MalformedCollateralError(
      `The collateral "${file}" is neither TCB Info or QE Identity JSON nor a CRL; ` +
        `pass the files Intel's PCS serves`,
    );
  }
}

/**
 * Reads --collateral paths: JSON files (TCB Info, QE Identity) and CRLs; a
 * directory contributes the files that are either, and skips the rest.
 */
export async function readCollateralFiles(
  paths: readonly string[],
): Promise<{ json: Uint8Array[]; crls: Uint8Array[] }> {
  const out = { json: [] as Uint8Array[], crls: [] as Uint8Array[] };
  for (const path of paths) {
    const { files, isDirectory } = await filesOf(path, "--collateral");
    for (const file of files) await readCollateralFile(file, isDirectory, out);
  }
  return out;
}

/**
 * Reads CRLs (AMD's or Intel's, DER or PEM): every file of `files`, which
 * must be a CRL, and the files of the directories `dirs` that are CRLs
 * (others are skipped, so a cache directory may hold anything).
 */
export async function readCrlFiles(
  files: readonly string[],
  dirs: readonly string[] = [],
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const file of files) {
    const bytes = await readInputFile(file, "the CRL");
    if (!looksLikeCrl(bytes)) {
      throw new MalformedEvidenceError(`The CRL "${file}" is neither a DER nor a PEM CRL`);
    }
    out.push(bytes);
  }
  for (const dir of dirs) {
    const { files: inDir } = await filesOf(dir, "--crl-dir");
    for (const file of inDir) {
      const bytes = await readInputFile(file, "the CRL");
      if (looksLikeCrl(bytes)) out.push(bytes);
    }
  }
  return out;
}

/** Whether the evidence is a legacy SEV chain: asked for, a directory, or detected as one. */
function isSevEvidence(format: EvidenceFormat | "auto", evidence: Uint8Array): boolean {
  if (format === "sev") return true;
  if (format !== "auto") return false;
  try {
    return detectEvidence(evidence).format === "sev";
  } catch {
    return false; // verifyEvidence reports it
  }
}

/**
 * Reads the evidence at `path` ("-" for standard input; a directory for a
 * legacy SEV chain) and the certificates, CRLs and collateral that
 * `paths` name. Certificates are read as SEV certificates when the evidence
 * is a legacy SEV chain, else as DER, PEM or SNP certificate tables.
 */
export async function readEvidenceInputs(
  path: string,
  paths: EvidenceInputPaths,
): Promise<EvidenceInputs> {
  const directory = await isDirectory(path);
  if (directory && paths.format !== "sev" && paths.format !== "auto") {
    throw new UsageError(
      `EVIDENCE "${path}" is a directory, which only --format sev takes ` +
        `(pdh.cert, pek.cert, oca.cert, cek.cert)`,
    );
  }
  const sevDir = directory ? await readSevDirectory(path) : undefined;
  const evidence = sevDir?.evidence ?? await readInputFile(path, "the evidence");
  const sev = directory || isSevEvidence(paths.format, evidence);
  const certs = sev
    ? [...(sevDir?.certs ?? []), ...await readSevCertificateFiles(paths.certs ?? [])]
    : await readCertificateFiles(paths.certs ?? []);
  const crls = await Promise.all((paths.crls ?? []).map((f) => readInputFile(f, "the CRL")));
  const collateral = await readCollateralFiles(paths.collateral ?? []);
  return { evidence, certs, crls: [...crls, ...collateral.crls], collateral: collateral.json };
}
