/**
 * `enarx run` end to end: the real CLI as a subprocess, and runWorkload in
 * process, on workloads built from source by tests/workloads/build.sh.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { enarx, ensureLibwasmtime, ROOT, workload } from "../workloads/helpers.ts";
import { runWorkload } from "../../runtime/wasm/workload.ts";
import { parseEnarxConfig } from "../../runtime/wasm/config.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { parseDirOption, splitRunArgs } from "../../cli/run.ts";
import { parseDuration, parseSize as parseByteSize } from "../../runtime/units.ts";

ensureLibwasmtime();
const PROBE = workload("probe.wasm");
const RUST = workload("hello-rs.wasm");

/** Asserts that a failure printed exactly one line, prefixed, without a stack trace. */
function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0], /^enarx: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(stderr, /\n\s+at /);
}

Deno.test("run: the bundled example prints its greeting", async () => {
  const r = await enarx(["run", "examples/hello.wat"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "Hello from a WebAssembly keep!\n");
  assert.equal(r.stderr, "");
});

Deno.test("run: --backend auto picks the strongest launchable backend (nil here)", async () => {
  const r = await enarx(["run", "--backend", "auto", "examples/hello.wat"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "Hello from a WebAssembly keep!\n");
});

Deno.test("run: argv[0] is the module's file name; words after MODULE go to the guest", async () => {
  const r = await enarx(["run", "--no-cache", PROBE, "args", "a b", "--env", "X=1"]);
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout,
    "argv[0]=probe.wasm\nargv[1]=args\nargv[2]=a b\nargv[3]=--env\nargv[4]=X=1\n",
  );
  const dashed = await enarx(["run", "--", PROBE, "args", "--"]);
  assert.equal(dashed.stdout, "argv[0]=probe.wasm\nargv[1]=args\nargv[2]=--\n");
});

Deno.test("run: the guest sees only the environment given", async () => {
  const r = await enarx(["run", "--env", "GREETING=hi", "--env", "EMPTY=", PROBE, "env"], {
    env: { HOST_SECRET: "leak" },
  });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "GREETING=hi\nEMPTY=\n");
});

Deno.test("run: stdin is echoed byte for byte (2 MiB)", async () => {
  const input = new Uint8Array(2 << 20).map((_, i) => (i * 7 + (i >> 11)) & 0xff);
  const r = await enarx(["run", PROBE, "echo"], { stdin: input });
  assert.equal(r.code, 0);
  assert.deepEqual(r.stdoutBytes, input);
});

Deno.test("run: stdout and stderr stay separate", async () => {
  const r = await enarx(["run", PROBE, "streams"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "to stdout\n");
  assert.equal(r.stderr, "to stderr\n");
});

Deno.test("run: exit statuses are the workload's own, proc_exit(0) included", async () => {
  assert.equal((await enarx(["run", PROBE, "exit", "7"])).code, 7);
  assert.equal((await enarx(["run", PROBE, "proc_exit", "0"])).code, 0);
  assert.equal((await enarx(["run", PROBE, "proc_exit", "3"])).code, 3);
  const rust = await enarx(["run", "--env", "GREETING=hi", RUST, "a", "--exit=5"]);
  assert.equal(rust.code, 5);
  assert.equal(
    rust.stdout,
    'hello from rust wasi, args=["a", "--exit=5"]\nGREETING=hi\n',
  );
});

Deno.test("run: preopened directories: read, write, read-only refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "in.txt"), "file contents\n");
    const read = await enarx(["run", "--dir", `${dir}::/data`, PROBE, "read", "/data/in.txt"]);
    assert.equal(read.code, 0);
    assert.equal(read.stdout, "file contents\n");

    const write = await enarx(["run", "--dir", `${dir}::/data`, PROBE, "write", "/data/o", "x"]);
    assert.equal(write.code, 0);
    assert.equal(await Deno.readTextFile(join(dir, "o")), "x");

    const ro = await enarx(["run", "--dir", `${dir}::/data:ro`, PROBE, "write", "/data/p", "y"]);
    assert.equal(ro.code, 2);
    assert.match(ro.stderr, /cannot create \/data\/p/);
    await assert.rejects(Deno.stat(join(dir, "p")), Deno.errors.NotFound);

    const unopened = await enarx(["run", PROBE, "read", "/data/in.txt"]);
    assert.equal(unopened.code, 2);

    const rust = await enarx(["run", "--dir", `${dir}::/data:ro`, RUST, "--ls"]);
    assert.equal(rust.code, 0);
    assert.match(rust.stdout, /entry in\.txt\nentry o\n/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run: a trap prints its message and wasm backtrace, status 134", async () => {
  const r = await enarx(["run", PROBE, "trap"]);
  assert.equal(r.code, 134);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines[0], "enarx: Workload trapped: wasm `unreachable` instruction executed");
  assert.equal(lines[1], "wasm backtrace:");
  assert.match(lines[2], /^ {2}0: 0x[0-9a-f]+ - .*!main$/);
  const panic = await enarx(["run", RUST, "--panic"]);
  assert.equal(panic.code, 134);
  assert.match(panic.stderr, /asked to panic/);
});

