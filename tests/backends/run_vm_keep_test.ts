/**
 * `enarx run --backend kvm|sev` (cli/run.ts, runtime/client/local_keep_run.ts):
 * a VM keep started through a local keepmgr, its evidence verified before
 * the module is sent, the workload's output streamed and its status passed
 * through (kvm, end to end under TCG); on a host without SEV-SNP, `--backend
 * sev` fails at once with exit 69 naming each missing piece; a VM keep's
 * sockets come from its Enarx.toml (the run waits for and is told each
 * endpoint; a tls socket gets the default or given names); `enarx run` of
 * a nil keep loads none of that code.
 */
import assert from "node:assert/strict";
import { enarx, ROOT } from "../workloads/helpers.ts";
import { kvmLaunchable } from "../../runtime/backends/kvm.ts";
import { sevPieces } from "../../runtime/backends/sev/sev_launch.ts";
import { eventually, SIM_DIR, taggedProcessesWith } from "../deploy/_deploy_fixture.ts";
import { requires } from "../_requires.ts";
import { vmRunSockets } from "../../runtime/client/local_keep_run.ts";
import { parseDeployedConfig } from "../../runtime/wasm/config.ts";

const SNP_HOST = sevPieces().every((p) => p.ok);
const SOCKETS = `${ROOT}tests/workloads/build/sockets.wasm`;

/** Prints a line, then exits with status 3 (WASI preview 1). */
const PRINT_AND_EXIT_3 = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "streamed from a kvm keep\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 25))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 3))))
`;

Deno.test({
  name: "run vm keep: --backend sev on a host without SEV-SNP is exit 69 naming what is missing",
  ignore: SNP_HOST,
  fn: async () => {
    const started = performance.now();
    const r = await enarx(["run", "--backend", "sev", `${ROOT}examples/hello.wat`]);
    const elapsed = performance.now() - started;
    assert.equal(r.code, 69, r.stderr);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^enarx: Cannot run a sev keep on this host: missing /);
    for (const piece of sevPieces().filter((p) => !p.ok)) {
      assert.ok(lines[0].includes(`Launch needs ${piece.name}: ${piece.detail}`), piece.name);
    }
    assert.match(lines[0], /kvm_amd sev_snp=1/);
    assert.match(lines[0], /"enarx platform info" says how to fix each/);
    assert.doesNotMatch(r.stderr, /\bat \S+:\d+:\d+/); // no stack trace
    // Refused before any keepmgr or VM starts.
    assert.ok(elapsed < 15_000, `${elapsed} ms`);
  },
});

Deno.test("run vm keep: --dir, --fuel, --listen and --connect belong to nil keeps (exit 64)", async () => {
  const flags = [["--dir", "/tmp"], ["--fuel", "1000"], ["--listen", "web=127.0.0.1:0"], [
    "--connect",
    "db=127.0.0.1:5432",
  ]];
  for (const flag of flags) {
    const r = await enarx(["run", "--backend", "kvm", ...flag, `${ROOT}examples/hello.wat`]);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, new RegExp(`${flag[0]} applies to nil keeps only`));
  }
  // A VM keep takes its sockets from an Enarx.toml; --service-name needs a tls one there.
  const names = await enarx([
    "run",
    "--backend",
    "kvm",
    "--service-name",
    "localhost",
    `${ROOT}examples/hello.wat`,
  ]);
  assert.equal(names.code, 64, names.stderr);
  assert.match(names.stderr, /--service-name needs a \[\[files\]\] socket with prot = "tls"/);
  const missing = await enarx(["run", "--backend", "kvm", `${ROOT}examples/absent.wasm`]);
  assert.equal(missing.code, 66, missing.stderr);
  assert.match(missing.stderr, /Cannot find module ".*absent\.wasm"/);
});

Deno.test("run vm keep: enarx run of a nil keep loads no registry, deploy or keepmgr code", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${ROOT}cli/main.ts`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const modules: string[] = JSON.parse(new TextDecoder().decode(out.stdout)).modules
    .map((m: { specifier: string }) => m.specifier);
  assert.ok(modules.some((m) => m.endsWith("/cli/main.ts")));
  for (const heavy of ["client/local_keep_run.ts", "client/deploy.ts", "keepmgr/local.ts"]) {
    assert.equal(modules.some((m) => m.endsWith(heavy)), false, heavy);
  }
  assert.equal(modules.some((m) => m.endsWith("runtime/backends/mod.ts")), false);
});

