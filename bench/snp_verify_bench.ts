/**
 * SNP verification benchmark: median time to verify one SEV-SNP report with
 * its chain, warm (certificates parsed and their signatures checked once,
 * then cached by their bytes) and cold (cache cleared before each call),
 * compared in the same run with what a shell user has: `openssl verify` of
 * the same chain plus `openssl dgst` of the report's signature. Also the
 * time snp-sim takes to sign a report (the deploy flow does it per keep).
 *
 * Run: deno run --allow-all bench/snp_verify_bench.ts [--runs N]
 * Prints a Markdown table for BENCHMARKS.md.
 *
 * @module
 */
import {
  clearSnpCertificateCache,
  verifySnpReport,
} from "../runtime/attestation/amd/snp_verify.ts";
import { SnpSimulator } from "../runtime/attestation/amd/snp_sim.ts";
import { AMD_SNP_ROOTS } from "../runtime/attestation/amd/amd_roots.ts";
import { ecdsaRawToDer, X509Certificate } from "../runtime/x509.ts";
import { parseSnpReport } from "../runtime/attestation/amd/snp_report.ts";

const EVIDENCE = new URL("../tests/testdata/evidence/", import.meta.url);
const runsArg = Deno.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(Deno.args[runsArg + 1]) : 200;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function time(runs: number, fn: () => Promise<unknown>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    xs.push(performance.now() - t);
  }
  return median(xs);
}

const report = Deno.readFileSync(new URL("sev-snp/02-virtee-milan-v2/report_milan.bin", EVIDENCE));
const vcek = Deno.readFileSync(new URL("sev-snp/02-virtee-milan-v2/vcek_milan.der", EVIDENCE));
const at = new Date("2026-11-27T00:00:00Z");
const options = { certs: [vcek], at };

const first = await verifySnpReport(report, options);
if (!first.ok) throw new Error("The sample does not verify; the benchmark is meaningless");
const warm = await time(RUNS, () => verifySnpReport(report, options));
const cold = await time(Math.max(10, RUNS / 10), () => {
  clearSnpCertificateCache();
  return verifySnpReport(report, options);
});

// The same work with OpenSSL, one process per command, as in a shell script.
const dir = await Deno.makeTempDir({ prefix: "enarx-snp-bench-" });
const milan = AMD_SNP_ROOTS.find((r) => r.product === "Milan")!;
await Deno.writeTextFile(`${dir}/ark.pem`, milan.arkPem);
await Deno.writeTextFile(`${dir}/ask.pem`, milan.askPem);
await Deno.writeFile(`${dir}/vcek.der`, vcek);
await Deno.writeTextFile(
  `${dir}/vcek.pem`,
  new X509Certificate(vcek).toString("pem") + "\n",
);
await Deno.writeTextFile(
  `${dir}/vcek_pub.pem`,
  new X509Certificate(vcek).publicKey.toString("pem") + "\n",
);
const parsed = parseSnpReport(report);
await Deno.writeFile(`${dir}/signed.bin`, parsed.signedBytes);
await Deno.writeFile(`${dir}/sig.der`, ecdsaRawToDer(parsed.signature));

async function run(cmd: string[]): Promise<void> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "null",
    stderr: "piped",
  })
    .output();
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}
const verifyChain = [
  "openssl",
  "verify",
  "-attime",
  String(Math.floor(at.getTime() / 1000)),
  "-CAfile",
  `${dir}/ark.pem`,
  "-untrusted",
  `${dir}/ask.pem`,
  `${dir}/vcek.pem`,
];
const verifyReport = [
  "openssl",
  "dgst",
  "-sha384",
  "-verify",
  `${dir}/vcek_pub.pem`,
  "-signature",
  `${dir}/sig.der`,
  `${dir}/signed.bin`,
];
let opensslMs: number | null = null;
let opensslVersion = "not installed";
try {
  const v = await new Deno.Command("openssl", { args: ["version"], stdout: "piped" }).output();
  opensslVersion = new TextDecoder().decode(v.stdout).trim();
  const n = Math.max(10, RUNS / 10);
  opensslMs = await time(n, async () => {
    await run(verifyChain);
    await run(verifyReport);
  });
} catch (error) {
  console.error(`openssl comparison skipped: ${(error as Error).message}`);
}

// snp-sim signing, as the deploy flow calls it per keep.
const sim = await SnpSimulator.open(`${dir}/sim`);
const data = new Uint8Array(64);
const measurement = new Uint8Array(48);
const sign = await time(Math.max(20, RUNS / 4), () => sim.report(data, { measurement }));
const simReport = await sim.report(data, { measurement });
const simVerify = await time(
  RUNS,
  () =>
    verifySnpReport(simReport.report, {
      certs: simReport.certs,
      at: new Date(),
      simulatorRoots: [sim.rootFingerprint],
    }),
);
await Deno.remove(dir, { recursive: true });

const f = (ms: number | null) => (ms === null ? "n/a" : `${ms.toFixed(2)} ms`);
console.log(
  `SNP verification (median of runs; ${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno}, ${opensslVersion})

| what | median |
| --- | --- |
| verifySnpReport, warm (chain cached by bytes): Milan v2 report + VCEK | ${f(warm)} |
| verifySnpReport, cold (parse VCEK, embedded ASKs/ARKs; RSA-PSS chain + ECDSA) | ${f(cold)} |
| openssl verify (ARK → ASK → VCEK) + openssl dgst -verify (report), 2 processes | ${f(opensslMs)} |
| snp-sim: sign one report (SnpSimulator.report) | ${f(sign)} |
| verifySnpReport of an snp-sim report, warm | ${f(simVerify)} |`,
);
