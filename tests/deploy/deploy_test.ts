/**
 * `enarx deploy` end to end through a real keepmgr (child process), real
 * keepldr and wasmldr processes, the simulated SNP platform, and the real
 * verifier.
 */
import assert from "node:assert/strict";
import {
  deploy,
  DeployError,
  type DeployEvent,
  NO_CRLS_NOTICE,
  verificationNotices,
} from "../../runtime/client/deploy.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import { parsePolicy } from "../../runtime/attestation/policy.ts";
import { SnpSimulator } from "../../runtime/attestation/amd/snp_sim.ts";
import {
  DEFAULT_WARM_KEEPS,
  eventually,
  PROBE_WASM,
  SIM_DIR,
  SIM_ROOT,
  startKeepmgr,
  STREAMS_WAT,
  taggedProcessesWith,
  wasmldrsOf,
  workload,
} from "./_deploy_fixture.ts";

const decoder = new TextDecoder();

function collector() {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const events: DeployEvent[] = [];
  const text = (parts: Uint8Array[]) => parts.map((p) => decoder.decode(p)).join("");
  return {
    onStdout: (c: Uint8Array) => void out.push(c.slice()),
    onStderr: (c: Uint8Array) => void err.push(c.slice()),
    onStep: (e: DeployEvent) => void events.push(e),
    stdout: () => text(out),
    stderr: () => text(err),
    events,
  };
}

Deno.test("deploy: a module runs in an attested nil keep; output, status and every step come back", async () => {
  await using mgr = await startKeepmgr();
  const c = collector();
  const result = await deploy(workload(STREAMS_WAT), {
    keepmgr: mgr.url,
    keepmgrToken: mgr.token,
    backend: "nil",
    trustSimulated: SIM_ROOT,
    ...c,
  });
  assert.equal(c.stdout(), "out\n");
  assert.equal(c.stderr(), "err\n");
  assert.equal(result.status, 7);
  assert.equal(result.reason, "exit");
  assert.equal(result.backend, "nil");
  assert.equal(result.simulated, true);
  assert.ok(result.verification.ok);
  const ids = result.verification.checks.map((check) => check.id);
  for (const id of ["signature", "report-data", "measurement"]) assert.ok(ids.includes(id), id);
  assert.deepEqual(result.steps.map((s) => s.id), [
    "create",
    "verify",
    "seal",
    "deliver",
    "connect",
    "upload",
    "run",
  ]);
  // The simulated-evidence warning is given on every run that allowed it.
  assert.equal(c.events.filter((e) => e.kind === "warning").length, 1);
  assert.match(result.warnings[0], /SIMULATED/);
  // No CRLs were given: the result says revocation was not checked.
  assert.deepEqual(result.notices, [NO_CRLS_NOTICE]);
  assert.deepEqual(verificationNotices(result.verification, { crls: [new Uint8Array(1)] }), []);
  // The keep ends by itself and keepmgr records its status.
  const client = new KeepmgrClient(mgr.url, { token: mgr.token });
  // The keep's wasmldr ended; the warm ones wait for the next deploy.
  assert.ok(await eventually(() => wasmldrsOf(mgr).length === DEFAULT_WARM_KEEPS));
  // keepldr relays wasmldr's last frame after wasmldr itself has gone, so
  // keepmgr's record may lag the process table by a moment.
  assert.ok(await eventually(async () => (await client.showKeep(result.keep)).state !== "running"));
  const shown = await client.showKeep(result.keep);
  assert.equal(shown.state, "exited");
  assert.equal(shown.status, 7);
});

Deno.test("deploy: simulated evidence is refused without --insecure-allow-simulated, before any key is sent", async () => {
  await using mgr = await startKeepmgr();
  const c = collector();
  await assert.rejects(
    deploy(workload(STREAMS_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      backend: "nil",
      ...c,
    }),
    (e: unknown) =>
      e instanceof DeployError && e.step === "verify" && e.code === "attestation-simulated" &&
      e.exitStatus === 1 && /--insecure-allow-simulated/.test(e.message),
  );
  assert.equal(c.events.filter((e) => e.kind === "warning").length, 0);
  assert.deepEqual(
    c.events.filter((e) => e.kind === "step-start").map((e) => e.kind === "step-start" && e.id),
    ["create", "verify"],
  );
  // The refused keep is deleted, not left waiting for a key.
  // The keep's wasmldr ended; the warm ones wait for the next deploy.
  assert.ok(await eventually(() => wasmldrsOf(mgr).length === DEFAULT_WARM_KEEPS));
});

