/**
 * keepmgr end to end with a fake wasmldr (tests/deploy/fake_wasmldr.ts): the real
 * `enarx keepmgr` and `enarx keepldr` processes, on loopback, ephemeral ports.
 */
import assert from "node:assert/strict";
import { decodeCbor, encodeCbor } from "../../runtime/protocol/cbor.ts";
import {
  parseCreateKeepResponse,
  parseDeliverKeyResponse,
  parseErrorResponse,
  parseInfoResponse,
  parseListKeepsResponse,
  parseShowKeepResponse,
} from "../../runtime/protocol/messages.ts";
import { keepUnitName, systemdRunArgs } from "../../runtime/keepmgr/systemd.ts";
import { fileExists, requires } from "../_requires.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const DENO = Deno.execPath();
const FAKE = `${ROOT}tests/deploy/fake_wasmldr.ts`;

/** Temporary state directories, removed when the test module ends. */
const TEMP_DIRS: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of TEMP_DIRS) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  }
});

async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "enarx-keepmgr-test-" });
  TEMP_DIRS.push(dir);
  return dir;
}

function fakeCommand(mode: string, ...extra: string[]): string[] {
  return [DENO, "run", "-A", "--quiet", "--config", `${ROOT}deno.json`, FAKE, mode, ...extra];
}

interface Keepmgr {
  proc: Deno.ChildProcess;
  port: number;
  stateDir: string;
  client: Deno.HttpClient;
  stderr: Promise<string>;
  /** The operator's token (from the start line's token file). */
  token: string;
}

async function startKeepmgr(
  options: { mode?: string; stateDir?: string; args?: string[] } = {},
): Promise<Keepmgr> {
  const stateDir = options.stateDir ?? await tempDir();
  const proc = new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      "--quiet",
      "--config",
      `${ROOT}deno.json`,
      `${ROOT}cli/main.ts`,
      "keepmgr",
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      stateDir,
      "--json-logs",
      "--step-timeout",
      "20s",
      "--wasmldr-command",
      JSON.stringify(fakeCommand(options.mode ?? "normal")),
      ...(options.args ?? []),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(proc.stderr).text();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`keepmgr did not start: ${await stderr}`);
    text += value;
  }
  reader.releaseLock();
  proc.stdout.cancel().catch(() => {});
  const start = JSON.parse(text.split("\n")[0]);
  assert.match(start.listening, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(start.cert_sha256, /^[0-9a-f]{64}$/);
  const cert = await Deno.readTextFile(`${stateDir}/tls/cert.pem`);
  const client = Deno.createHttpClient({ caCerts: [cert] });
  const token = (await Deno.readTextFile(start.token_file)).trim();
  return { proc, port: start.port, stateDir, client, stderr, token };
}

async function stopKeepmgr(
  km: Keepmgr,
  signal: Deno.Signal = "SIGTERM",
): Promise<Deno.CommandStatus> {
  try {
    km.proc.kill(signal);
  } catch { /* already gone */ }
  const status = await km.proc.status;
  km.client.close();
  await km.stderr;
  return status;
}

interface Reply {
  status: number;
  body: unknown;
}

/** A request with the operator's token unless `headers` says otherwise. */
async function call(
  km: Keepmgr,
  method: string,
  path: string,
  body?: Uint8Array | unknown,
  headers: Record<string, string> = {
    "content-type": "application/cbor",
    authorization: `Bearer ${km.token}`,
  },
): Promise<Reply> {
  const bytes = body === undefined
    ? undefined
    : body instanceof Uint8Array
    ? body
    : encodeCbor(body);
  const response = await fetch(`https://127.0.0.1:${km.port}${path}`, {
    method,
    client: km.client,
    headers,
    body: bytes as Uint8Array<ArrayBuffer> | undefined,
  } as RequestInit); // Deno's init also takes `client` (a type @types/node's fetch hides)
  assert.equal(response.headers.get("content-type"), "application/cbor");
  return {
    status: response.status,
    body: decodeCbor(new Uint8Array(await response.arrayBuffer())),
  };
}

function createBody(): unknown {
  return { v: 1, backend: "nil", nonce: crypto.getRandomValues(new Uint8Array(32)) };
}

function errorCodeOf(reply: Reply): string {
  return parseErrorResponse(reply.body).error.code;
}

/** Pids of processes whose command line contains `marker`. */
function pidsWith(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replaceAll("\0", " ");
      if (cmdline.includes(marker) && Number(entry.name) !== Deno.pid) {
        pids.push(Number(entry.name));
      }
    } catch { /* gone */ }
  }
  return pids;
}

