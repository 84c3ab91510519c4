/**
 * snp-sim: a software stand-in for the AMD secure processor, for the nil and
 * kvm backends on machines without SEV-SNP. It makes, once per state
 * directory, a chain with AMD's algorithms and extensions (an RSA-4096 ARK
 * and ASK signing with RSA-PSS/SHA-384, an EC P-384 VCEK with the TCB and
 * hwID extensions), every subject marked SIMULATED, and signs version 3
 * ATTESTATION_REPORTs whose measurement and report data the caller gives.
 *
 * Simulated evidence proves nothing about hardware: anyone with the state
 * directory can sign anything. The verifier trusts its root only when a
 * policy says so (`trust_simulated_root`), and marks results `simulated`.
 *
 * @module
 */
import { EnarxError } from "../../errors.ts";
import { ensurePrivateDirectory, writeSecretFile } from "../../fs.ts";
import { reversed } from "../_bytes.ts";
import { SNP_REPORT_LAYOUT, SNP_REPORT_SIZE, SNP_SIGNED_SIZE } from "./snp_report.ts";
import { AMD_OID } from "./amd_oids.ts";

/** The name of the state file inside the state directory. */
export const SNP_SIM_STATE_FILE = "snp-sim.json";

/** What {@link SnpSimulator.report} returns. */
export interface SnpSimReport {
  /** The 1184-byte ATTESTATION_REPORT (version 3, signed by the VCEK). */
  report: Uint8Array<ArrayBuffer>;
  /** DER certificates: ARK, ASK, VCEK. */
  certs: Uint8Array<ArrayBuffer>[];
}

/** Options of {@link SnpSimulator.report}. */
export interface SnpSimReportOptions {
  /** MEASUREMENT: 48 bytes, the SHA-384 of what the keep runs (the wasmldr code). */
  measurement: Uint8Array;
  /** HOST_DATA: up to 32 bytes (zero-padded); default zero. */
  hostData?: Uint8Array;
  /** VMPL of the request, 0 to 3; default 0. */
  vmpl?: number;
}

interface SimState {
  version: 1;
  product: "Milan";
  chipId: string; // hex, 64 bytes
  tcb: string; // hex, 8 bytes: REPORTED_TCB = CURRENT_TCB = COMMITTED_TCB = LAUNCH_TCB
  certs: { ark: string; ask: string; vcek: string }; // base64 DER
  keys: { ark: string; ask: string; vcek: string }; // base64 PKCS#8
}

// The simulated platform: a Milan (family 19h, model 01h, stepping 1) with
// firmware 1.55.29 and TCB bootloader 4, tee 0, snp 24, microcode 217.
const SIM_TCB = Uint8Array.of(4, 0, 0, 0, 0, 0, 24, 217);
const SIM_FIRMWARE = { major: 1, minor: 55, build: 29 };
const SIM_POLICY = 0x30000n; // SMT allowed, reserved bit 17; DEBUG and MIGRATE_MA off
const SIM_PLATFORM_INFO = 0x1n; // SMT enabled

const SUBJECT_TAIL = "OU=SIMULATED not AMD hardware, O=enarx snp-sim SIMULATED, C=US";
const PSS = { name: "RSA-PSS", hash: "SHA-384", saltLength: 48 } as Algorithm;
const RSA_GEN: RsaHashedKeyGenParams = {
  name: "RSA-PSS",
  modulusLength: 4096,
  publicExponent: Uint8Array.of(1, 0, 1),
  hash: "SHA-384",
};
const EC_ALG: EcKeyImportParams = { name: "ECDSA", namedCurve: "P-384" };

function derInt(n: number): Uint8Array<ArrayBuffer> {
  return n >= 0x80 ? Uint8Array.of(0x02, 0x02, 0x00, n) : Uint8Array.of(0x02, 0x01, n);
}

function derIa5(text: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(text);
  return Uint8Array.of(0x16, b.length, ...b);
}

