/**
 * Deploy under attack and failure, with a real keepmgr: a host that tampers
 * with nonces, keys, evidence and addresses, races the client to the keep,
 * kills keepldr or the keepmgr itself; a workload that never ends; and 50
 * deploys at once. Every failure must name its step and leave nothing
 * running.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { deploy, DeployError } from "../../runtime/client/deploy.ts";
import { decodeCbor, encodeCbor } from "../../runtime/protocol/cbor.ts";
import { SealingKeyPair } from "../../runtime/protocol/sealing.ts";
import { freshNonce } from "../../runtime/protocol/report_data.ts";
import {
  generateTlsKey,
  makeKeepCertificate,
  pemFromDer,
} from "../../runtime/protocol/keep_tls.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import {
  ARGV_WAT,
  DEFAULT_WARM_KEEPS,
  eventually,
  hostileKeepmgr,
  keepProcesses,
  LOOP_WAT,
  SIM_ROOT,
  startKeepmgr,
  STREAMS_WAT,
  taggedProcesses,
  wasmldrsOf,
  workload,
} from "./_deploy_fixture.ts";

type CborMap = Record<string, unknown>;
const decoder = new TextDecoder();
const isKeys = (path: string) => path === "/v1/keeps";
const isKey = (path: string) => /^\/v1\/keeps\/[^/]+\/key$/.test(path);

function failsAt(step: string, code: string, exit?: number) {
  return (e: unknown) => {
    assert.ok(e instanceof DeployError, String(e));
    assert.equal(e.step, step, e.message);
    assert.equal(e.code, code, e.message);
    if (exit !== undefined) assert.equal(e.exitStatus, exit, e.message);
    assert.match(e.message, new RegExp(`^Deploy step [0-9-]+ \\(${step}\\) failed: [A-Z]`));
    return true;
  };
}

/** Stops the keepmgr and checks that none of its processes is left. */
async function closeAndCheck(mgr: { close(): Promise<void>; tag: string }) {
  await mgr.close();
  assert.ok(
    await eventually(() => taggedProcesses(mgr.tag).length === 0),
    `left running: ${taggedProcesses(mgr.tag).join(", ")}`,
  );
}

Deno.test("faults: evidence for another nonce is refused at verify; no key is sent", async () => {
  const mgr = await startKeepmgr();
  try {
    await using host = hostileKeepmgr(mgr.url, {
      request: (path, body) => {
        if (!isKeys(path)) return body;
        const req = decodeCbor(body) as CborMap;
        return encodeCbor({ ...req, nonce: freshNonce() });
      },
    });
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
      }),
      failsAt("verify", "report-data-mismatch", 1),
    );
    assert.equal(host.seen.filter(isKeyRequest).length, 0);
  } finally {
    await closeAndCheck(mgr);
  }
});

function isKeyRequest(line: string): boolean {
  const [method, path] = line.split(" ");
  return method === "POST" && isKey(path);
}