Deno.test("deploy: a policy naming the simulated root is accepted, still with the warning", async () => {
  await using mgr = await startKeepmgr();
  const sim = await SnpSimulator.open(SIM_DIR);
  const policy = parsePolicy(`trust_simulated_root = "${sim.rootFingerprint}"`);
  const c = collector();
  const result = await deploy(workload(STREAMS_WAT), {
    keepmgr: mgr.url,
    keepmgrToken: mgr.token,
    backend: "nil",
    policy,
    ...c,
  });
  assert.equal(result.status, 7);
  assert.equal(c.events.filter((e) => e.kind === "warning").length, 1);

  const other = parsePolicy(`trust_simulated_root = "${"ab".repeat(32)}"`);
  await assert.rejects(
    deploy(workload(STREAMS_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      backend: "nil",
      policy: other,
    }),
    (e: unknown) => e instanceof DeployError && e.step === "verify" && e.exitStatus === 1,
  );
});

Deno.test("deploy: a policy with another measurement refuses the keep", async () => {
  await using mgr = await startKeepmgr();
  const policy = parsePolicy(`measurements = ["${"11".repeat(48)}"]`);
  await assert.rejects(
    deploy(workload(STREAMS_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      backend: "nil",
      policy,
      trustSimulated: SIM_ROOT,
    }),
    (e: unknown) =>
      e instanceof DeployError && e.step === "verify" && e.code === "measurement-mismatch",
  );
});

Deno.test("deploy: arguments, environment and standard input reach the workload", async () => {
  await using mgr = await startKeepmgr();
  const probe = await Deno.readFile(PROBE_WASM);
  const run = async (args: string[], more: { env?: Record<string, string>; stdin?: string }) => {
    const c = collector();
    const result = await deploy(
      workload(probe, {
        args,
        env: more.env ?? {},
        stdin: new TextEncoder().encode(more.stdin ?? ""),
      }),
      { keepmgr: mgr.url, keepmgrToken: mgr.token, backend: "nil", trustSimulated: SIM_ROOT, ...c },
    );
    return { status: result.status, out: c.stdout() };
  };
  const args = await run(["args", "a b", "ü"], {});
  assert.equal(args.out, "argv[0]=main.wasm\nargv[1]=args\nargv[2]=a b\nargv[3]=ü\n");
  const env = await run(["env"], { env: { GREETING: "hi", EMPTY: "" } });
  assert.deepEqual(env.out.trim().split("\n").sort(), ["EMPTY=", "GREETING=hi"]);
  const echo = await run(["echo"], { stdin: "from the client\n" });
  assert.equal(echo.out, "from the client\n");
  // More output than the keep buffers for the client: it waits, nothing is lost.
  const big = Array.from({ length: 250_000 }, (_, i) => `line ${i}\n`).join("");
  const echoed = await run(["echo"], { stdin: big });
  assert.equal(echoed.status, 0);
  assert.equal(echoed.out.length, big.length);
  assert.equal(echoed.out, big);
});