Deno.test({
  name:
    "run vm keep: --backend kvm boots, attests and runs a module, streaming its output and status",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const dir = await Deno.makeTempDir({ prefix: "enarx-run-kvm-" });
    const tag = crypto.randomUUID();
    try {
      const module = `${dir}/print_and_exit_3.wat`;
      await Deno.writeTextFile(module, PRINT_AND_EXIT_3);
      const started = performance.now();
      const r = await enarx(["run", "--backend", "kvm", module], {
        env: { ENARX_TEST_TAG: tag, ENARX_SNP_SIM_DIR: SIM_DIR },
      });
      console.log(`enarx run --backend kvm: ${(performance.now() - started).toFixed(0)} ms`);
      assert.equal(r.stdout, "streamed from a kvm keep\n", r.stderr);
      assert.equal(r.code, 3, r.stderr);
      // Scripts get the workload's stderr only: no progress lines when stderr is not a terminal.
      assert.equal(r.stderr, "");
      // The keepmgr and the VM end with the run.
      assert.ok(
        await eventually(
          () =>
            taggedProcessesWith(tag, "keepmgr").length === 0 &&
            taggedProcessesWith(tag, "-kernel").length === 0,
          15_000,
        ),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

Deno.test("run vm keep: the endpoints a run waits for, and the names of a tls socket's certificate", () => {
  const stdio =
    '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';
  const listen = (name: string, prot: string) =>
    `[[files]]\nkind = "listen"\nprot = "${prot}"\nname = "${name}"\nport = 0\n`;
  assert.deepEqual(vmRunSockets(undefined, undefined), { services: 0 });
  assert.deepEqual(vmRunSockets(parseDeployedConfig(stdio + listen("web", "tcp")), undefined), {
    services: 1,
  });
  const tls = parseDeployedConfig(stdio + listen("web", "tcp") + listen("api", "tls"));
  assert.deepEqual(vmRunSockets(tls, undefined), {
    services: 2,
    tls: { names: ["localhost", "127.0.0.1"] },
  });
  assert.deepEqual(vmRunSockets(tls, ["api.example.test"]), {
    services: 2,
    tls: { names: ["api.example.test"] },
  });
  assert.throws(
    () => vmRunSockets(parseDeployedConfig(stdio + listen("web", "tcp")), ["x.example"]),
    /--service-name needs a \[\[files\]\] socket with prot = "tls"/,
  );
});

Deno.test({
  name:
    "run vm keep: an Enarx.toml listen socket of a kvm keep is reached through the printed endpoint",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const dir = await Deno.makeTempDir({ prefix: "enarx-run-kvm-" });
    try {
      const toml = `${dir}/Enarx.toml`;
      await Deno.writeTextFile(
        toml,
        '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
          '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "web"\nport = 0\n',
      );
      const child = new Deno.Command(`${ROOT}enarx`, {
        args: ["run", "--backend", "kvm", "--wasmcfgfile", toml, SOCKETS, "echo", "web", "1"],
        env: { ENARX_SNP_SIM_DIR: SIM_DIR },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stdout = new Response(child.stdout).text();
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      let port: number | undefined;
      while (port === undefined) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
        // Printed even though stderr is not a terminal: a script needs the port.
        const match = /^enarx: endpoint web: tcp:\/\/127\.0\.0\.1:(\d+)\n/m.exec(seen);
        if (match) port = Number(match[1]);
      }
      assert.ok(port !== undefined, seen);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const reading = new Response(conn.readable).text();
      await conn.write(new TextEncoder().encode("into the VM and back"));
      await conn.closeWrite();
      assert.equal(await reading, "into the VM and back");
      while (!(await reader.read()).done) { /* drain */ }
      assert.equal((await child.status).code, 0, seen);
      assert.equal(await stdout, "served 1\n");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});