Deno.test("faults: a keepmgr that swaps the sealing key is refused before the TLS key is sent", async () => {
  const mgr = await startKeepmgr();
  try {
    const swapped = await SealingKeyPair.generate();
    await using host = hostileKeepmgr(mgr.url, {
      reply: (path, reply) => {
        if (!isKeys(path) || reply.status !== 201) return reply;
        const created = decodeCbor(reply.body) as CborMap;
        return { ...reply, body: encodeCbor({ ...created, sealing_key: swapped.publicKey }) };
      },
    });
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
      }),
      failsAt("verify", "report-data-mismatch", 1),
    );
    assert.equal(host.seen.filter(isKeyRequest).length, 0);
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: evidence replayed from another keep (another key and nonce) is refused", async () => {
  const mgr = await startKeepmgr();
  try {
    let first: CborMap | undefined;
    await using host = hostileKeepmgr(mgr.url, {
      reply: (path, reply) => {
        if (!isKeys(path) || reply.status !== 201) return reply;
        const created = decodeCbor(reply.body) as CborMap;
        if (first === undefined) {
          first = created;
          return reply;
        }
        const replayed = { ...created, evidence: first.evidence, sealing_key: first.sealing_key };
        return { ...reply, body: encodeCbor(replayed) };
      },
    });
    const ok = await deploy(workload(STREAMS_WAT), {
      keepmgr: host.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
    });
    assert.equal(ok.status, 7);
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
      }),
      failsAt("verify", "report-data-mismatch", 1),
    );
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: a keep certificate for another key is refused at connect; nothing is uploaded", async () => {
  const mgr = await startKeepmgr();
  let impostorRequests = 0;
  const ac = new AbortController();
  let keepId = "";
  try {
    // The host's impostor answers with the keep's names but its own key.
    let impostor: Deno.HttpServer | undefined;
    await using host = hostileKeepmgr(mgr.url, {
      reply: async (path, reply) => {
        if (isKeys(path) && reply.status === 201) {
          keepId = (decodeCbor(reply.body) as CborMap).keep as string;
        }
        if (!isKey(path) || reply.status !== 200) return reply;
        const key = await generateTlsKey();
        impostor = Deno.serve({
          hostname: "127.0.0.1",
          port: 0,
          cert: await makeKeepCertificate(key, keepId),
          key: pemFromDer(key.pkcs8, "PRIVATE KEY"),
          signal: ac.signal,
          onListen() {},
        }, () => {
          impostorRequests++;
          return new Response("");
        });
        const port = (impostor.addr as Deno.NetAddr).port;
        return { ...reply, body: encodeCbor({ v: 1, connect: { host: "127.0.0.1", port } }) };
      },
    });
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
      }),
      failsAt("connect", "keep-cert-mismatch", 1),
    );
    assert.equal(impostorRequests, 0);
    ac.abort();
    await impostor?.finished;
  } finally {
    ac.abort();
    await closeAndCheck(mgr);
  }
});

/** Uploads a workload of its own to the keep without the sealed token, as the host could. */
function raceUpload(port: number, authorization?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = encodeCbor({
      v: 1,
      module: new TextEncoder().encode(STREAMS_WAT),
      config: null,
      args: [],
      env: {},
      stdin: new Uint8Array(0),
    });
    const req = https.request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/v1/workload",
      rejectUnauthorized: false,
      headers: authorization === undefined ? {} : { authorization },
    }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(body);
  });
}

