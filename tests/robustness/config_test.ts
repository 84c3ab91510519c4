/**
 * Robustness of the TOML parsers against bad input: Enarx.toml (run and
 * deployed) and attestation policies, with wrong types for every key and
 * random TOML-ish garbage. Each input parses or throws an EnarxError (exit
 * 65 or 78 for a configuration, 69 for an unsupported one); nothing else
 * escapes. Seeded: a failure names its seed and input.
 *
 * @module
 */
import assert from "node:assert/strict";
import { parseDeployedConfig, parseEnarxConfig } from "../../runtime/wasm/config.ts";
import { parsePolicy } from "../../runtime/attestation/policy.ts";
import { cleanlySync, Prng } from "./_robustness.ts";

const SEED = 0x5eed_0003;

const CONFIG_KEYS = ["steward", "args", "env", "files", "dirs"];
const POLICY_KEYS = [
  "platforms",
  "products",
  "measurements",
  "report_data",
  "host_data",
  "allow_debug",
  "allow_migration",
  "min_tcb",
  "max_age_seconds",
  "trust_simulated_root",
  "allowed_tcb_statuses",
];

/** TOML values of every type, and of the shapes the keys expect but wrong inside. */
const VALUES = [
  "1",
  "-1",
  "0",
  "9223372036854775807",
  "3.5",
  "inf",
  "nan",
  '"x"',
  '""',
  '"ab\\ncd"',
  '"0x"',
  '"zz"',
  "true",
  "1979-05-27T07:32:00Z",
  "07:32:00",
  "1979-05-27",
  "[]",
  "[1, 2]",
  '["a"]',
  "[[1]]",
  '["snp", 1]',
  '["zz"]',
  "{}",
  "{ a = 1 }",
  '{ "" = "x" }',
  '{ "=" = "x" }',
  '{ __proto__ = "x" }',
  "{ fmc = 300 }",
  "{ snp = 1.5 }",
  "{ tee = -1 }",
  '[{ kind = "stdin" }]',
  "[{ kind = 1 }]",
  '[{ kind = "null", name = "a:b" }]',
  '[{ kind = "listen", prot = "tcp", port = 99999999999 }]',
  '[{ kind = "connect", prot = "tls" }]',
  '[{ kind = "stdin" }, { kind = "stdout" }, { kind = "stderr" }, { kind = "null" }]',
  "[{ host = 1 }]",
  '[{ host = "a", readonly = 1 }]',
  '[{ host = "a", guest = 2 }]',
  '"""\na\nb"""',
];

function checkConfig(label: string, text: string): void {
  for (const parse of [parseEnarxConfig, parseDeployedConfig]) {
    const outcome = cleanlySync(label, () => parse(text, "Enarx.toml"));
    if (outcome instanceof Error) {
      assert.ok([65, 69, 78].includes(outcome.exitStatus), `${label}: exit ${outcome.exitStatus}`);
    }
  }
}

function checkPolicy(label: string, text: string): void {
  const outcome = cleanlySync(label, () => parsePolicy(text, { source: "p.toml" }));
  if (outcome instanceof Error) {
    assert.ok([65, 78].includes(outcome.exitStatus), `${label}: exit ${outcome.exitStatus}`);
  }
}

Deno.test("robustness: every Enarx.toml and policy key with every wrong type", () => {
  for (const key of CONFIG_KEYS) {
    for (const value of VALUES) checkConfig(`${key} = ${value}`, `${key} = ${value}\n`);
  }
  for (const key of POLICY_KEYS) {
    for (const value of VALUES) checkPolicy(`${key} = ${value}`, `${key} = ${value}\n`);
  }
  // The same inside tables and arrays of tables.
  for (const value of VALUES) {
    for (const key of ["kind", "name", "prot", "port", "addr", "host"]) {
      checkConfig(`files.${key} = ${value}`, `[[files]]\nkind = "stdin"\n${key} = ${value}\n`);
    }
    for (const key of ["host", "guest", "readonly"]) {
      checkConfig(`dirs.${key} = ${value}`, `[[dirs]]\nhost = "d"\n${key} = ${value}\n`);
    }
    checkConfig(`env.K = ${value}`, `[env]\nK = ${value}\n`);
    for (const key of ["fmc", "bootloader", "tee", "snp", "microcode", "x"]) {
      checkPolicy(`min_tcb.${key} = ${value}`, `[min_tcb]\n${key} = ${value}\n`);
    }
  }
});

Deno.test("robustness: random TOML-ish text is a configuration error", () => {
  const rng = new Prng(SEED);
  const noise = ["[", "]", "{", "}", "=", '"', "'", "\n", "#", "\\", "\0", "😀", ",", "[[", "."];
  for (let i = 0; i < 1500; i++) {
    const lines: string[] = [];
    for (let j = rng.int(4); j >= 0; j--) {
      const keys = rng.next() < 0.5 ? CONFIG_KEYS : POLICY_KEYS;
      lines.push(`${rng.pick(keys)} = ${rng.pick(VALUES)}`);
    }
    const chars = lines.join("\n").split("");
    for (let j = rng.int(3); j > 0; j--) {
      chars.splice(rng.int(chars.length + 1), 0, rng.pick(noise));
    }
    const text = chars.join("");
    const label = `seed ${rng.seed} #${i} ${JSON.stringify(text)}`;
    checkConfig(label, text);
    checkPolicy(label, text);
  }
  for (let i = 0; i < 300; i++) {
    const text = new TextDecoder().decode(rng.bytes(rng.int(80)));
    const label = `seed ${rng.seed} bytes #${i} ${JSON.stringify(text)}`;
    checkConfig(label, text);
    checkPolicy(label, text);
  }
});
