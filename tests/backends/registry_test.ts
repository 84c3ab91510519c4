/** The backend registry: its members, and every list of backend names derived from it. */
import assert from "node:assert/strict";
import {
  attestableBackends,
  backendByName,
  backendNames,
  backends,
  launchingBackends,
  localBackend,
  localBackends,
} from "../../runtime/backends/mod.ts";
import { KEEPLDR_BACKENDS } from "../../runtime/keepmgr/keepldr.ts";
import { BACKEND_NAMES } from "../../runtime/protocol/messages.ts";
import {
  BACKENDS,
  evaluatePlatform,
  LAUNCHABLE_BACKENDS,
  type PlatformInfo,
} from "../../runtime/platform/info.ts";
import { gatherHostFacts } from "../../runtime/platform/host_facts.ts";
import { Judge } from "../../runtime/platform/judge.ts";
import { wasmldrMeasurement } from "../../runtime/keep/measurement.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { CheckList } from "../../runtime/platform/check_list.ts";
import { enarx } from "../workloads/helpers.ts";
import { fileExists } from "../_requires.ts";
import {
  SEV_APPEND,
  SEV_VCPUS,
  sevOvmfPath,
  sevVcpuType,
} from "../../runtime/backends/sev/sev_launch.ts";

Deno.test("registry: exactly nil, kvm, sev, tdx and sgx, strongest first, one module each", () => {
  assert.deepEqual(backendNames(), ["sev", "tdx", "sgx", "kvm", "nil"]);
  for (const b of backends()) assert.equal(backendByName(b.name), b);
  assert.equal(backendByName("auto"), undefined);
  assert.equal(backendByName("bogus"), undefined);
});

Deno.test("registry: every other list of backend names is the registry's", () => {
  const names = backendNames();
  // platform info: every backend, in the registry's order.
  assert.deepEqual([...BACKENDS], names);
  // keepldr: the backends whose keeps this enarx launches.
  assert.deepEqual([...KEEPLDR_BACKENDS], launchingBackends().map((b) => b.name));
  assert.deepEqual([...KEEPLDR_BACKENDS].sort(), ["kvm", "nil", "sev"]);
  // enarx run: the backends with an in-process keep; every host can launch them.
  assert.deepEqual(localBackends().map((b) => b.name), ["nil"]);
  assert.deepEqual([...LAUNCHABLE_BACKENDS], ["nil"]);
  // The wire: a client may ask for the backends whose keeps give evidence, and auto.
  assert.deepEqual(
    BACKEND_NAMES.filter((n) => n !== "auto"),
    attestableBackends().map((b) => b.name),
  );
  assert.deepEqual([...BACKEND_NAMES], ["nil", "kvm", "sev", "auto"]);
  for (const list of [KEEPLDR_BACKENDS, BACKEND_NAMES.filter((n) => n !== "auto")]) {
    for (const name of list) assert.ok(names.includes(name), name);
  }
});

Deno.test("registry: how each backend's keep gets evidence, and what it measures", async () => {
  const source = Object.fromEntries(backends().map((b) => [b.name, b.evidenceSource]));
  assert.deepEqual(source, {
    sev: "sev-guest",
    tdx: undefined,
    sgx: undefined,
    kvm: "snp-sim",
    nil: "snp-sim",
  });
  const wasmldr = await wasmldrMeasurement();
  assert.deepEqual(await backendByName("nil")!.measurement(), wasmldr);
  // A kvm keep's measurement is its own (kernel, initrd, command line):
  // tests/measure/measure_cli_test.ts checks it against `enarx measure`.
  for (const name of ["tdx", "sgx"]) {
    assert.equal(await backendByName(name)!.measurement(), undefined, name);
  }
});

Deno.test("registry: a sev keep's expected measurement is what `enarx measure --backend sev` prints", async () => {
  const sev = await backendByName("sev")!.measurement();
  if (!fileExists(sevOvmfPath())) {
    // Without the AmdSev OVMF only a policy can name it.
    assert.equal(sev, undefined);
    return;
  }
  const { code, stdout, stderr } = await enarx(["measure", "--backend", "sev", "--json"]);
  assert.equal(code, 0, stderr);
  const printed = JSON.parse(stdout);
  assert.equal(printed.vcpus, SEV_VCPUS);
  assert.equal(printed.vcpuType, sevVcpuType());
  // The base disk's verity parameters follow: the measured command line binds the disk.
  assert.match(printed.append, new RegExp(`^${SEV_APPEND} enarx\\.verity=\\d+:[0-9a-f]{64}$`));
  assert.ok(sev !== undefined);
  assert.equal(sev.toHex(), printed.digest);
});

