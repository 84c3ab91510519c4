/**
 * The library surface (mod.ts) and the package description (deno.json):
 * exactly the curated exports, usable end to end, documented well enough for
 * `deno doc --lint`, and tasks that call the scripts README names.
 */
import assert from "node:assert/strict";
import * as enarx from "../mod.ts";

const ROOT = new URL("../", import.meta.url);
const DENO = Deno.execPath();

/** The runtime values mod.ts exports (types leave no trace at run time). */
const EXPECTED_VALUES = [
  "ConfigError",
  "ConfigUnsupportedError",
  "DEFAULT_POLICY",
  "DEPLOY_STEPS",
  "DeployError",
  "ENARX_VERSION",
  "EnarxError",
  "ExitStatus",
  "GUEST_INTERFACES",
  "MalformedEvidenceError",
  "PolicyError",
  "TCB_STATUSES",
  "UsageError",
  "WASMTIME_VERSION",
  "backendNames",
  "claimsToJson",
  "decodeEvidenceBundle",
  "defaultConfig",
  "deploy",
  "detectEvidence",
  "encodeEvidenceBundle",
  "exitStatusFor",
  "loadEnarxConfig",
  "loadServiceCa",
  "parseEnarxConfig",
  "parsePolicy",
  "probePlatform",
  "readEvidenceInputs",
  "readPolicyFile",
  "runWorkload",
  "verifyEvidence",
];

Deno.test("mod.ts exports exactly the curated surface", () => {
  assert.deepEqual(Object.keys(enarx).sort(), [...EXPECTED_VALUES].sort());
});

Deno.test("mod.ts: verify real evidence and run a workload through the public surface", async () => {
  const evidence = new URL("tests/testdata/evidence/sev-snp/02-virtee-milan-v2/", ROOT);
  const report = await Deno.readFile(new URL("report_milan.bin", evidence));
  const vcek = await Deno.readFile(new URL("vcek_milan.der", evidence));
  const result = await enarx.verifyEvidence(report, {
    at: new Date("2026-11-27T00:00:00Z"),
    certs: [vcek],
  });
  assert.equal(result.format, "snp");
  assert.equal(result.ok, true, JSON.stringify(result.checks.filter((c) => !c.ok)));
  const tampered = report.slice();
  tampered[0x90] ^= 1; // a byte of the measurement, inside the signed region
  assert.equal((await enarx.verifyEvidence(tampered, { at: new Date(), certs: [vcek] })).ok, false);

  const chunks: Uint8Array[] = [];
  const run = await enarx.runWorkload(
    { module: new URL("examples/hello.wat", ROOT).pathname },
    { stdout: (chunk) => void chunks.push(chunk.slice()) },
  );
  assert.equal(run.status, 0);
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  assert.match(text, /hello/i);
  assert.ok(enarx.backendNames().includes("nil"));
});

Deno.test("mod.ts passes deno doc --lint (every public type documented and exported)", async () => {
  const out = await new Deno.Command(DENO, {
    args: ["doc", "--lint", "mod.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
});

Deno.test("deno.json: version is enarx's, exports mod.ts, tasks call README's scripts", () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  assert.equal(config.version, enarx.ENARX_VERSION);
  assert.equal(config.exports, "./mod.ts");
  const readme = Deno.readTextFileSync(new URL("README.md", ROOT));
  for (
    const [task, script] of Object.entries({
      test: "./tools/test.sh",
      demo: "./enarx demo",
      compile: "./compile.sh",
      bench: "bench/run.sh",
    })
  ) {
    assert.ok(config.tasks[task].command.includes(script), `task ${task}`);
    assert.ok(readme.includes(script), `README names ${script}`);
  }
});