/** Whether `der` is exactly one DER SEQUENCE (a certificate's outer shape), without parsing it. */
function isDerSequence(der: Uint8Array): boolean {
  if (der.length < 2 || der[0] !== 0x30) return false;
  let length = der[1];
  let header = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || der.length < 2 + n) return false;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[2 + i];
    header += n;
  }
  return header + length === der.length;
}

function addYears(d: Date, years: number): Date {
  const out = new Date(d);
  out.setUTCFullYear(out.getUTCFullYear() + years);
  return out;
}

async function generateState(): Promise<SimState> {
  // Loaded only to make a chain (once per state directory): signing a report
  // (every keep's keepldr) needs WebCrypto alone.
  const { Extension, X509CertificateGenerator } = await import("../../x509.ts");
  const chipId = crypto.getRandomValues(new Uint8Array(64));
  const [ark, ask, vcek] = await Promise.all([
    crypto.subtle.generateKey(RSA_GEN, true, ["sign", "verify"]) as Promise<CryptoKeyPair>,
    crypto.subtle.generateKey(RSA_GEN, true, ["sign", "verify"]) as Promise<CryptoKeyPair>,
    crypto.subtle.generateKey(EC_ALG, true, ["sign", "verify"]) as Promise<CryptoKeyPair>,
  ]);
  // The simulator's own creation time: validity periods like AMD's (25 and 7 years).
  const now = new Date();
  const notBefore = new Date(now.getTime() - 24 * 3600 * 1000);
  const arkName = `CN=ARK-Milan SIMULATED, ${SUBJECT_TAIL}`;
  const askName = `CN=SEV-Milan SIMULATED, ${SUBJECT_TAIL}`;
  const vcekName = `CN=SEV-VCEK SIMULATED, ${SUBJECT_TAIL}`;
  const arkCert = await X509CertificateGenerator.create({
    serialNumber: "010000",
    subject: arkName,
    issuer: arkName,
    notBefore,
    notAfter: addYears(notBefore, 25),
    signingAlgorithm: PSS,
    publicKey: ark.publicKey,
    signingKey: ark.privateKey,
  });
  const askCert = await X509CertificateGenerator.create({
    serialNumber: "010001",
    subject: askName,
    issuer: arkName,
    notBefore,
    notAfter: addYears(notBefore, 25),
    signingAlgorithm: PSS,
    publicKey: ask.publicKey,
    signingKey: ark.privateKey,
  });
  const ext = (oid: string, value: Uint8Array<ArrayBuffer>) => new Extension(oid, false, value);
  const vcekCert = await X509CertificateGenerator.create({
    serialNumber: "010101", // AMD's VCEKs have serial 0, which the generator refuses
    subject: vcekName,
    issuer: askName,
    notBefore,
    notAfter: addYears(notBefore, 7),
    signingAlgorithm: PSS,
    publicKey: vcek.publicKey,
    signingKey: ask.privateKey,
    extensions: [
      ext(AMD_OID.structVersion, derInt(0)),
      ext(AMD_OID.productName, derIa5("Milan-B0")),
      ext(AMD_OID.blSpl, derInt(SIM_TCB[0])),
      ext(AMD_OID.teeSpl, derInt(SIM_TCB[1])),
      ext(AMD_OID.snpSpl, derInt(SIM_TCB[6])),
      ext(AMD_OID.ucodeSpl, derInt(SIM_TCB[7])),
      ext(AMD_OID.hwId, chipId), // raw, without an OCTET STRING, as AMD's key server
    ],
  });
  const pkcs8 = async (k: CryptoKey) =>
    new Uint8Array(await crypto.subtle.exportKey("pkcs8", k)).toBase64();
  return {
    version: 1,
    product: "Milan",
    chipId: chipId.toHex(),
    tcb: SIM_TCB.toHex(),
    certs: {
      ark: new Uint8Array(arkCert.rawData).toBase64(),
      ask: new Uint8Array(askCert.rawData).toBase64(),
      vcek: new Uint8Array(vcekCert.rawData).toBase64(),
    },
    keys: {
      ark: await pkcs8(ark.privateKey),
      ask: await pkcs8(ask.privateKey),
      vcek: await pkcs8(vcek.privateKey),
    },
  };
}

