/**
 * Trust in a simulated platform is by its root's fingerprint only: trust on
 * first use records the first root a keepmgr shows and refuses a foreign
 * simulator's evidence afterwards; a wrong `--trust-simulated` refuses; and
 * by default the client expects the measurement its own release computes,
 * naming both values when the keep's differs.
 */
import assert from "node:assert/strict";
import { deploy, DeployError } from "../../runtime/client/deploy.ts";
import { decodeCbor, encodeCbor } from "../../runtime/protocol/cbor.ts";
import { decodeEvidenceBundle, encodeEvidenceBundle } from "../../runtime/attestation/bundle.ts";
import { parseSnpReport } from "../../runtime/attestation/amd/snp_report.ts";
import { SnpSimulator } from "../../runtime/attestation/amd/snp_sim.ts";
import { TEST_MEASURED_EXTRA_ENV } from "../../runtime/keep/measurement.ts";
import { nilBackend } from "../../runtime/backends/nil.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import {
  hostileKeepmgr,
  SIM_ROOT,
  startKeepmgr,
  STREAMS_WAT,
  workload,
} from "./_deploy_fixture.ts";

type CborMap = Record<string, unknown>;

/** A second simulator, foreign to the keepmgr (its chain is made once per run). */
const FOREIGN_DIR = await Deno.makeTempDir({ prefix: "enarx-foreign-sim-" });

/** Re-signs a create-keep reply's evidence with `sim`, same report data and measurement. */
async function resign(body: Uint8Array, sim: SnpSimulator): Promise<Uint8Array> {
  const created = decodeCbor(body) as CborMap;
  const bundle = decodeEvidenceBundle(created.evidence as Uint8Array);
  const report = parseSnpReport(bundle.report);
  const signed = await sim.report(report.reportData, { measurement: report.measurement });
  const evidence = encodeEvidenceBundle({
    format: "snp",
    report: signed.report,
    certs: signed.certs,
  });
  return encodeCbor({ ...created, evidence });
}

Deno.test("trust: first use records the root; a foreign simulator is refused even with the flag", async () => {
  const foreign = await SnpSimulator.open(FOREIGN_DIR);
  const config = await Deno.makeTempDir();
  const file = `${config}/enarx/trusted-simulators.toml`;
  await using mgr = await startKeepmgr();
  let swap = false;
  await using host = hostileKeepmgr(mgr.url, {
    reply: async (path, reply) =>
      swap && path === "/v1/keeps" && reply.status === 201
        ? { ...reply, body: await resign(reply.body, foreign) }
        : reply,
  });
  try {
    const warnings: string[] = [];
    const first = await deploy(workload(STREAMS_WAT), {
      keepmgr: host.url,
      keepmgrToken: mgr.token,
      allowSimulated: true,
      trustedSimulatorsFile: file,
      onStep: (e) => void (e.kind === "warning" && warnings.push(e.message)),
    });
    assert.equal(first.status, 7);
    assert.ok(
      warnings.some((w) => /on first use, recorded/.test(w) && w.includes(SIM_ROOT)),
      warnings.join(),
    );
    assert.match(await Deno.readTextFile(file), new RegExp(SIM_ROOT));
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${config}/enarx`)).mode! & 0o777, 0o700);

    // Recorded: the same keepmgr's own simulator is accepted without a new note.
    const again: string[] = [];
    await deploy(workload(STREAMS_WAT), {
      keepmgr: host.url,
      keepmgrToken: mgr.token,
      allowSimulated: true,
      trustedSimulatorsFile: file,
      onStep: (e) => void (e.kind === "warning" && again.push(e.message)),
    });
    assert.ok(!again.some((w) => /on first use, recorded/.test(w)));

    swap = true;
    const foreignRoot = `sha256:${foreign.rootFingerprint}`;
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        allowSimulated: true,
        trustedSimulatorsFile: file,
      }),
      (e: unknown) =>
        e instanceof DeployError && e.step === "verify" && e.code === "attestation-simulated" &&
        e.exitStatus === 1 && e.message.includes(foreignRoot) && e.message.includes(SIM_ROOT),
    );
  } finally {
    await Deno.remove(config, { recursive: true });
  }
});

Deno.test("trust: --trust-simulated with another fingerprint refuses the keep", async () => {
  await using mgr = await startKeepmgr();
  const wrong = `sha256:${"ab".repeat(32)}`;
  await assert.rejects(
    deploy(workload(STREAMS_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      trustSimulated: wrong,
    }),
    (e: unknown) =>
      e instanceof DeployError && e.code === "attestation-simulated" && e.exitStatus === 1 &&
      e.message.includes(wrong) && e.message.includes(SIM_ROOT),
  );
});

Deno.test("trust: the keepmgr's start line and GET /v1/info name its simulated root", async () => {
  await using mgr = await startKeepmgr();
  assert.equal(mgr.simulatorRoot, SIM_ROOT);
  const info = await new KeepmgrClient(mgr.url).info();
  assert.equal(info.simulator_root, SIM_ROOT);
});

Deno.test("measurement: one changed measured byte refuses the deploy, naming both values", async () => {
  const dir = await Deno.makeTempDir();
  const extra = `${dir}/measured.bin`;
  await Deno.writeFile(extra, new TextEncoder().encode("measured input"));
  Deno.env.set(TEST_MEASURED_EXTRA_ENV, extra);
  try {
    const expected = (await nilBackend.measurement())!.toHex();
    // The host runs code that differs in one measured byte from the client's.
    const hostExtra = `${dir}/host-measured.bin`;
    await Deno.writeFile(hostExtra, new TextEncoder().encode("measured inpuT"));
    await using mgr = await startKeepmgr({ env: { [TEST_MEASURED_EXTRA_ENV]: hostExtra } });
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
      }),
      (e: unknown) =>
        e instanceof DeployError && e.step === "verify" && e.code === "measurement-mismatch" &&
        e.exitStatus === 1 && e.message.includes(expected) &&
        /measurement is [0-9a-f]{96}, but this enarx release computes/.test(e.message),
    );
  } finally {
    Deno.env.delete(TEST_MEASURED_EXTRA_ENV);
    await Deno.remove(dir, { recursive: true });
  }
});
