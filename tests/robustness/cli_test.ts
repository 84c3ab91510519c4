/**
 * Robustness of the command line: for every subcommand, wrong argument lists
 * (unknown flags, missing values, bad numbers, durations and sizes, missing
 * files, directories and empty files where files belong). Each ends with a
 * documented exit status (README.md), one line on stderr starting "enarx: "
 * with no stack frame, and nothing on stdout; none hangs.
 *
 * @module
 */
import assert from "node:assert/strict";

const MAIN = new URL("../../cli/main.ts", import.meta.url).pathname;
const DOCUMENTED = [1, 64, 65, 66, 69, 74, 76, 77, 78];
const tmp = Deno.makeTempDirSync({ prefix: "enarx-robustness-cli-" });
const EMPTY = `${tmp}/empty.wasm`;
const EMPTY_TOML = `${tmp}/Enarx.toml`;
const GARBAGE = `${tmp}/garbage.bin`;
const BAD_TOML = `${tmp}/bad.toml`;
Deno.writeFileSync(EMPTY, new Uint8Array(0));
Deno.writeFileSync(EMPTY_TOML, new Uint8Array(0));
Deno.writeFileSync(GARBAGE, new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0xff, 0xff]));
Deno.writeTextFileSync(BAD_TOML, 'args = "not a list"\nx = [\n');
const MISSING = `${tmp}/missing.wasm`;
const HELLO = new URL("../../examples/hello.wat", import.meta.url).pathname;
const KM = "https://127.0.0.1:1"; // nothing listens: a check that passed would fail here, with 69

/** Argument lists that are all wrong, by subcommand. */
const CASES: string[][] = [
  [],
  ["--bogus"],
  ["nosuchcommand"],
  ["-x", "run"],
  // run
  ["run"],
  ["run", "--bogus", HELLO],
  ["run", "--timeout"],
  ["run", "--timeout", "soon", HELLO],
  ["run", "--timeout", "-5s", HELLO],
  ["run", "--max-memory", "lots", HELLO],
  ["run", "--max-memory", "99999999999999999999T", HELLO],
  ["run", "--fuel", "1.5", HELLO],
  ["run", "--fuel", "-1", HELLO],
  ["run", "--backend", "quantum", HELLO],
  ["run", "--dir", "::", HELLO],
  ["run", "--dir", `${tmp}:/d:rx`, HELLO],
  ["run", "--env", "NOEQUALS", HELLO],
  ["run", MISSING],
  ["run", tmp],
  ["run", EMPTY],
  ["run", GARBAGE],
  ["run", "--wasmcfgfile", MISSING, HELLO],
  ["run", "--wasmcfgfile", tmp, HELLO],
  ["run", "--wasmcfgfile", BAD_TOML, HELLO],
  // deploy
  ["deploy"],
  ["deploy", HELLO],
  ["deploy", "--keepmgr", "not a url", HELLO],
  ["deploy", "--keepmgr", "ftp://x", HELLO],
  ["deploy", "-q", "--keepmgr", KM, "--timeout", "never", HELLO],
  ["deploy", "-q", "--keepmgr", KM, MISSING],
  ["deploy", "-q", "--keepmgr", KM, tmp],
  ["deploy", "-q", "--keepmgr", KM, "--policy", MISSING, HELLO],
  ["deploy", "-q", "--keepmgr", KM, "--policy", BAD_TOML, HELLO],
  ["deploy", "-q", "--keepmgr", KM, "--wasmcfgfile", EMPTY_TOML, "--stdin", MISSING, HELLO],
  ["deploy", "-q", "--keepmgr", KM, "--keepmgr-ca", EMPTY, HELLO],
  ["deploy", "-q", "--keepmgr", KM, "--backend", "quantum", HELLO],
  // keepmgr (all refused before listening)
  ["keepmgr", "extra"],
  ["keepmgr", "--listen"],
  ["keepmgr", "--listen", "nowhere"],
  ["keepmgr", "--listen", "127.0.0.1:99999"],
  ["keepmgr", "--listen", "127.0.0.1:0", "--max-keeps", "many"],
  ["keepmgr", "--listen", "127.0.0.1:0", "--keep-memory", "-1"],
  ["keepmgr", "--listen", "127.0.0.1:0", "--keep-timeout", "forever"],
  ["keepmgr", "--listen", "127.0.0.1:0", "--backends", "quantum"],
  ["keepmgr", "--listen", "127.0.0.1:0", "--tls-cert", MISSING, "--tls-key", MISSING],
  ["keepmgr", "--listen", "127.0.0.1:0", "--tls-cert", EMPTY, "--tls-key", EMPTY],
  // keepldr, wasmldr
  ["keepldr"],
  ["keepldr", "--bogus"],
  ["keepldr", "--keep"],
  ["wasmldr", "extra"],
  ["wasmldr", "--snp-sim-dir"],
  // platform
  ["platform"],
  ["platform", "nosuch"],
  ["platform", "info", "extra"],
  ["platform", "info", "--bogus"],
  // attest
  ["attest"],
  ["attest", "nosuch"],
  ["attest", "verify"],
  ["attest", "verify", MISSING],
  ["attest", "verify", tmp],
  ["attest", "verify", EMPTY],
  ["attest", "verify", GARBAGE],
  ["attest", "verify", GARBAGE, "--format", "quantum"],
  ["attest", "verify", GARBAGE, "--at", "yesterday"],
  ["attest", "verify", GARBAGE, "--certs", MISSING],
  ["attest", "verify", GARBAGE, "--policy", BAD_TOML],
  ["attest", "verify", GARBAGE, "--crl", tmp],
  ["attest", "verify", "a", "b"],
  ["attest", "report", "extra"],
  ["attest", "report", "--vmpl", "9"],
  ["attest", "report", "--report-data", "zz"],
  // demo
  ["demo", "a", "b"],
  ["demo", "--bogus"],
];

