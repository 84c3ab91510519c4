/**
 * runtime/units.ts: the one reading of sizes and durations, as tables; and
 * the CLI flags that take them (`run --max-memory`, `keepmgr --keep-memory`)
 * agreeing on every spelling.
 */
import assert from "node:assert/strict";
import { parseDuration, parseSize, UNITS_HELP } from "../runtime/units.ts";
import { UsageError } from "../runtime/errors.ts";
import { enarx, ensureLibwasmtime, ROOT, workload } from "./workloads/helpers.ts";

Deno.test("units: sizes, binary K/M/G/KiB/MiB/GiB, decimal KB/MB/GB, rounded down", () => {
  const table: [string, number][] = [
    ["65536", 65536],
    ["1", 1],
    ["512B", 512],
    ["1K", 1024],
    ["1k", 1024],
    ["1KiB", 1024],
    ["1kib", 1024],
    ["1KB", 1000],
    ["1M", 1_048_576],
    ["1MiB", 1_048_576],
    ["1MB", 1_000_000],
    ["1mb", 1_000_000],
    ["1G", 1_073_741_824],
    ["1GiB", 1_073_741_824],
    ["1GB", 1_000_000_000],
    ["1.5M", 1_572_864],
    ["1.5K", 1536],
    ["0.5KB", 500],
    ["1.0001K", 1024],
    ["64 MiB", 64 * 1024 * 1024],
    [" 16M ", 16 * 1024 * 1024],
    [String(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER],
  ];
  for (const [text, bytes] of table) assert.equal(parseSize(text), bytes, text);
});

Deno.test("units: durations, ms/s/m/h, plain seconds, rounded up to a millisecond", () => {
  const table: [string, number][] = [
    ["500ms", 500],
    ["30s", 30_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["2", 2000],
    ["1.5s", 1500],
    ["1.5m", 90_000],
    ["0.5", 500],
    ["0.1ms", 1],
    ["1.2ms", 2],
    ["1500ms", 1500],
  ];
  for (const [text, ms] of table) assert.equal(parseDuration(text), ms, text);
});

Deno.test("units: refused values are UsageErrors that quote the value and name the flag", () => {
  const sizes: [string, RegExp][] = [
    ["", /Invalid size "" for --x; use e\.g\./],
    ["-1", /Invalid size "-1" for --x/],
    ["lots", /Invalid size "lots" for --x/],
    ["1T", /Invalid size "1T"/],
    ["1iB", /Invalid size "1iB"/],
    ["1.5.5M", /Invalid size "1\.5\.5M"/],
    ["0", /Invalid size "0" for --x; it must be more than zero/],
    ["0.1", /more than zero/],
    ["99999999999999999999", /at most 9007199254740991 bytes/],
    ["9007199254740992", /at most 9007199254740991 bytes/],
    ["99999999999G", /at most 9007199254740991 bytes/],
  ];
  for (const [text, pattern] of sizes) {
    assert.throws(() => parseSize(text, "--x"), (e: unknown) => {
      assert.ok(e instanceof UsageError, text);
      assert.match((e as Error).message, pattern);
      return true;
    });
  }
  const durations: [string, RegExp][] = [
    ["", /Invalid duration "" for --t; use e\.g\. 500ms/],
    ["soon", /Invalid duration "soon" for --t/],
    ["-5s", /Invalid duration "-5s"/],
    ["5d", /Invalid duration "5d"/],
    ["0s", /Invalid duration "0s" for --t; it must be more than zero/],
    ["9".repeat(30), /at most 9007199254740991 ms/],
  ];
  for (const [text, pattern] of durations) {
    assert.throws(() => parseDuration(text, "--t"), (e: unknown) => {
      assert.ok(e instanceof UsageError, text);
      assert.match((e as Error).message, pattern);
      return true;
    });
  }
  assert.throws(() => parseSize("lots"), /Invalid size "lots"; use/);
});

const SPELLINGS = ["1MB", "1M", "1.5M", "64KiB", "2GB"];
const REFUSED = ["lots", "-1", "0", "1T", "99999999999999999999"];

Deno.test("units: run --max-memory and keepmgr --keep-memory refuse the same spellings alike", async () => {
  const state = await Deno.makeTempDir({ prefix: "enarx-units-" });
  try {
    for (const text of REFUSED) {
      // `--flag=value`, so that "-1" is the flag's value and reaches the parser.
      const run = await enarx(["run", `--max-memory=${text}`, "examples/hello.wat"]);
      const keepmgr = await enarx([
        "keepmgr",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state,
        "--wasmldr-command",
        '["true"]',
        `--keep-memory=${text}`,
      ]);
      assert.equal(run.code, 64, run.stderr);
      assert.equal(keepmgr.code, 64, keepmgr.stderr);
      assert.equal(
        run.stderr.replace("--max-memory", "FLAG"),
        keepmgr.stderr.replace("--keep-memory", "FLAG"),
      );
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

/** Starts keepmgr with `--keep-memory text`; resolves with its first stdout line, then stops it. */
async function keepmgrStarts(text: string, state: string): Promise<string> {
  const child = new Deno.Command(`${ROOT}enarx`, {
    args: [
      "keepmgr",
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      state,
      "--wasmldr-command",
      '["true"]',
      "--keep-memory",
      text,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  try {
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      line += value;
    }
  } finally {
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
  }
  return line;
}

Deno.test("units: keepmgr --keep-memory accepts the spellings that run --max-memory accepts", async () => {
  ensureLibwasmtime();
  const state = await Deno.makeTempDir({ prefix: "enarx-units-" });
  try {
    for (const text of SPELLINGS) {
      assert.match(await keepmgrStarts(text, state), /127\.0\.0\.1/, text);
    }
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("units: run --max-memory reads 16MB as 16,000,000 bytes and 16M as 16 MiB", async () => {
  ensureLibwasmtime();
  const probe = workload("probe.wasm");
  for (const [text, bytes] of [["16MB", 16_000_000], ["16M", 16_777_216]] as const) {
    const r = await enarx(["run", "--max-memory", text, probe, "hog"]);
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stderr, new RegExp(`memory limit of ${bytes} bytes`));
  }
});

Deno.test("units: every --help with a size or duration flag documents the units", async () => {
  for (const command of ["run", "keepmgr", "deploy"]) {
    const r = await enarx([command, "--help"]);
    assert.equal(r.code, 0);
    assert.ok(r.stdout.includes(UNITS_HELP), command);
  }
});