Deno.test("enarx deploy: the CLI prints the output, --json one record, and exits with the status", async () => {
  await using mgr = await startKeepmgr();
  const dir = await Deno.makeTempDir();
  try {
    const wat = `${dir}/streams.wat`;
    await Deno.writeTextFile(wat, STREAMS_WAT);
    const main = new URL("../../cli/main.ts", import.meta.url).pathname;
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const run = async (args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--allow-all",
          "--config",
          config,
          main,
          "deploy",
          "--keepmgr",
          mgr.url,
          ...args,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { ENARX_KEEPMGR_TOKEN_FILE: mgr.tokenFile },
      }).output();
      return {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
      };
    };
    const plain = await run(["--backend", "nil", "--trust-simulated", SIM_ROOT, wat]);
    assert.equal(plain.code, 7);
    assert.equal(plain.stdout, "out\n");
    assert.match(plain.stderr, /err\n/);
    assert.match(plain.stderr, /WARNING: .*SIMULATED/);
    assert.match(plain.stderr, /\[5\] Verify.*no CRLs given: revocation not checked/);

    const json = await run(["--json", "--trust-simulated", SIM_ROOT, wat]);
    assert.equal(json.code, 7);
    const record = JSON.parse(json.stdout);
    assert.equal(record.ok, true);
    assert.equal(record.status, 7);
    assert.equal(record.backend, "nil");
    assert.equal(atob(record.stdout), "out\n");
    assert.equal(atob(record.stderr), "err\n");
    assert.equal(record.steps.length, 7);
    assert.ok(record.verification.checks.every((c: { ok: boolean }) => c.ok));
    assert.deepEqual(record.verification.notices, ["no CRLs given: revocation not checked"]);
    assert.match(json.stderr, /WARNING/); // warned even with --json

    const refused = await run(["--json", wat]);
    assert.equal(refused.code, 1);
    const failure = JSON.parse(refused.stdout);
    assert.equal(failure.ok, false);
    assert.equal(failure.error.step, "verify");
    assert.equal(failure.error.code, "attestation-simulated");

    const usage = await run([]);
    assert.equal(usage.code, 64);

    // A configuration that the keep would refuse is refused before anything is sent.
    const toml = `${dir}/Enarx.toml`;
    await Deno.writeTextFile(toml, '[[dirs]]\nhost = "/etc"\nguest = "/etc"\n');
    const before =
      (await new KeepmgrClient(mgr.url, { token: mgr.token }).listKeeps()).keeps.length;
    const dirs = await run(["--trust-simulated", SIM_ROOT, "--wasmcfgfile", toml, wat]);
    assert.equal(dirs.code, 69, dirs.stderr);
    assert.match(dirs.stderr, /\[\[dirs\]\] \(host directory "\/etc"\) cannot be deployed/);
    assert.equal(
      (await new KeepmgrClient(mgr.url, { token: mgr.token }).listKeeps()).keeps.length,
      before,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deploy: an unreachable keepmgr is keepmgr-unreachable at step 1-4", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assert.rejects(
    deploy(workload(STREAMS_WAT), {
      keepmgr: `https://127.0.0.1:${port}`,
      trustSimulated: SIM_ROOT,
    }),
    (e: unknown) =>
      e instanceof DeployError && e.step === "create" && e.code === "keepmgr-unreachable" &&
      e.exitStatus === 69,
  );
});

Deno.test("deploy: --keepmgr-ca verifies the keepmgr's certificate; another CA is refused", async () => {
  await using mgr = await startKeepmgr();
  const own = await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`);
  const result = await deploy(workload(STREAMS_WAT), {
    keepmgr: mgr.url,
    keepmgrToken: mgr.token,
    trustSimulated: SIM_ROOT,
    keepmgrCaCerts: [own],
  });
  assert.equal(result.status, 7);
  const { generateTlsKey, makeKeepCertificate } = await import(
    "../../runtime/protocol/keep_tls.ts"
  );
  const stranger = await makeKeepCertificate(await generateTlsKey(), "stranger");
  await assert.rejects(
    deploy(workload(STREAMS_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
      keepmgrCaCerts: [stranger],
    }),
    (e: unknown) =>
      e instanceof DeployError && e.step === "create" && e.code === "keepmgr-unreachable",
  );
});

Deno.test("enarx demo: a local keepmgr, the ten steps, the example's output, exit 0, nothing left", async () => {
  const tag = crypto.randomUUID();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-all",
      "--config",
      new URL("../../deno.json", import.meta.url).pathname,
      new URL("../../cli/main.ts", import.meta.url).pathname,
      "demo",
    ],
    env: { ENARX_SNP_SIM_DIR: SIM_DIR, ENARX_TEST_TAG: tag },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(out.stdout);
  assert.equal(out.code, 0, text + decoder.decode(out.stderr));
  for (const step of [" 1.", " 2.", " 3.", " 4.", " 5.", " 6.", " 7.", " 8.", " 9.", "10."]) {
    assert.ok(text.includes(`\n${step}  `), `step ${step} missing:\n${text}`);
  }
  assert.match(text, /stdout: Hello from a WebAssembly keep!/);
  assert.match(text, /SIMULATED/);
  assert.match(text, /Stopped the keepmgr/);
  assert.ok(await eventually(() => taggedProcessesWith(tag, "keepmgr").length === 0));
  assert.ok(await eventually(() => taggedProcessesWith(tag, "wasmldr").length === 0));
});
