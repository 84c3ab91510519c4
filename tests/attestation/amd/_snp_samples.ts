/**
 * The real SEV-SNP samples of tests/testdata/evidence/sev-snp/ with the facts its
 * README lists for each, and loaders. Shared by the snp_* tests.
 *
 * @module
 */

import { DEFAULT_POLICY, type Policy } from "../../../runtime/attestation/policy.ts";

/** The evidence folder (tests/testdata/evidence; its MANIFEST.tsv says where each file came from). */
export const EVIDENCE = new URL("../../testdata/evidence/", import.meta.url);

/** Reads a file of the evidence folder. */
export function readEvidence(path: string): Uint8Array<ArrayBuffer> {
  return Deno.readFileSync(new URL(path, EVIDENCE));
}

/** One sample and what it must verify to. */
export interface SnpSample {
  name: string;
  report: string;
  certs: string[];
  at: Date;
  version: number;
  product: "Milan" | "Genoa" | "Turin";
  policy: bigint;
  measurement: string;
  reportData: string;
  chipIdPrefix: string;
  reportedTcb: string;
  currentTcb?: string;
  signingKey: "vcek" | "vlek";
  vmpl?: number;
  platformInfo?: bigint;
  firmware?: string;
  mitVectors?: bigint;
  leafNotBefore: string;
  leafNotAfter: string;
  productName: string;
}

const ZERO32 = "00".repeat(32);

/**
 * The default policy, accepting the sample's VMPL: 04 was made at VMPL 1
 * (an AWS guest), which the default `max_vmpl = 0` refuses.
 */
export function samplePolicy(s: SnpSample): Policy {
  return { ...DEFAULT_POLICY, maxVmpl: s.vmpl ?? 0 };
}

/** Every real sample. */
export const SNP_SAMPLES: SnpSample[] = [
  {
    name: "02 virtee Milan v2",
    report: "sev-snp/02-virtee-milan-v2/report_milan.bin",
    certs: ["sev-snp/02-virtee-milan-v2/vcek_milan.der"],
    at: new Date("2026-11-27T00:00:00Z"),
    version: 2,
    product: "Milan",
    policy: 0x30000n,
    measurement:
      "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
    reportData:
      "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
    chipIdPrefix: "d49554ec717f4e5b",
    reportedTcb: "0300000000000873",
    signingKey: "vcek",
    firmware: "1.52.4",
    leafNotBefore: "2023-04-03",
    leafNotAfter: "2030-04-03",
    productName: "Milan-B0",
  },
  {
    name: "03 trustee Milan v2",
    report: "sev-snp/03-trustee-milan-v2-vcek/test-report.bin",
    certs: ["sev-snp/03-trustee-milan-v2-vcek/test-vcek.der"],
    at: new Date("2026-11-27T00:00:00Z"),
    version: 2,
    product: "Milan",
    policy: 0x3001fn,
    measurement:
      "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
    reportData: "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2" + ZERO32,
    chipIdPrefix: "c38427a30d4c7af9",
    reportedTcb: "0300000000000873",
    currentTcb: "03000000000008ce",
    signingKey: "vcek",
    firmware: "1.52.4",
    leafNotBefore: "2023-01-24",
    leafNotAfter: "2030-01-24",
    productName: "Milan-B0",
  },
  {
    name: "04 trustee Milan v3 VLEK",
    report: "sev-snp/04-trustee-milan-v3-vlek/test-vlek-report.bin",
    certs: ["sev-snp/04-trustee-milan-v3-vlek/test-vlek.der"],
    at: new Date("2025-06-01T00:00:00Z"),
    version: 3,
    product: "Milan",
    policy: 0x30000n,
    measurement:
      "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
    reportData: "819770b7",
    chipIdPrefix: "0000000000000000",
    reportedTcb: "04000000000018d9",
    currentTcb: "04000000000018dc",
    signingKey: "vlek",
    vmpl: 1,
    platformInfo: 0x27n,
    firmware: "1.55.29",
    leafNotBefore: "2024-12-10",
    leafNotAfter: "2025-12-10",
    productName: "Milan",
  },
  {
    name: "06 Oak Genoa v5",
    report: "sev-snp/06-oak-genoa-v5/report.bin",
    certs: ["sev-snp/06-oak-genoa-v5/vcek.der"],
    at: new Date("2026-11-27T00:00:00Z"),
    version: 5,
    product: "Genoa",
    policy: 0x30000n,
    measurement:
      "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f52384370e77b7032862a08c440a9bc4dc",
    reportData: "8100555af0ad8e7525be6dffeed0af83e30bbacbf03b76e175e6894d1ed057ce" + ZERO32,
    chipIdPrefix: "d2421d976f95ce0b",
    reportedTcb: "0a00000000001954",
    signingKey: "vcek",
    platformInfo: 0x25n,
    firmware: "1.55.43",
    mitVectors: 1n,
    leafNotBefore: "2025-08-07",
    leafNotAfter: "2032-08-07",
    productName: "Genoa",
  },
  {
    name: "09 trustee Azure HCL Milan v2",
    report: "sev-snp/09-trustee-azure-hcl-milan-v2/extracted-report.bin",
    certs: ["sev-snp/09-trustee-azure-hcl-milan-v2/vcek-chain.pem"],
    at: new Date("2026-11-27T00:00:00Z"),
    version: 2,
    product: "Milan",
    policy: 0x3001fn,
    measurement:
      "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315",
    reportData: "b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac",
    chipIdPrefix: "",
    reportedTcb: "0300000000000873",
    currentTcb: "03000000000008d2",
    signingKey: "vcek",
    firmware: "1.52.4",
    leafNotBefore: "2023-05-02",
    leafNotAfter: "2030-05-02",
    productName: "Milan-B0",
  },
];

/** The report and certificates of a sample. */
export function loadSample(
  s: SnpSample,
): { report: Uint8Array<ArrayBuffer>; certs: Uint8Array<ArrayBuffer>[] } {
  return { report: readEvidence(s.report), certs: s.certs.map(readEvidence) };
}