Deno.test("run: --timeout stops an endless loop with status 124", async () => {
  const r = await enarx(["run", "--timeout", "300ms", PROBE, "loop"]);
  assert.equal(r.code, 124);
  assertOneLine(r.stderr, /timeout of 300 ms/);
});

Deno.test("run: --timeout also ends a guest blocked reading a stdin that never ends", async () => {
  const child = new Deno.Command(`${ROOT}enarx`, {
    args: ["run", "--timeout", "200ms", PROBE, "echo"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await child.output(); // stdin stays open throughout
  await child.stdin.close().catch(() => {});
  assert.equal(out.code, 124);
  assertOneLine(new TextDecoder().decode(out.stderr), /blocked in a host call, and was abandoned/);
});

Deno.test("run: --fuel stops a long computation with status 125, and enough fuel finishes", async () => {
  const starved = await enarx(["run", "--fuel", "100000", PROBE, "spin", "100000000"]);
  assert.equal(starved.code, 125);
  assertOneLine(starved.stderr, /fuel/);
  const fed = await enarx(["run", "--fuel", "100000000", PROBE, "spin", "1000"]);
  assert.equal(fed.code, 0);
  assert.equal(fed.stdout, "spun 1000\n");
});

Deno.test("run: --max-memory stops a memory hog with status 126", async () => {
  const r = await enarx(["run", "--max-memory", "16MiB", PROBE, "hog"]);
  assert.equal(r.code, 126);
  assert.match(r.stderr, /out of memory after 1[0-5] MiB\n/);
  assert.match(r.stderr, /enarx: Workload reached its memory limit of 16777216 bytes/);
});

Deno.test("run: bad input gets one line and a documented status", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const notWasm = join(dir, "notes.wasm");
    await Deno.writeFile(notWasm, new Uint8Array([1, 2, 3, 0xff, 0xfe]));
    const truncated = join(dir, "truncated.wasm");
    await Deno.writeFile(truncated, (await Deno.readFile(PROBE)).subarray(0, 5000));
    const badWat = join(dir, "bad.wat");
    await Deno.writeTextFile(badWat, "(module (func");
    const badToml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(badToml, 'args = ["a"]\ncolour = "blue"\n');
    const listenToml = join(dir, "listen.toml");
    await Deno.writeTextFile(
      listenToml,
      '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
        '[[files]]\nkind = "connect"\nprot = "tcp"\nhost = "127.0.0.1"\nport = 9\nmtls = true\n',
    );
    const cases: [string, string[], number, RegExp][] = [
      ["not a wasm file", [notWasm], 65, /is not a WebAssembly module/],
      ["truncated module", [truncated], 65, /is not valid WebAssembly: .*end-of-file/],
      ["invalid text", [badWat], 65, /not valid WebAssembly text/],
      ["missing module", [join(dir, "nope.wasm")], 66, /Cannot find module/],
      ["no _start", [workload("no_start.wat")], 65, /exports no "_start"/],
      [
        "unsatisfiable imports",
        [workload("bad_imports.wat")],
        65,
        /env::host_call, wasi_snapshot_preview1::no_such_call$/,
      ],
      ["missing preopen", ["--dir", join(dir, "absent"), PROBE], 66, /no such directory/],
      ["bad Enarx.toml", ["--wasmcfgfile", badToml, PROBE], 65, /unknown key "colour"/],
      [
        "mtls on a tcp socket",
        ["--wasmcfgfile", listenToml, PROBE],
        65,
        /entry 4 has mtls but prot = "tcp"; set prot = "tls"/,
      ],
      [
        "bad --service-name",
        ["--service-name", "bad_name.example", PROBE],
        64,
        /Invalid --service-name "bad_name\.example"/,
      ],
      ["bad duration", ["--timeout", "soon", PROBE], 64, /Invalid duration "soon"/],
      [
        "backend not launchable yet",
        ["--backend", "sgx", PROBE],
        69,
        /Backend "sgx" cannot launch/,
      ],
      ["unknown backend", ["--backend", "qemu", PROBE], 64, /Unknown backend "qemu"/],
      [
        "kvm with --dir",
        ["--backend", "kvm", "--dir", dir, PROBE],
        64,
        /--dir applies to nil keeps only/,
      ],
    ];
    for (const [name, args, code, pattern] of cases) {
      await t.step(name, async () => {
        const r = await enarx(["run", ...args]);
        assert.equal(r.code, code, r.stderr);
        assertOneLine(r.stderr, pattern);
        assert.equal(r.stdout, "");
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run: Enarx.toml gives args, env, FD_COUNT/FD_NAMES and dirs; CLI adds to it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "data"));
    await Deno.writeTextFile(join(dir, "data", "f.txt"), "from config dir\n");
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(
      toml,
      'args = ["env"]\n[env]\nA = "1"\n[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n' +
        '[[files]]\nkind = "stderr"\nname = "log"\n[[dirs]]\nhost = "data"\nguest = "/cfg"\n' +
        "readonly = true\n",
    );
    const r = await enarx(["run", "--wasmcfgfile", toml, "--env", "B=2", PROBE]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "A=1\nFD_COUNT=3\nFD_NAMES=stdin:stdout:log\nB=2\n");
    const read = await enarx(["run", "--wasmcfgfile", toml, PROBE, "ignored"]);
    assert.equal(read.code, 0);
    const cat = await enarx(["run", "--dir", `${dir}::/d`, PROBE, "read", "/d/data/f.txt"]);
    assert.equal(cat.stdout, "from config dir\n");
    const nullOut = join(dir, "null.toml");
    await Deno.writeTextFile(nullOut, '[[files]]\nkind = "stdin"\n[[files]]\nkind = "null"\n');
    const quiet = await enarx(["run", "--wasmcfgfile", nullOut, PROBE, "streams"]);
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stdout, "");
    assert.equal(quiet.stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run: --help documents the options", async () => {
  const r = await enarx(["run", "--help"]);
  assert.equal(r.code, 0);
  for (
    const flag of ["--backend", "--wasmcfgfile", "--dir", "--env", "--timeout", "--max-memory"]
  ) {
    assert.match(r.stdout, new RegExp(flag));
  }
});

Deno.test("cli/run: argument parsers", () => {
  assert.deepEqual(splitRunArgs(["--dir", "a", "m.wasm", "--dir", "x"]), {
    own: ["--dir", "a", "m.wasm"],
    guest: ["--dir", "x"],
  });
  assert.deepEqual(splitRunArgs(["m.wasm", "--", "-x"]), { own: ["m.wasm"], guest: ["-x"] });
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("5s"), 5000);
  assert.equal(parseDuration("1m"), 60000);
  assert.equal(parseDuration("2"), 2000);
  assert.throws(() => parseDuration("0s"), /more than zero/);
  assert.equal(parseByteSize("64MiB"), 64 << 20);
  assert.equal(parseByteSize("1GiB"), 1 << 30);
  assert.equal(parseByteSize("1MB"), 1_000_000);
  assert.equal(parseByteSize("65536"), 65536);
  assert.throws(() => parseByteSize("lots"), /Invalid size/);
  assert.deepEqual(parseDirOption("/a::/b:ro"), { host: "/a", guest: "/b", readOnly: true });
  assert.deepEqual(parseDirOption("/a"), { host: "/a", guest: "/a", readOnly: false });
  assert.deepEqual(parseDirOption("/a::/b"), { host: "/a", guest: "/b", readOnly: false });
  assert.throws(() => parseDirOption("::/b"), /Invalid --dir/);
});

Deno.test("runWorkload: streams stdout and stderr to callbacks, stdin from bytes", async () => {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const result = await runWorkload(
    { module: PROBE, args: ["echo"] },
    {
      stdin: new TextEncoder().encode("piped in\n"),
      stdout: (c) => void out.push(c),
      stderr: (c) => void err.push(c),
    },
  );
  assert.deepEqual(result, { status: 0, reason: "exit" });
  assert.equal(new TextDecoder().decode(concat(out)), "piped in\n");
  assert.equal(err.length, 0);

  const both: string[] = [];
  const streams = await runWorkload({ module: PROBE, args: ["streams"] }, {
    stdout: (c) => void both.push(`out:${new TextDecoder().decode(c)}`),
    stderr: (c) => void both.push(`err:${new TextDecoder().decode(c)}`),
  });
  assert.equal(streams.status, 0);
  assert.deepEqual(both.sort(), ["err:to stderr\n", "out:to stdout\n"]);
});

Deno.test("runWorkload: a slow async sink gets every byte in order (backpressure)", async () => {
  const size = 8 << 20;
  let received = 0;
  let mismatch = -1;
  const result = await runWorkload({ module: PROBE, args: ["stdout-bytes", String(size)] }, {
    stdout: async (chunk) => {
      for (let i = 0; i < chunk.length; i++) {
        const expected = 97 + ((received + i) % 65536) % 26;
        if (chunk[i] !== expected && mismatch < 0) mismatch = received + i;
      }
      received += chunk.length;
      await new Promise((resolve) => setTimeout(resolve, 1));
    },
  });
  assert.equal(result.status, 0);
  assert.equal(received, size);
  assert.equal(mismatch, -1);
});

Deno.test("runWorkload: argv, env, config and limits", async () => {
  const out: Uint8Array[] = [];
  const config = parseEnarxConfig('args = ["env"]\n[env]\nFROM = "config"\n');
  const env = await runWorkload(
    { module: await Deno.readFile(PROBE), config, env: { FROM: "caller" } },
    { stdout: (c) => void out.push(c) },
  );
  assert.equal(env.status, 0);
  assert.equal(
    new TextDecoder().decode(concat(out)),
    "FROM=caller\nFD_COUNT=3\nFD_NAMES=stdin:stdout:stderr\n",
  );

  const timeout = await runWorkload(
    { module: PROBE, args: ["loop"], limits: { timeoutMs: 200 } },
    { stdout: "null" },
  );
  assert.equal(timeout.status, 124);
  assert.equal(timeout.reason, "timeout");

  const fuel = await runWorkload(
    { module: PROBE, args: ["spin", "100000000"], limits: { fuel: 50_000 } },
    { stdout: "null" },
  );
  assert.deepEqual([fuel.status, fuel.reason], [125, "fuel"]);

  const trap = await runWorkload({ module: PROBE, args: ["trap"] }, {});
  assert.deepEqual([trap.status, trap.reason], [134, "trap"]);
  assert.match(trap.message!, /unreachable/);
  assert.ok(trap.backtrace!.some((f) => f.endsWith("!main")));

  const memory = await runWorkload(
    { module: PROBE, args: ["hog"], limits: { maxMemoryBytes: 8 << 20 } },
    { stderr: "null" },
  );
  assert.deepEqual([memory.status, memory.reason], [126, "memory"]);

  const named: Uint8Array[] = [];
  const name = await runWorkload(
    { module: await Deno.readFile(PROBE), name: "main.wasm", args: ["args"] },
    { stdout: (c) => void named.push(c) },
  );
  assert.equal(name.status, 0);
  // Output may arrive in any number of chunks; only their concatenation counts.
  assert.equal(new TextDecoder().decode(concat(named)), "argv[0]=main.wasm\nargv[1]=args\n");
});

Deno.test("runWorkload: an AbortSignal stops the guest like a timeout", async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  const result = await runWorkload({ module: PROBE, args: ["loop"] }, {
    signal: controller.signal,
  });
  assert.deepEqual([result.status, result.reason], [124, "timeout"]);
});

Deno.test("runWorkload: bad input rejects with EnarxError, and a sink's error is reported", async () => {
  await assert.rejects(
    runWorkload({ module: new Uint8Array([0, 0x61, 0x73, 0x6d, 9]) }, {}),
    (e: unknown) => e instanceof EnarxError && e.code === "module-invalid" && e.exitStatus === 65,
  );
  await assert.rejects(
    runWorkload({ module: PROBE, args: ["streams"] }, {
      stdout: () => {
        throw new Error("sink broke");
      },
      stderr: "null",
    }),
    /sink broke/,
  );
});

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// The repository root must hold ./enarx for the CLI tests.
Deno.test("run: tests run against this checkout's ./enarx", async () => {
  assert.ok((await Deno.stat(`${ROOT}enarx`)).isFile);
});

Deno.test("run: a large module being compiled gets a progress line on a terminal, never in a pipe", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 5 MiB of data makes a large module that still compiles at once.
    const module = join(dir, "big.wat");
    await Deno.writeTextFile(
      module,
      `(module (memory 100) (data (i32.const 0) "${
        "x".repeat(5 << 20)
      }") (func (export "_start")))`,
    );
    const piped = await enarx(["run", "--no-cache", module]);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stderr, "");
    // script(1) gives the command a terminal.
    const command = `${join(ROOT, "enarx")} run --no-cache ${module}`;
    const tty = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(tty.code, 0);
    assert.match(
      new TextDecoder().decode(tty.stdout),
      /enarx: compiling ".*big\.wat" \(5\.0 MiB\)\r?\n/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