Deno.test("registry: enarx run's light list of local backends is the registry's", async () => {
  const { runnableBackends, runnableBackend } = await import("../../runtime/backends/local.ts");
  assert.deepEqual(runnableBackends().map((b) => b.name), localBackends().map((b) => b.name));
  assert.equal((await runnableBackend("auto")).name, localBackend("auto").name);
  await assert.rejects(() => runnableBackend("tdx"), /cannot launch keeps|keepmgr/);
  // The VM backends enarx run starts through a local keepmgr: every launching one without an
  // in-process keep, strongest first.
  const { keepmgrRunBackends } = await import("../../runtime/backends/local.ts");
  assert.deepEqual(
    keepmgrRunBackends(),
    launchingBackends().filter((b) => b.launchLocal === undefined).map((b) => b.name),
  );
});

Deno.test("registry: nil's checks, written out as a literal, are what CheckList builds", () => {
  const expected = new CheckList().add("nil.process", {
    title: "Keeps run as local OS processes (not sandboxed)",
    pass: true,
    detail: "Always available; evidence is simulated SNP (snp-sim) and proves nothing " +
      "about hardware",
  });
  const checks = backendByName("nil")!.checks(new Judge(gatherHostFacts()));
  assert.deepEqual(checks, expected.checks);
  assert.equal(checks.every((c) => !c.required || c.status === "pass"), expected.usable);
});

Deno.test("registry: tdx and sgx cannot launch keeps yet, with a clear error", async () => {
  // sev launches (tests/backends/sev_launch_test.ts: exit 69 naming what this host lacks).
  for (const name of ["tdx", "sgx"]) {
    const b = backendByName(name)!;
    assert.equal(b.launches, false);
    assert.equal(b.launchable(gatherHostFacts()), false);
    await assert.rejects(
      () => b.launch({ log: () => {} }),
      (e: unknown) => e instanceof EnarxError && e.code === "backend-unavailable",
    );
  }
});

Deno.test("registry: enarx run's backend by name: nil and auto launch in process; others say why", async () => {
  assert.equal(localBackend("auto").name, "nil");
  await using keep = await localBackend("nil").launchLocal!();
  assert.equal(keep.backend, "nil");
  const reject = (name: string, exit: number, text: RegExp) =>
    assert.throws(
      () => localBackend(name),
      (e: unknown) => e instanceof EnarxError && e.exitStatus === exit && text.test(e.message),
    );
  reject(
    "kvm",
    69,
    /kvm keeps do not run in this process: "enarx run --backend kvm" starts one through a local keepmgr/,
  );
  reject(
    "sev",
    69,
    /sev keeps do not run in this process: "enarx run --backend sev" starts one through a local keepmgr/,
  );
  reject(
    "tdx",
    69,
    /Backend "tdx" cannot launch keeps in this version of enarx; use --backend nil/,
  );
  reject("bogus", 64, /Unknown backend "bogus"; use one of: nil, auto/);
});

Deno.test("registry: each backend's checks appear unchanged in platform info", async () => {
  const facts = gatherHostFacts();
  const judge = new Judge(facts);
  const info = evaluatePlatform(facts);
  for (const b of backends()) {
    const shown = info.backends.find((x) => x.name === b.name)!;
    assert.deepEqual(shown.checks, b.checks(judge), b.name);
    assert.equal(shown.description, b.description);
    assert.equal(shown.evidence, b.evidence);
  }
  const { code, stdout, stderr } = await enarx(["platform", "info", "--json"]);
  assert.equal(code, 0, stderr);
  const json = JSON.parse(stdout) as PlatformInfo;
  for (const b of backends()) {
    const shown = json.backends.find((x) => x.name === b.name)!;
    assert.deepEqual(shown.checks.map((c) => c.id), b.checks(judge).map((c) => c.id), b.name);
  }
});