Deno.test("faults: the host races the client to the keep without the token: 401, and the client still succeeds", async () => {
  const mgr = await startKeepmgr();
  const statuses: number[] = [];
  try {
    await using host = hostileKeepmgr(mgr.url, {
      reply: async (path, reply) => {
        if (!isKey(path) || reply.status !== 200) return reply;
        const { connect } = decodeCbor(reply.body) as { connect: { port: number } };
        statuses.push(await raceUpload(connect.port));
        statuses.push(await raceUpload(connect.port, `Bearer ${"00".repeat(32)}`));
        return reply;
      },
    });
    const out: string[] = [];
    const result = await deploy(workload(STREAMS_WAT), {
      keepmgr: host.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
      onStdout: (c) => void out.push(decoder.decode(c)),
    });
    assert.deepEqual(statuses, [401, 401]);
    assert.equal(result.status, 7);
    assert.equal(out.join(""), "out\n");
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: a keep killed mid-deploy fails the deploy at deliver and leaves nothing", async () => {
  const mgr = await startKeepmgr();
  try {
    await using host = hostileKeepmgr(mgr.url, {
      request: async (path, body) => {
        if (!isKey(path)) return body;
        const pids = keepProcesses(mgr);
        assert.equal(pids.length, 1);
        Deno.kill(pids[0], "SIGKILL");
        await eventually(() => keepProcesses(mgr).length === 0);
        return body;
      },
    });
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
        timeoutMs: 30_000,
      }),
      (e: unknown) => {
        assert.ok(e instanceof DeployError, String(e));
        assert.equal(e.step, "deliver", e.message);
        assert.notEqual(e.code, "internal");
        return true;
      },
    );
    assert.ok(await eventually(() => wasmldrsOf(mgr).length === DEFAULT_WARM_KEEPS));
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: a keepmgr killed mid-deploy is keepmgr-unreachable; its restart cleans up the keep", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "enarx-keepmgr-" });
  const tag = crypto.randomUUID();
  try {
    const first = await startKeepmgr({ stateDir, tag });
    const orphans: number[] = [];
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: first.url,
        keepmgrToken: first.token,
        trustSimulated: SIM_ROOT,
        timeoutMs: 30_000,
        onStep: (event) => {
          if (event.kind === "step-start" && event.id === "seal") {
            orphans.push(...wasmldrsOf(first));
            first.kill("SIGKILL");
          }
        },
      }),
      failsAt("deliver", "keepmgr-unreachable", 69),
    );
    assert.ok(orphans.length >= 1);
    await first.status;
    const second = await startKeepmgr({ stateDir, tag });
    try {
      assert.ok(
        await eventually(() => !orphans.some((pid) => wasmldrsOf(second).includes(pid))),
        "the orphaned keep (or a warm keep of the killed keepmgr) still runs",
      );
      assert.ok(![...Deno.readDirSync(`${stateDir}/keeps`)].some((e) => e.name.endsWith(".json")));
      // And it serves new deploys.
      const result = await deploy(workload(STREAMS_WAT), {
        keepmgr: second.url,
        keepmgrToken: second.token,
        trustSimulated: SIM_ROOT,
      });
      assert.equal(result.status, 7);
    } finally {
      await closeAndCheck(second);
    }
  } finally {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("faults: a workload that never ends times out with 124 and its keep is stopped", async () => {
  const mgr = await startKeepmgr();
  try {
    const result = await deploy(workload(LOOP_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
      timeoutMs: 3_000,
    });
    assert.equal(result.status, 124);
    assert.equal(result.reason, "timeout");
    assert.ok(await eventually(() => wasmldrsOf(mgr).length === DEFAULT_WARM_KEEPS));
    const listed = await new KeepmgrClient(mgr.url, { token: mgr.token }).listKeeps();
    assert.ok(listed.keeps.every((k) => k.state !== "running"), JSON.stringify(listed.keeps));
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: a keepmgr that answers garbage is a protocol error at create", async () => {
  const mgr = await startKeepmgr();
  try {
    await using host = hostileKeepmgr(mgr.url, {
      reply: (path, reply) =>
        isKeys(path) ? { status: 201, body: new TextEncoder().encode("<html>") } : reply,
    });
    await assert.rejects(
      deploy(workload(STREAMS_WAT), {
        keepmgr: host.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
      }),
      failsAt("create", "keepmgr-protocol", 76),
    );
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: 50 concurrent deploys through one keepmgr each get their own output", async () => {
  const mgr = await startKeepmgr({ args: ["--max-keeps", "64"] });
  try {
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const out: Uint8Array[] = [];
        const result = await deploy(workload(ARGV_WAT, { args: [`keep-${i}`] }), {
          keepmgr: mgr.url,
          keepmgrToken: mgr.token,
          trustSimulated: SIM_ROOT,
          timeoutMs: 120_000,
          onStdout: (c) => void out.push(c.slice()),
        });
        return { i, result, out: out.map((c) => decoder.decode(c)).join("") };
      }),
    );
    for (const { i, result, out } of results) {
      assert.equal(result.status, 0, `deploy ${i}`);
      assert.equal(out, `main.wasm\0keep-${i}\0`, `deploy ${i}`);
    }
    assert.equal(new Set(results.map((r) => r.result.keep)).size, 50);
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("faults: Ctrl-C on enarx deploy deletes the running keep and exits 130", async () => {
  const mgr = await startKeepmgr();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/loop.wat`, LOOP_WAT);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-all",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        new URL("../../cli/main.ts", import.meta.url).pathname,
        "deploy",
        "--keepmgr",
        mgr.url,
        "--trust-simulated",
        SIM_ROOT,
        "--quiet",
        `${dir}/loop.wat`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { ENARX_KEEPMGR_TOKEN_FILE: mgr.tokenFile },
    }).spawn();
    const client = new KeepmgrClient(mgr.url, { token: mgr.token });
    let running = false;
    for (let i = 0; i < 200 && !running; i++) {
      running = (await client.listKeeps()).keeps.some((k) => k.state === "running");
      if (!running) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(running, "the keep never ran");
    child.kill("SIGINT");
    const out = await child.output();
    assert.equal(out.code, 130, decoder.decode(out.stderr));
    assert.match(decoder.decode(out.stderr), /interrupted/);
    assert.ok(await eventually(() => wasmldrsOf(mgr).length === DEFAULT_WARM_KEEPS));
  } finally {
    await Deno.remove(dir, { recursive: true });
    await closeAndCheck(mgr);
  }
});