function stateError(path: string, why: string, cause?: unknown): EnarxError {
  return new EnarxError(
    "snp-sim-state",
    `The snp-sim state "${path}" is unusable (${why}); remove it to make a new simulated chain`,
    { exit: "config", cause },
  );
}

async function readState(path: string): Promise<SimState | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw stateError(path, (error as Error).message, error);
  }
  try {
    const state = JSON.parse(text) as SimState;
    if (state.version !== 1 || typeof state.chipId !== "string" || !state.certs?.vcek) {
      throw new Error("unknown version or missing fields");
    }
    return state;
  } catch (error) {
    throw stateError(path, (error as Error).message, error);
  }
}

/**
 * Writes the state (it holds the simulated private keys: 0600, atomically)
 * unless another process wrote one first; returns the state that won.
 */
async function writeStateOnce(dir: string, state: SimState): Promise<SimState> {
  const path = `${dir}/${SNP_SIM_STATE_FILE}`;
  try {
    await writeSecretFile(path, JSON.stringify(state, null, 1) + "\n", { createNew: true });
    return state;
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    return (await readState(path))!;
  }
}

/**
 * A simulated SEV-SNP platform bound to one state directory. Open it with
 * {@link SnpSimulator.open}; the chain and chip id persist in the directory.
 */
export class SnpSimulator {
  /** The state directory. */
  readonly stateDir: string;
  /** The simulated CHIP_ID (64 random bytes, fixed per state directory). */
  readonly chipId: Uint8Array<ArrayBuffer>;
  /** The simulated TCB (8 bytes, Milan layout). */
  readonly tcb: Uint8Array<ArrayBuffer>;
  /** The simulated ARK, DER. */
  readonly arkDer: Uint8Array<ArrayBuffer>;
  /** The simulated ASK, DER. */
  readonly askDer: Uint8Array<ArrayBuffer>;
  /** The simulated VCEK, DER. */
  readonly vcekDer: Uint8Array<ArrayBuffer>;
  /** SHA-256 of the ARK's DER (lower-case hex): name it in `trust_simulated_root`. */
  readonly rootFingerprint: string;
  readonly #vcekKey: CryptoKey;

  private constructor(
    stateDir: string,
    state: SimState,
    vcekKey: CryptoKey,
    rootFingerprint: string,
  ) {
    this.stateDir = stateDir;
    this.chipId = Uint8Array.fromHex(state.chipId);
    this.tcb = Uint8Array.fromHex(state.tcb);
    this.arkDer = Uint8Array.fromBase64(state.certs.ark);
    this.askDer = Uint8Array.fromBase64(state.certs.ask);
    this.vcekDer = Uint8Array.fromBase64(state.certs.vcek);
    this.rootFingerprint = rootFingerprint;
    this.#vcekKey = vcekKey;
  }

  /**
   * Opens the simulator of `stateDir`, creating the directory and a new
   * simulated chain (two RSA-4096 keys: a few seconds, once) when it has
   * none. Concurrent first opens agree on one chain.
   */
  static async open(stateDir: string): Promise<SnpSimulator> {
    const cached = opened.get(stateDir);
    if (cached) return await cached;
    const promise = SnpSimulator.#load(stateDir);
    opened.set(stateDir, promise);
    promise.catch(() => opened.delete(stateDir));
    return await promise;
  }