interface Outcome {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
}

async function enarx(args: string[]): Promise<Outcome> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { ENARX_CACHE_DIR: `${tmp}/cache`, NO_COLOR: "1" },
  }).spawn();
  // A hang is a failure, not a stuck test: kill after 30 s and report it.
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
  }, 30_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return { args, code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("robustness: wrong command lines end with a documented status and one line", async () => {
  const outcomes: Outcome[] = [];
  // Four at a time: each is a Deno process.
  for (let i = 0; i < CASES.length; i += 4) {
    outcomes.push(...await Promise.all(CASES.slice(i, i + 4).map(enarx)));
  }
  const problems: string[] = [];
  for (const { args, code, stdout, stderr } of outcomes) {
    const label = `enarx ${args.map((a) => a.replace(tmp, "$TMP")).join(" ")}`;
    if (args.length === 0) {
      // No command: the help on stderr, usage status.
      if (code !== 64 || stdout !== "") problems.push(`${label}: exit ${code}`);
      continue;
    }
    const lines = stderr.split("\n").filter((l) => l !== "");
    if (!DOCUMENTED.includes(code)) problems.push(`${label}: exit ${code}: ${stderr}`);
    else if (lines.length !== 1) problems.push(`${label}: ${lines.length} lines: ${stderr}`);
    else if (!/^enarx: \S/.test(lines[0])) problems.push(`${label}: stderr "${lines[0]}"`);
    else if (/^\s+at /m.test(stderr)) problems.push(`${label}: stack frame: ${stderr}`);
    else if (stdout !== "") problems.push(`${label}: stdout "${stdout}"`);
  }
  assert.deepEqual(problems, []);
});

Deno.test("robustness: CLI test files are cleaned up", () => {
  Deno.removeSync(tmp, { recursive: true });
  assert.throws(() => Deno.statSync(tmp));
});
