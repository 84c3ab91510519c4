/**
 * keepmgr's create queue end to end (spec/protocol.md, "POST /v1/keeps"):
 * with `--max-creating 2`, 30 deploys started together all succeed while
 * never more than 2 keeps are being created at once, and each deploy is told
 * a place that only moves forward; with the queue full, `enarx deploy` is
 * refused with 503 `queue-full` and exits 69, and a queued `enarx deploy`
 * says how many creates are ahead of it.
 */
import assert from "node:assert/strict";
import { deploy } from "../../runtime/client/deploy.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import { LocalKeepmgr } from "../../runtime/keepmgr/local.ts";
import { fakeWasmldrCommand, SIM_DIR, SIM_ROOT } from "../deploy/_deploy_fixture.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const HELLO = `${ROOT}examples/hello.wat`;

Deno.test("deploy queue: 30 deploys at once with --max-creating 2 all succeed, 2 creates at most at a time", async () => {
  let creating = 0;
  let mostCreating = 0;
  const mgr = await LocalKeepmgr.start({
    simDir: SIM_DIR,
    args: ["--max-creating", "2", "--max-keeps", "64"],
    onLog: (line) => {
      // A keep is admitted ("keep created") when its create leaves the queue,
      // and attested when its evidence arrived.
      if (line.includes('"msg":"keep created"')) mostCreating = Math.max(mostCreating, ++creating);
      if (line.includes('"msg":"keep attested"')) creating--;
    },
  });
  try {
    const module = await Deno.readFile(HELLO);
    const places: number[][] = [];
    const results = await Promise.all(Array.from({ length: 30 }, async () => {
      const seen: number[] = [];
      places.push(seen);
      const out: string[] = [];
      const result = await deploy(
        { module, config: null, args: [], env: {}, stdin: new Uint8Array(0) },
        {
          keepmgr: mgr.url,
          keepmgrToken: mgr.token,
          backend: "nil",
          trustSimulated: mgr.simulatorRoot,
          onQueued: (ahead, isCreating) => void (isCreating || seen.push(ahead)),
          onStdout: (c) => void out.push(new TextDecoder().decode(c)),
        },
      );
      return { status: result.status, out: out.join("") };
    }));
    for (const r of results) {
      assert.equal(r.status, 0);
      assert.match(r.out, /Hello/);
    }
    assert.ok(mostCreating >= 1 && mostCreating <= 2, `${mostCreating} keeps created at once`);
    for (const seen of places) {
      for (let i = 1; i < seen.length; i++) {
        assert.ok(seen[i] <= seen[i - 1], `a place moved back: ${seen.join(", ")}`);
      }
    }
  } finally {
    await mgr.close();
  }
});

/** Reads from `reader` until the text matches `pattern` (or the end, without one); returns it. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pattern?: RegExp,
): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  while (pattern === undefined || !pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

Deno.test("deploy queue: a queued deploy says how many are ahead; past --max-queued it exits 69", async () => {
  const silent = fakeWasmldrCommand("silent");
  const mgr = await LocalKeepmgr.start({
    simDir: SIM_DIR,
    args: ["--max-creating", "1", "--max-queued", "1", "--wasmldr-command", silent],
  });
  const deployArgs = ["deploy", "--keepmgr", mgr.url, "--keepmgr-token", mgr.tokenFile];
  deployArgs.push("--backend", "nil", "--trust-simulated", SIM_ROOT, HELLO);
  let queued: Deno.ChildProcess | undefined;
  try {
    // The one create slot: its keep never sends evidence.
    const client = new KeepmgrClient(mgr.url, { token: mgr.token });
    const first = client.createKeep("nil", new Uint8Array(32)).catch((e) => e);
    while ((await client.listKeeps()).keeps.length === 0) {
      await new Promise((r) => setTimeout(r, 50));
    }
    // The one queue place.
    queued = new Deno.Command(`${ROOT}enarx`, {
      args: deployArgs,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderrOfQueued = queued.stderr.getReader();
    const said = await readUntil(stderrOfQueued, /waiting for keepmgr: \d+ ahead/);
    assert.match(said, /enarx deploy: waiting for keepmgr: 0 ahead/);
    // No place left.
    const refused = await new Deno.Command(`${ROOT}enarx`, { args: deployArgs, stdin: "null" })
      .output();
    const stderr = new TextDecoder().decode(refused.stderr);
    assert.equal(refused.code, 69, stderr);
    assert.match(stderr, /queue-full/);
    assert.match(stderr, /--max-queued 1/);
    assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
    queued.kill("SIGINT");
    const rest = await readUntil(stderrOfQueued);
    assert.equal((await queued.status).code, 130, rest);
    assert.match(rest, /interrupted/);
    queued = undefined;
    await mgr.close();
    assert.ok((await first) instanceof Error, "the silent keep's create never succeeded");
  } finally {
    try {
      queued?.kill("SIGKILL");
    } catch { /* ended */ }
    await queued?.status;
    await mgr.close();
  }
});