  static async #load(stateDir: string): Promise<SnpSimulator> {
    const path = `${stateDir}/${SNP_SIM_STATE_FILE}`;
    await ensurePrivateDirectory(stateDir); // tightened, or refused if another user's
    let state = await readState(path);
    if (!state) state = await writeStateOnce(stateDir, await generateState());
    try {
      const vcekKey = await crypto.subtle.importKey(
        "pkcs8",
        Uint8Array.fromBase64(state.keys.vcek),
        EC_ALG,
        false,
        ["sign"],
      );
      const ark = Uint8Array.fromBase64(state.certs.ark);
      for (const [name, der] of Object.entries(state.certs)) {
        // Fails early on a damaged state file (the verifier parses them in full).
        if (!isDerSequence(Uint8Array.fromBase64(der))) {
          throw new Error(`its ${name} certificate is not one DER SEQUENCE`);
        }
      }
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", ark));
      return new SnpSimulator(stateDir, state, vcekKey, digest.toHex());
    } catch (error) {
      throw stateError(path, (error as Error).message, error);
    }
  }

  /** The chain, DER: ARK, ASK, VCEK. */
  certs(): Uint8Array<ArrayBuffer>[] {
    return [this.arkDer.slice(), this.askDer.slice(), this.vcekDer.slice()];
  }

  /**
   * Signs a version 3 ATTESTATION_REPORT with `reportData` (up to 64 bytes,
   * zero-padded) and the caller's measurement, debug off, VMPL 0 unless
   * given. Resolves to the report and the chain (ARK, ASK, VCEK).
   */
  async report(reportData: Uint8Array, options: SnpSimReportOptions): Promise<SnpSimReport> {
    if (reportData.length > 64) {
      throw new RangeError(`Report data is at most 64 bytes, got ${reportData.length}`);
    }
    if (options.measurement.length !== 48) {
      throw new RangeError(
        `The measurement is 48 bytes (SHA-384), got ${options.measurement.length}`,
      );
    }
    if ((options.hostData?.length ?? 0) > 32) {
      throw new RangeError(`Host data is at most 32 bytes, got ${options.hostData!.length}`);
    }
    const vmpl = options.vmpl ?? 0;
    if (!Number.isInteger(vmpl) || vmpl < 0 || vmpl > 3) {
      throw new RangeError(`VMPL ${vmpl} is not 0 to 3`);
    }

    const report = new Uint8Array(SNP_REPORT_SIZE);
    const view = new DataView(report.buffer);
    const at = (name: keyof typeof SNP_REPORT_LAYOUT.byName) =>
      SNP_REPORT_LAYOUT.byName[name].offset;
    view.setUint32(at("version"), 3, true);
    view.setBigUint64(at("policy"), SIM_POLICY, true);
    view.setUint32(at("vmpl"), vmpl, true);
    view.setUint32(at("signatureAlgo"), 1, true);
    report.set(this.tcb, at("currentTcb"));
    view.setBigUint64(at("platformInfo"), SIM_PLATFORM_INFO, true);
    view.setUint32(at("keyInfo"), 0, true); // signed by the VCEK
    report.set(reportData, at("reportData"));
    report.set(options.measurement, at("measurement"));
    if (options.hostData) report.set(options.hostData, at("hostData"));
    report.set(crypto.getRandomValues(new Uint8Array(32)), at("reportId"));
    report.fill(0xff, at("reportIdMa"), at("reportIdMa") + 32); // no migration agent
    report.set(this.tcb, at("reportedTcb"));
    report[at("cpuidFamId")] = 0x19;
    report[at("cpuidModId")] = 0x01;
    report[at("cpuidStep")] = 0x01;
    report.set(this.chipId, at("chipId"));
    report.set(this.tcb, at("committedTcb"));
    report[at("currentBuild")] = SIM_FIRMWARE.build;
    report[at("currentMinor")] = SIM_FIRMWARE.minor;
    report[at("currentMajor")] = SIM_FIRMWARE.major;
    report[at("committedBuild")] = SIM_FIRMWARE.build;
    report[at("committedMinor")] = SIM_FIRMWARE.minor;
    report[at("committedMajor")] = SIM_FIRMWARE.major;
    report.set(this.tcb, at("launchTcb"));

    const sig = new Uint8Array(
      await crypto.subtle.sign(
        { name: "ECDSA", hash: "SHA-384" },
        this.#vcekKey,
        report.subarray(0, SNP_SIGNED_SIZE),
      ),
    );
    // Raw big-endian r ‖ s to AMD's 72-byte little-endian fields.
    report.set(reversed(sig.subarray(0, 48)), at("signatureR"));
    report.set(reversed(sig.subarray(48, 96)), at("signatureS"));
    return { report, certs: this.certs() };
  }
}

const opened = new Map<string, Promise<SnpSimulator>>();