/**
 * The processes of keep `id`: the one its record names (keepmgr hosts the
 * keep: the keep's own) and any whose command line names the keep (a keepldr).
 */
function keepPids(km: Keepmgr, id: string): number[] {
  const pids = new Set(pidsWith(id));
  try {
    const record = JSON.parse(Deno.readTextFileSync(`${km.stateDir}/keeps/${id}.json`));
    if (typeof record.pid === "number") pids.add(record.pid);
  } catch { /* no record (yet, or any more) */ }
  return [...pids];
}

/** The children of process `pid` (every thread's, from /proc/PID/task/TID/children). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
      children.push(...text.split(" ").filter((t) => t !== "").map(Number));
    }
  } catch { /* gone */ }
  return children;
}

/** The parent of process `pid` (from /proc/PID/status), or undefined when it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(status.match(/^PPid:\s+(\d+)$/m)?.[1]);
  } catch {
    return undefined;
  }
}

/** True when `pid` runs (exists and is not a zombie). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms, up to `ms`, and returns its last answer. */
async function eventually(check: () => boolean | Promise<boolean>, ms = 15_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return await check();
}

async function readAll(conn: Deno.Conn): Promise<string> {
  return await new Response(conn.readable).text();
}

Deno.test("keepmgr: info, create, list, show, deliver key, forward, exit, delete", async () => {
  const km = await startKeepmgr();
  try {
    const info = parseInfoResponse((await call(km, "GET", "/v1/info")).body);
    assert.deepEqual(info.backends, ["nil"]);

    const created = await call(km, "POST", "/v1/keeps", createBody());
    assert.equal(created.status, 201);
    const keep = parseCreateKeepResponse(created.body);
    assert.equal(keep.backend, "nil");
    assert.equal(new TextDecoder().decode(keep.evidence), `fake evidence for ${keep.keep}`);
    assert.equal(keep.sealing_key.length, 65);

    const list = parseListKeepsResponse((await call(km, "GET", "/v1/keeps")).body);
    assert.deepEqual(list.keeps.map((k) => [k.keep, k.state]), [[keep.keep, "waiting-for-key"]]);
    const record = JSON.parse(Deno.readTextFileSync(`${km.stateDir}/keeps/${keep.keep}.json`));
    // A warm keep (the default pool) has the work directory it was launched with.
    assert.match(record.workDir, new RegExp(`^${km.stateDir}/work/pool-[0-9a-f]+$`));
    assert.ok(Deno.statSync(record.workDir).isDirectory);
    assert.ok(!exists(`${km.stateDir}/work/${keep.keep}`));

    const delivered = await call(km, "POST", `/v1/keeps/${keep.keep}/key`, {
      v: 1,
      enc: new Uint8Array(65),
      ct: new Uint8Array(120),
    });
    assert.equal(delivered.status, 200);
    const { connect } = parseDeliverKeyResponse(delivered.body);
    assert.equal(connect.host, "127.0.0.1");

    // A second key for the same keep is refused.
    const again = await call(km, "POST", `/v1/keeps/${keep.keep}/key`, {
      v: 1,
      enc: new Uint8Array(65),
      ct: new Uint8Array(120),
    });
    assert.equal(again.status, 409);
    assert.equal(errorCodeOf(again), "wrong-state");

    const conn = await Deno.connect({ hostname: connect.host, port: connect.port });
    assert.equal(await readAll(conn), `hello from keep ${keep.keep}\n`);

    assert.ok(
      await eventually(async () => {
        const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
        return shown.state === "exited";
      }),
    );
    const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
    assert.equal(shown.status, 0);
    assert.equal(shown.reason, "exit");
    // Resources freed: record, work directory, processes, forward.
    assert.ok(await eventually(() => !exists(record.workDir)));
    assert.ok(await eventually(() => !alive(record.pid)), "the keep's process ended");
    assert.ok(await eventually(() => !exists(`${km.stateDir}/keeps/${keep.keep}.json`)));
    assert.ok(!exists(`${km.stateDir}/work/${keep.keep}`));
    await assert.rejects(Deno.connect({ hostname: connect.host, port: connect.port }));

    const deleted = await call(km, "DELETE", `/v1/keeps/${keep.keep}`);
    assert.equal(deleted.status, 200);
    assert.equal(parseShowKeepResponse(deleted.body).state, "exited");
    const gone = await call(km, "GET", `/v1/keeps/${keep.keep}`);
    assert.equal(gone.status, 404);
    assert.equal(errorCodeOf(gone), "not-found");
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("keepmgr: malformed, oversized and invalid bodies get CBOR errors on every endpoint", async () => {
  const km = await startKeepmgr();
  try {
    const keep = parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body);
    const cases: [string, string, Uint8Array | unknown, number, string][] = [
      ["POST", "/v1/keeps", new Uint8Array([0xa1, 0x61]), 400, "cbor-malformed"],
      ["POST", "/v1/keeps", new Uint8Array([0x9f, 0xff]), 400, "cbor-malformed"],
      ["POST", "/v1/keeps", new Uint8Array(0), 400, "cbor-malformed"],
      ["POST", "/v1/keeps", encodeCbor({ v: 1, backend: "nil" }), 400, "message-invalid"],
      ["POST", "/v1/keeps", { ...createBody() as object, extra: 1 }, 400, "message-invalid"],
      ["POST", "/v1/keeps", { v: 2, backend: "nil", nonce: new Uint8Array(32) }, 400, "version"],
      [
        "POST",
        "/v1/keeps",
        { v: 1, backend: "sgx", nonce: new Uint8Array(32) },
        400,
        "message-invalid",
      ],
      [
        "POST",
        "/v1/keeps",
        { v: 1, backend: "kvm", nonce: new Uint8Array(32) },
        400,
        "backend-unavailable",
      ],
      [
        "POST",
        "/v1/keeps",
        { v: 1, backend: "nil", nonce: new Uint8Array(5000) },
        413,
        "cbor-too-large",
      ],
      ["POST", `/v1/keeps/${keep.keep}/key`, new Uint8Array([0xff]), 400, "cbor-malformed"],
      [
        "POST",
        `/v1/keeps/${keep.keep}/key`,
        { v: 1, enc: "x", ct: new Uint8Array(1) },
        400,
        "message-invalid",
      ],
      [
        "POST",
        `/v1/keeps/${keep.keep}/key`,
        { v: 1, enc: new Uint8Array(1), ct: new Uint8Array(70_000) },
        413,
        "cbor-too-large",
      ],
      [
        "POST",
        "/v1/keeps/nosuchkeep/key",
        { v: 1, enc: new Uint8Array(1), ct: new Uint8Array(1) },
        404,
        "not-found",
      ],
      ["GET", "/v1/keeps/nosuchkeep", undefined, 404, "not-found"],
      ["DELETE", "/v1/keeps/nosuchkeep", undefined, 404, "not-found"],
      ["DELETE", `/v1/keeps/${keep.keep}`, new Uint8Array([0xff]), 400, "body-unexpected"],
      ["PUT", "/v1/keeps", encodeCbor({}), 405, "method-not-allowed"],
      ["GET", "/v2/keeps", undefined, 404, "not-found"],
      ["GET", "/v1/nothing", undefined, 404, "not-found"],
    ];
    for (const [method, path, body, status, code] of cases) {
      const reply = await call(km, method, path, body);
      assert.equal(reply.status, status, `${method} ${path} ${JSON.stringify(reply.body)}`);
      assert.equal(errorCodeOf(reply), code, `${method} ${path}`);
      assert.ok(parseErrorResponse(reply.body).error.message.length > 0);
    }
    const wrongType = await call(km, "POST", "/v1/keeps", encodeCbor(createBody()), {
      "content-type": "application/json",
      authorization: `Bearer ${km.token}`,
    });
    assert.equal(wrongType.status, 415);
    // A 1 MiB body is refused before the keepmgr buffers it all.
    const huge = await call(km, "POST", "/v1/keeps", new Uint8Array(1 << 20));
    assert.equal(huge.status, 413);
    // The keepmgr is still healthy and the keep still waits for its key.
    const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
    assert.equal(shown.state, "waiting-for-key");
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

Deno.test("keepmgr: --max-keeps refuses one keep too many with 503 too-many-keeps", async () => {
  const km = await startKeepmgr({ args: ["--max-keeps", "2"] });
  try {
    for (let i = 0; i < 2; i++) {
      assert.equal((await call(km, "POST", "/v1/keeps", createBody())).status, 201);
    }
    const third = await call(km, "POST", "/v1/keeps", createBody());
    assert.equal(third.status, 503);
    assert.equal(errorCodeOf(third), "too-many-keeps");
    // Deleting one frees a slot.
    const first = parseListKeepsResponse((await call(km, "GET", "/v1/keeps")).body).keeps[0];
    assert.equal((await call(km, "DELETE", `/v1/keeps/${first.keep}`)).status, 200);
    assert.equal((await call(km, "POST", "/v1/keeps", createBody())).status, 201);
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

Deno.test("keepmgr: a keep that dies after hello fails create with the reason", async () => {
  const km = await startKeepmgr({ mode: "die-after-hello", args: ["--warm-keeps", "0"] });
  try {
    const reply = await call(km, "POST", "/v1/keeps", createBody());
    assert.equal(reply.status, 502);
    assert.equal(errorCodeOf(reply), "keep-failed");
    const [keep] = parseListKeepsResponse((await call(km, "GET", "/v1/keeps")).body).keeps;
    assert.equal(keep.state, "failed");
    assert.match(keep.reason!, /keep-died: .*exited with status 3/);
    assert.ok(await eventually(() => childrenOf(km.proc.pid).length === 0));
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

Deno.test("keepmgr: a keep that never answers times out with 504, and is stopped", async () => {
  const km = await startKeepmgr({
    mode: "silent",
    args: ["--step-timeout", "1500ms", "--warm-keeps", "0"],
  });
  try {
    const reply = await call(km, "POST", "/v1/keeps", createBody());
    assert.equal(reply.status, 504);
    assert.equal(errorCodeOf(reply), "timeout");
    const [keep] = parseListKeepsResponse((await call(km, "GET", "/v1/keeps")).body).keeps;
    assert.equal(keep.state, "failed");
    assert.match(keep.reason!, /timeout waiting for evidence/);
    assert.ok(await eventually(() => childrenOf(km.proc.pid).length === 0), "the keep was stopped");
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

Deno.test("keepmgr: a keep is one process, keepmgr's child, and its death fails the keep", async () => {
  const km = await startKeepmgr({ args: ["--warm-keeps", "0"] });
  try {
    const keep = parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body);
    const pids = keepPids(km, keep.keep);
    assert.equal(pids.length, 1, `one process: ${pids}`);
    assert.equal(parentOf(pids[0]), km.proc.pid);
    assert.equal(pidsWith(`--keep ${keep.keep}`).length, 0, "no keepldr process");
    Deno.kill(pids[0], "SIGKILL");
    assert.ok(
      await eventually(async () => {
        const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
        return shown.state === "failed";
      }),
    );
    const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
    assert.match(shown.reason!, /keep-died: .*killed by SIGKILL/);
    const key = await call(km, "POST", `/v1/keeps/${keep.keep}/key`, {
      v: 1,
      enc: new Uint8Array(1),
      ct: new Uint8Array(1),
    });
    assert.equal(key.status, 409);
    assert.ok(await eventually(() => !exists(`${km.stateDir}/work/${keep.keep}`)));
    assert.ok(!exists(`${km.stateDir}/keeps/${keep.keep}.json`));
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

Deno.test("keepmgr: a keepldr killed mid-deploy marks the keep failed and frees it", async () => {
  const km = await startKeepmgr({ args: ["--keepldr-process"] });
  try {
    const keep = parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body);
    const pids = pidsWith(`--keep ${keep.keep}`);
    assert.ok(pids.length >= 1, "the keepldr runs");
    const keepldr = pids.find((pid) =>
      Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").includes("keepldr")
    )!;
    Deno.kill(keepldr, "SIGKILL");
    assert.ok(
      await eventually(async () => {
        const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
        return shown.state === "failed";
      }),
    );
    const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
    assert.match(shown.reason!, /keepldr was killed by SIGKILL/);
    const key = await call(km, "POST", `/v1/keeps/${keep.keep}/key`, {
      v: 1,
      enc: new Uint8Array(1),
      ct: new Uint8Array(1),
    });
    assert.equal(key.status, 409);
    // The wasmldr in its process group is gone too, and so are its files.
    assert.ok(await eventually(() => pidsWith(keep.keep).length === 0));
    assert.ok(await eventually(() => !exists(`${km.stateDir}/work/${keep.keep}`)));
    assert.ok(!exists(`${km.stateDir}/keeps/${keep.keep}.json`));
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
});

Deno.test("keepmgr: SIGTERM stops every keep and leaves no process behind", async () => {
  const km = await startKeepmgr();
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    ids.push(
      parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body).keep,
    );
  }
  const pids = ids.flatMap((id) => keepPids(km, id));
  assert.ok(pids.length >= 3, `keep processes run: ${pids}`);
  // The warm keeps too (keepmgr's other children).
  pids.push(...childrenOf(km.proc.pid).filter((pid) => !pids.includes(pid)));
  const status = await stopKeepmgr(km, "SIGTERM");
  assert.equal(status.code, 0);
  for (const pid of pids) assert.ok(!alive(pid), `process ${pid} outlived keepmgr`);
  assert.deepEqual([...Deno.readDirSync(`${km.stateDir}/keeps`)], []);
  assert.deepEqual([...Deno.readDirSync(`${km.stateDir}/work`)], []);
});

Deno.test("keepmgr: keeps of a keepmgr killed with SIGKILL end by themselves", async () => {
  const km = await startKeepmgr();
  const keep = parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body);
  const pids = [...keepPids(km, keep.keep), ...childrenOf(km.proc.pid)];
  assert.ok(pids.length >= 1);
  await stopKeepmgr(km, "SIGKILL");
  // The keeps, warm ones too, see their channel close and end.
  assert.ok(
    await eventually(() => pids.every((pid) => !alive(pid))),
    `left: ${pids.filter(alive)}`,
  );
  // The record stays for the next keepmgr, which forgets it.
  assert.ok(exists(`${km.stateDir}/keeps/${keep.keep}.json`));
  const next = await startKeepmgr({ stateDir: km.stateDir });
  try {
    assert.ok(!exists(`${km.stateDir}/keeps/${keep.keep}.json`));
    assert.ok(!exists(`${km.stateDir}/work/${keep.keep}`));
  } finally {
    assert.equal((await stopKeepmgr(next)).code, 0);
  }
});

Deno.test("keepmgr: a work directory no record names is removed at the next start, unless its keepldr runs", async () => {
  // No warm keeps: a keep launched for its create works in work/<id>.
  const km = await startKeepmgr({ args: ["--warm-keeps", "0"] });
  const keep = parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body);
  const pids = keepPids(km, keep.keep);
  const work = `${km.stateDir}/work`;
  assert.ok(exists(`${work}/${keep.keep}`));
  await stopKeepmgr(km, "SIGKILL");
  assert.ok(await eventually(() => pids.every((pid) => !alive(pid))), `left: ${pids}`);
  // As if keepmgr had been killed before it recorded the keep.
  Deno.removeSync(`${km.stateDir}/keeps/${keep.keep}.json`);
  // A keep whose keepldr still runs (its command line says so), and a folder that is no keep's.
  const liveId = "ab".repeat(16);
  Deno.mkdirSync(`${work}/${liveId}`);
  Deno.mkdirSync(`${work}/not-a-keep`);
  const live = new Deno.Command(DENO, {
    args: fakeCommand("sleep", "keepldr", "--keep", liveId).slice(1),
    stdin: "null",
  }).spawn();
  try {
    assert.ok(await eventually(() => pidsWith(`--keep ${liveId}`).length > 0));
    const next = await startKeepmgr({ stateDir: km.stateDir });
    try {
      assert.ok(!exists(`${work}/${keep.keep}`), "the stray work directory stayed");
      assert.ok(exists(`${work}/${liveId}`), "a running keepldr's work directory was removed");
      assert.ok(exists(`${work}/not-a-keep`));
    } finally {
      assert.equal((await stopKeepmgr(next)).code, 0);
    }
  } finally {
    live.kill("SIGKILL");
    await live.status;
  }
});

Deno.test("keepmgr: restart kills leftover keepldrs that are really ours, and only those", async () => {
  const stateDir = await tempDir();
  await Deno.mkdir(`${stateDir}/keeps`, { recursive: true });
  const leftoverId = "leftover0keep";
  const strangerId = "stranger0keep";
  // A process that looks like our keepldr for leftoverId (its command line says so)...
  const leftover = new Deno.Command(DENO, {
    args: fakeCommand("sleep", "keepldr", "--keep", leftoverId).slice(1),
    stdin: "null",
    detached: true,
  }).spawn();
  // ...and an unrelated process whose pid a stale record names.
  const stranger = new Deno.Command(DENO, {
    args: fakeCommand("sleep", "unrelated").slice(1),
    stdin: "null",
  }).spawn();
  try {
    assert.ok(await eventually(() => pidsWith(`--keep ${leftoverId}`).length > 0));
    const write = (id: string, pid: number) =>
      Deno.writeTextFileSync(
        `${stateDir}/keeps/${id}.json`,
        JSON.stringify({ keep: id, pid, created: new Date().toISOString() }),
      );
    write(leftoverId, leftover.pid);
    write(strangerId, stranger.pid);
    Deno.writeTextFileSync(`${stateDir}/keeps/garbage.json`, "{not json");

    const km = await startKeepmgr({ stateDir });
    try {
      assert.equal((await leftover.status).signal, "SIGKILL");
      assert.ok(alive(stranger.pid), "an unrelated process was killed");
      assert.deepEqual([...Deno.readDirSync(`${stateDir}/keeps`)], []);
    } finally {
      assert.equal((await stopKeepmgr(km)).code, 0);
    }
    assert.match(await km.stderr, /stopped a keep left by an earlier keepmgr.*leftover0keep/);
  } finally {
    try {
      leftover.kill("SIGKILL");
    } catch { /* already gone */ }
    stranger.kill("SIGKILL");
    await stranger.status;
    await leftover.status;
  }
});

Deno.test("keepmgr: warm keeps are launched ahead, each claimed by one create, and replaced", async () => {
  const km = await startKeepmgr({ args: ["--warm-keeps", "nil=2"] });
  try {
    assert.ok(await eventually(() => childrenOf(km.proc.pid).length === 2), "two warm keeps");
    const warm = childrenOf(km.proc.pid);
    const claimed = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const keep = parseCreateKeepResponse(
        (await call(km, "POST", "/v1/keeps", createBody())).body,
      );
      // The keep learnt its id (and would learn the nonce) from the claim's hello.
      assert.equal(new TextDecoder().decode(keep.evidence), `fake evidence for ${keep.keep}`);
      const [pid] = keepPids(km, keep.keep);
      assert.ok(!claimed.has(pid), `process ${pid} claimed twice`);
      if (i === 0) assert.ok(warm.includes(pid), "the first create claimed a warm keep");
      claimed.add(pid);
      // The pool is refilled: its two plus the keeps claimed so far.
      assert.ok(await eventually(() => childrenOf(km.proc.pid).length === 2 + claimed.size));
    }
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
  assert.deepEqual([...Deno.readDirSync(`${km.stateDir}/work`)], []);
});

Deno.test("keepmgr: warm keeps that die before their claim are replaced ever more slowly, not in a loop", async () => {
  const km = await startKeepmgr({ mode: "die-at-start", args: ["--warm-keeps", "nil=2"] });
  let stderr: string;
  let createdAt = "";
  try {
    await new Promise((r) => setTimeout(r, 3_000));
    createdAt = new Date().toISOString();
    // A create still gets an answer: the keep it is given dies, and it says so.
    const reply = await call(km, "POST", "/v1/keeps", createBody());
    assert.equal(reply.status, 502);
    assert.equal(errorCodeOf(reply), "keep-failed");
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
    stderr = await km.stderr;
  }
  const retries = stderr.split("\n").filter((l) => l.includes("a warm keep ended before its claim"))
    .map((l) => JSON.parse(l)).filter((e) => e.ts < createdAt).map((e) => e.retry_ms as number);
  // Both first warm keeps died and were noticed; the waits doubled (250, 500, 1000, ...), so
  // in about 3 s there were a handful of launches, where a loop would have made hundreds.
  assert.ok(retries.length >= 2, stderr);
  assert.ok(retries.length <= 12, `${retries.length} warm keeps launched: ${retries}`);
  for (let i = 1; i < retries.length; i++) assert.ok(retries[i] >= retries[i - 1], `${retries}`);
  assert.ok(retries.at(-1)! >= 1_000, `${retries}`);
});

Deno.test("keepmgr: restart kills a hosted keep's process only if it started when recorded", async () => {
  const stateDir = await tempDir();
  await Deno.mkdir(`${stateDir}/keeps`, { recursive: true });
  const spawn = () =>
    new Deno.Command(DENO, {
      args: fakeCommand("sleep", "hosted").slice(1),
      stdin: "null",
      detached: true,
    }).spawn();
  const ours = spawn();
  const reused = spawn();
  try {
    const write = (id: string, pid: number, started: number) =>
      Deno.writeTextFileSync(
        `${stateDir}/keeps/${id}.json`,
        JSON.stringify({ keep: id, pid, started, created: new Date().toISOString() }),
      );
    write("hosted0keep", ours.pid, startTime(ours.pid));
    // The same pid at another start time: a process that reused the pid.
    write("reused0keep", reused.pid, startTime(reused.pid) - 1);
    const km = await startKeepmgr({ stateDir });
    try {
      assert.equal((await ours.status).signal, "SIGKILL");
      assert.ok(alive(reused.pid), "a process that reused a recorded pid was killed");
    } finally {
      assert.equal((await stopKeepmgr(km)).code, 0);
    }
  } finally {
    for (const p of [ours, reused]) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
    }
  }
});

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
}

Deno.test("keepmgr: usage errors are one line with status 64", async () => {
  for (
    const args of [
      ["keepmgr"],
      ["keepmgr", "--listen", "nowhere"],
      ["keepmgr", "--listen", "127.0.0.1:0", "--max-keeps", "0"],
      ["keepmgr", "--listen", "127.0.0.1:0", "--backends", "tdx"],
      ["keepmgr", "--listen", "127.0.0.1:0", "--keep-timeout", "soon"],
      ["keepmgr", "--listen", "127.0.0.1:0", "--warm-keeps", "nil=lots"],
      ["keepmgr", "--listen", "127.0.0.1:0", "--warm-keeps", "tdx=1"],
      ["keepmgr", "--listen", "127.0.0.1:0", "--warm-keeps", "1", "--keepldr-process"],
    ]
  ) {
    const out = await new Deno.Command(DENO, {
      args: ["run", "-A", "--quiet", "--config", `${ROOT}deno.json`, `${ROOT}cli/main.ts`, ...args],
      stdin: "null",
    }).output();
    assert.equal(out.code, 64, args.join(" "));
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stderr, /^enarx: [A-Z-]/);
    assert.equal(stderr.trim().split("\n").length, 1);
  }
});

Deno.test("keepmgr: --systemd without systemd as PID 1 is a clear error (status 69)", async () => {
  if (Deno.readTextFileSync("/proc/1/comm").trim() === "systemd") return; // a real host
  const stateDir = await tempDir();
  const out = await new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      "--quiet",
      "--config",
      `${ROOT}deno.json`,
      `${ROOT}cli/main.ts`,
      "keepmgr",
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      stateDir,
      "--systemd",
    ],
    stdin: "null",
  }).output();
  assert.equal(out.code, 69);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /^enarx: Cannot run keeps as systemd units: PID 1 is ".*", not systemd; run keepmgr without --systemd/,
  );
});

Deno.test("keepmgr: systemd-run gets the unit name, limits and the keepldr command", () => {
  const args = systemdRunArgs(keepUnitName("abc"), ["enarx", "keepldr", "--keep", "abc"], {
    memoryMax: 268435456,
    runtimeMaxSec: 70.5,
    env: { XDG_CACHE_HOME: "/var/cache/enarx-keepmgr" },
  });
  // Where the digest cache is: a transient unit has none of keepmgr's environment.
  assert.ok(args.includes("--setenv=XDG_CACHE_HOME=/var/cache/enarx-keepmgr"));
  assert.ok(args.indexOf("--setenv=XDG_CACHE_HOME=/var/cache/enarx-keepmgr") < args.indexOf("--"));
  assert.deepEqual(args.slice(0, 2), ["--unit", "enarx-keep-abc"]);
  for (const flag of ["--collect", "--pipe", "--wait"]) assert.ok(args.includes(flag), flag);
  assert.ok(args.includes("MemoryMax=268435456"));
  assert.ok(args.includes("RuntimeMaxSec=71"));
  assert.deepEqual(args.slice(args.indexOf("--")), ["--", "enarx", "keepldr", "--keep", "abc"]);
});

Deno.test("keepmgr: dist/enarx-keepmgr.service is a unit that runs keepmgr with a state directory", () => {
  const unit = Deno.readTextFileSync(`${ROOT}dist/enarx-keepmgr.service`);
  assert.match(
    unit,
    /^ExecStart=\/usr\/local\/bin\/enarx keepmgr --listen \S+ --state-dir \$\{STATE_DIRECTORY\}/m,
  );
  assert.match(unit, /^StateDirectory=enarx-keepmgr$/m);
  // The digest and module caches (XDG_CACHE_HOME), passed on to keep units.
  assert.match(unit, /^CacheDirectory=enarx-keepmgr$/m);
  assert.match(unit, /^Environment=XDG_CACHE_HOME=%C\/enarx-keepmgr$/m);
  assert.match(unit, /^NoNewPrivileges=yes$/m);
  // Limits: keepmgr's own memory and tasks, and each keep's memory.
  assert.match(unit, /^MemoryMax=\d+[KMG]?$/m);
  assert.match(unit, /^TasksMax=\d+$/m);
  assert.match(unit, /^ExecStart=.* --keep-memory \d+[KMG]\b/m);
  assert.match(unit, /^WantedBy=multi-user.target$/m);
  for (const section of ["[Unit]", "[Service]", "[Install]"]) assert.ok(unit.includes(section));
  // MemoryDenyWriteExecute would break V8's JIT.
  assert.doesNotMatch(unit, /MemoryDenyWriteExecute/);
});

Deno.test({
  name: "keepmgr: systemd-analyze verify finds nothing wrong in dist/enarx-keepmgr.service",
  // systemd's own checker, where systemd is installed (it is on our machines).
  ...requires({
    tool: "systemd-analyze",
    present: fileExists("/usr/bin/systemd-analyze"),
    remedy: "apt-get install systemd",
  }, async () => {
    const dir = await Deno.makeTempDir();
    try {
      // The binary need not be installed for the check: point ExecStart at one that exists.
      const unit = Deno.readTextFileSync(`${ROOT}dist/enarx-keepmgr.service`)
        .replaceAll("/usr/local/bin/enarx", "/bin/true");
      await Deno.writeTextFile(`${dir}/enarx-keepmgr.service`, unit);
      const out = await new Deno.Command("/usr/bin/systemd-analyze", {
        args: ["verify", `${dir}/enarx-keepmgr.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, said);
      // systemd-analyze exits 0 on unknown keys but names them: any word from it is a finding.
      assert.equal(said.trim(), "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

Deno.test("keepmgr: a second keepmgr on the same state directory refuses to start and kills nothing", async () => {
  const km = await startKeepmgr();
  try {
    const keep = parseCreateKeepResponse((await call(km, "POST", "/v1/keeps", createBody())).body);
    const pids = keepPids(km, keep.keep);
    assert.ok(pids.length >= 1);
    const second = new Deno.Command(DENO, {
      args: [
        "run",
        "-A",
        "--quiet",
        "--config",
        `${ROOT}deno.json`,
        `${ROOT}cli/main.ts`,
        "keepmgr",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        km.stateDir,
        "--wasmldr-command",
        JSON.stringify(fakeCommand("normal")),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A second keepmgr that starts would serve forever: stop it after 20 s.
    const timer = setTimeout(() => second.kill("SIGKILL"), 20_000);
    const out = await second.output();
    clearTimeout(timer);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 69, stderr);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(stderr, new RegExp(`in use by another keepmgr \\(pid ${km.proc.pid}\\)`));
    // The first keepmgr's keep is untouched and still served.
    assert.ok(pids.every(alive), "the second keepmgr killed a live keep");
    assert.ok(exists(`${km.stateDir}/keeps/${keep.keep}.json`));
    const shown = parseShowKeepResponse((await call(km, "GET", `/v1/keeps/${keep.keep}`)).body);
    assert.equal(shown.state, "waiting-for-key");
  } finally {
    assert.equal((await stopKeepmgr(km)).code, 0);
  }
  // Once the first has stopped, the state directory is free again.
  const next = await startKeepmgr({ stateDir: km.stateDir });
  assert.equal((await stopKeepmgr(next)).code, 0);
});

/** Mounts a 256 KiB tmpfs (root only), runs `fn` on it, and always unmounts it. */
async function withSmallDisk(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir],
  }).output();
  assert.equal(mount.code, 0, new TextDecoder().decode(mount.stderr));
  try {
    await fn(dir);
  } finally {
    await new Deno.Command("umount", { args: ["-l", dir] }).output();
  }
}

/** Fills the file system of `dir` to the last byte. */
async function fillDisk(dir: string): Promise<void> {
  using file = await Deno.open(`${dir}/filler`, { write: true, create: true });
  const block = new Uint8Array(4096);
  try {
    while (true) await file.write(block);
  } catch { /* full */ }
}

function tempFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...tempFiles(path));
    else if (entry.name.includes(".tmp")) found.push(path);
  }
  return found;
}

Deno.test({
  name:
    "keepmgr: a full disk under the state directory: start exits 74, a create fails cleanly, no .tmp is left",
  ignore: Deno.uid() !== 0,
  async fn() {
    await withSmallDisk(async (dir) => {
      // A create on a disk that filled up after start: the keep fails, keepmgr stays up.
      const km = await startKeepmgr({ stateDir: `${dir}/state` });
      try {
        await fillDisk(dir);
        const reply = await call(km, "POST", "/v1/keeps", createBody());
        assert.equal(reply.status, 502);
        assert.match(parseErrorResponse(reply.body).error.message, /No space left/);
        assert.deepEqual(tempFiles(dir), []);
        const info = await call(km, "GET", "/v1/info");
        assert.equal(info.status, 200);
      } finally {
        assert.equal((await stopKeepmgr(km)).code, 0);
      }
      // A start on the full disk: an I/O error (74), not an internal one.
      const out = await new Deno.Command(DENO, {
        args: [
          "run",
          "-A",
          "--quiet",
          "--config",
          `${ROOT}deno.json`,
          `${ROOT}cli/main.ts`,
          "keepmgr",
          "--listen",
          "127.0.0.1:0",
          "--state-dir",
          `${dir}/fresh`,
          "--wasmldr-command",
          JSON.stringify(fakeCommand("normal")),
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 74, stderr);
      assert.doesNotMatch(stderr, /internal error/);
      // The keep records' temporaries (the TLS files' are runtime/keepmgr/tls.ts's own).
      assert.deepEqual(tempFiles(dir).filter((path) => !path.includes("/tls/")), []);
    });
  },
});
