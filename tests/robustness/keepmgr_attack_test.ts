/**
 * keepmgr under attack on loopback (issue "Hardening", "The keepmgr API"):
 * anonymous and foreign callers, slow clients holding connections, oversized
 * heads, floods of creates, a CBOR bomb, SIGTERM with requests in flight,
 * and confidential text from a deployed Enarx.toml. After each attack the
 * daemon is still up and a normal deploy succeeds. Bounded: at most 200
 * connections, a few seconds each.
 *
 * @module
 */
import assert from "node:assert/strict";
import { decodeCbor, encodeCbor } from "../../runtime/protocol/cbor.ts";
import { parseErrorResponse } from "../../runtime/protocol/messages.ts";
import { KeepmgrClient, KeepmgrError } from "../../runtime/client/keepmgr_client.ts";
import { deploy } from "../../runtime/client/deploy.ts";
import type { LocalKeepmgr } from "../../runtime/keepmgr/local.ts";
import {
  eventually,
  fakeWasmldrCommand,
  startKeepmgr,
  STREAMS_WAT,
  workload,
} from "../deploy/_deploy_fixture.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A raw HTTPS exchange: writes `request` as is, returns status, headers and CBOR body. */
async function raw(mgr: LocalKeepmgr, request: string | Uint8Array) {
  const url = new URL(mgr.url);
  const conn = await Deno.connectTls({
    hostname: url.hostname,
    port: Number(url.port),
    caCerts: [await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`)],
  });
  await conn.write(typeof request === "string" ? new TextEncoder().encode(request) : request);
  const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  const split = bytes.findIndex((_, i) =>
    bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10
  );
  const head = decoder.decode(bytes.subarray(0, split));
  return {
    status: Number(head.split(" ")[1]),
    head: head.toLowerCase(),
    body: decodeCbor(bytes.subarray(split + 4)),
  };
}

function post(path: string, body: Uint8Array, headers = ""): Uint8Array {
  const head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/cbor\r\n` +
    `content-length: ${body.length}\r\n${headers}\r\n`;
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(new TextEncoder().encode(head));
  bytes.set(body, head.length);
  return bytes;
}

function createBody(): Uint8Array {
  return encodeCbor({ v: 1, backend: "nil", nonce: crypto.getRandomValues(new Uint8Array(32)) });
}

/** A normal deploy through `mgr` succeeds (the daemon is up and serving). */
async function deploysNormally(mgr: LocalKeepmgr): Promise<void> {
  const result = await deploy(workload(STREAMS_WAT), {
    keepmgr: mgr.url,
    keepmgrToken: mgr.token,
    // This keepmgr's own simulator, named: trust on first use would record it
    // in the user's trusted-simulators file for this URL, and a later test's
    // keepmgr on the same port (another simulator) would then be refused.
    trustSimulated: mgr.simulatorRoot,
    timeoutMs: 60_000,
  });
  assert.equal(result.status, 7);
}

async function refusedWith(work: Promise<unknown>, status: number, code: string): Promise<void> {
  await assert.rejects(work, (e: unknown) => {
    assert.ok(e instanceof KeepmgrError, String(e));
    assert.equal(e.httpStatus, status, e.message);
    assert.equal(e.code, code);
    return true;
  });
}

Deno.test("keepmgr attack: the token file is 0600 in a 0700 state directory", async () => {
  const mgr = await startKeepmgr();
  try {
    assert.equal(mgr.tokenFile, `${mgr.stateDir}/token`);
    assert.equal(Deno.statSync(mgr.tokenFile).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(mgr.stateDir).mode! & 0o777, 0o700);
    assert.match(mgr.token, /^[0-9a-f]{64}$/);
  } finally {
    await mgr.close();
  }
});

Deno.test("keepmgr attack: anonymous and foreign callers get 401; the capability holder controls its keep", async () => {
  const mgr = await startKeepmgr();
  try {
    const anonymous = new KeepmgrClient(mgr.url);
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    await refusedWith(anonymous.createKeep("nil", nonce), 401, "unauthorized");
    await refusedWith(anonymous.listKeeps(), 401, "unauthorized");
    const forged = new KeepmgrClient(mgr.url, { token: "0".repeat(64) });
    await refusedWith(forged.createKeep("nil", nonce), 401, "unauthorized");
    // The exit status of a refused token is 77, with the remedy in the message.
    await assert.rejects(anonymous.listKeeps(), (e: unknown) => {
      assert.ok(e instanceof KeepmgrError);
      assert.equal(e.exitStatus, 77);
      assert.match(e.message, /--keepmgr-token FILE/);
      return true;
    });
    // info stays public.
    assert.deepEqual((await anonymous.info()).backends, ["nil"]);

    const owner = new KeepmgrClient(mgr.url, { token: mgr.token });
    const mine = await owner.createKeep("nil", nonce);
    const other = await owner.createKeep("nil", crypto.getRandomValues(new Uint8Array(32)));
    assert.equal(mine.capability.length, 32);
    // Anonymous DELETE, show and key delivery of someone's keep: 401, the keep lives on.
    for (const method of ["GET", "DELETE"]) {
      const reply = await raw(
        mgr,
        `${method} /v1/keeps/${mine.keep} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`,
      );
      assert.equal(reply.status, 401, method);
      assert.equal(parseErrorResponse(reply.body).error.code, "unauthorized");
      assert.match(reply.head, /www-authenticate: bearer/);
    }
    // Another keep's capability does not open this one.
    const otherCap = `authorization: Bearer ${other.capability.toHex()}\r\n`;
    const foreign = await raw(
      mgr,
      `DELETE /v1/keeps/${mine.keep} HTTP/1.1\r\nhost: 127.0.0.1\r\n${otherCap}\r\n`,
    );
    assert.equal(foreign.status, 401);
    const key = await raw(
      mgr,
      post(
        `/v1/keeps/${mine.keep}/key`,
        encodeCbor({ v: 1, enc: new Uint8Array(65), ct: new Uint8Array(16) }),
      ),
    );
    assert.equal(key.status, 401);
    // Its own capability, and nothing else, shows and deletes it.
    const capOnly = `authorization: Bearer ${mine.capability.toHex()}\r\n`;
    const shown = await raw(
      mgr,
      `GET /v1/keeps/${mine.keep} HTTP/1.1\r\nhost: 127.0.0.1\r\n${capOnly}\r\n`,
    );
    assert.equal(shown.status, 200);
    const listed = await raw(mgr, `GET /v1/keeps HTTP/1.1\r\nhost: 127.0.0.1\r\n${capOnly}\r\n`);
    assert.equal(listed.status, 401, "a capability does not list the host's keeps");
    await owner.deleteKeep(mine.keep);
    await owner.deleteKeep(other.keep);
    await deploysNormally(mgr);
  } finally {
    await mgr.close();
  }
});

Deno.test("keepmgr attack: enarx deploy without the token exits 77 naming --keepmgr-token", async () => {
  const mgr = await startKeepmgr();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.wat`, STREAMS_WAT);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-all",
        "--config",
        `${ROOT}deno.json`,
        `${ROOT}cli/main.ts`,
        "deploy",
        "--keepmgr",
        mgr.url,
        "--insecure-allow-simulated",
        `${dir}/m.wat`,
      ],
      env: { ENARX_KEEPMGR_TOKEN_FILE: "" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = decoder.decode(out.stderr);
    assert.equal(out.code, 77, stderr);
    assert.match(stderr, /unauthorized.*--keepmgr-token FILE/);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await mgr.close();
  }
});

Deno.test("keepmgr attack: 200 slow connections (no handshake, half a head) are closed; then a deploy works", async () => {
  const mgr = await startKeepmgr({ args: ["--header-timeout", "1s", "--max-connections", "64"] });
  const conns: Deno.Conn[] = [];
  try {
    const url = new URL(mgr.url);
    const cert = await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`);
    for (let i = 0; i < 190; i++) {
      conns.push(await Deno.connect({ hostname: url.hostname, port: Number(url.port) }));
    }
    // ...and a few that finish TLS but never finish their head (slowloris).
    await new Promise((r) => setTimeout(r, 1500)); // the first 64 time out, making room
    for (let i = 0; i < 10; i++) {
      const tls = await Deno.connectTls({
        hostname: url.hostname,
        port: Number(url.port),
        caCerts: [cert],
      });
      await tls.write(new TextEncoder().encode("GET /v1/info HTTP/1.1\r\nhost: x\r\n"));
      conns.push(tls);
    }
    const closed = await Promise.all(conns.map(async (conn) => {
      let ours = false;
      const deadline = setTimeout(() => {
        ours = true;
        conn.close();
      }, 8_000);
      try {
        await conn.read(new Uint8Array(64)).catch(() => null);
        return !ours;
      } finally {
        clearTimeout(deadline);
      }
    }));
    assert.equal(closed.filter((c) => !c).length, 0, "connections still open after 8 s");
    await deploysNormally(mgr);
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await mgr.close();
  }
});

Deno.test("keepmgr attack: long and many headers, chunked bodies, a 4,000-deep CBOR array are 4xx; then a deploy works", async () => {
  const mgr = await startKeepmgr();
  try {
    const auth = `authorization: Bearer ${mgr.token}\r\n`;
    const long = await raw(
      mgr,
      `GET /v1/info HTTP/1.1\r\nhost: x\r\nx-long: ${"a".repeat(20_000)}\r\n\r\n`,
    );
    assert.equal(long.status, 431);
    assert.equal(parseErrorResponse(long.body).error.code, "headers-too-large");
    const many = await raw(
      mgr,
      `GET /v1/info HTTP/1.1\r\nhost: x\r\n${"x-h: 1\r\n".repeat(100)}\r\n`,
    );
    assert.equal(many.status, 431);
    assert.equal(parseErrorResponse(many.body).error.code, "headers-too-many");
    const chunked = await raw(
      mgr,
      `POST /v1/keeps HTTP/1.1\r\nhost: x\r\n${auth}transfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
    );
    assert.equal(chunked.status, 411);
    const twoLengths = await raw(
      mgr,
      `POST /v1/keeps HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab`,
    );
    assert.equal(twoLengths.status, 400);
    const huge = await raw(
      mgr,
      `POST /v1/keeps HTTP/1.1\r\nhost: x\r\n${auth}content-length: 100000000\r\n\r\n`,
    );
    assert.equal(huge.status, 413);
    const deep = new Uint8Array(4001).fill(0x81);
    deep[4000] = 0;
    const bomb = await raw(mgr, post("/v1/keeps", deep, auth));
    assert.equal(bomb.status, 400);
    assert.equal(parseErrorResponse(bomb.body).error.code, "cbor-malformed");
    await deploysNormally(mgr);
  } finally {
    await mgr.close();
  }
});

Deno.test("keepmgr attack: a flood of creates is 429 rate-limited past the burst, with Retry-After", async () => {
  // Three creates at once, so that none of the admitted ones is queued (202).
  const mgr = await startKeepmgr({
    args: ["--create-burst", "3", "--create-rate", "1", "--max-creating", "3"],
  });
  try {
    const auth = `authorization: Bearer ${mgr.token}\r\n`;
    // Five at once: the burst admits three, the rate (1 a second) none more yet.
    const replies = await Promise.all(
      Array.from({ length: 5 }, () => raw(mgr, post("/v1/keeps", createBody(), auth))),
    );
    const statuses = replies.map((r) => r.status).sort();
    const limited = replies.find((r) => r.status === 429);
    assert.equal(parseErrorResponse(limited?.body).error.code, "rate-limited");
    const retryAfter = /retry-after: (\d+)/.exec(limited?.head ?? "")?.[1] ?? "";
    assert.deepEqual(statuses, [201, 201, 201, 429, 429]);
    assert.ok(Number(retryAfter) >= 1, "Retry-After is given");
    // The rate refills: after a wait a deploy goes through.
    await new Promise((r) => setTimeout(r, 1500));
    await deploysNormally(mgr);
  } finally {
    await mgr.close();
  }
});

Deno.test("keepmgr attack: creates past the queue are 503 queue-full; SIGTERM answers one in flight with 503", async () => {
  const silent = fakeWasmldrCommand("silent");
  const mgr = await startKeepmgr({
    args: [
      ...["--max-creating", "1", "--max-queued", "1"],
      ...["--wasmldr-command", silent, "--step-timeout", "20s"],
    ],
  });
  try {
    const auth = `authorization: Bearer ${mgr.token}\r\n`;
    const client = new KeepmgrClient(mgr.url, { token: mgr.token });
    const first = raw(mgr, post("/v1/keeps", createBody(), auth));
    assert.ok(
      await eventually(async () => (await client.listKeeps()).keeps.length === 1),
      "the first create is in flight",
    );
    const second = await raw(mgr, post("/v1/keeps", createBody(), auth));
    assert.equal(second.status, 202, "the second create waits in the queue");
    const third = await raw(mgr, post("/v1/keeps", createBody(), auth));
    assert.equal(third.status, 503);
    assert.equal(parseErrorResponse(third.body).error.code, "queue-full");
    assert.match(third.head, /retry-after: \d+/);
    // The first create still waits for evidence that never comes: stop keepmgr now.
    mgr.kill("SIGTERM");
    const answered = await first;
    assert.equal(answered.status, 503);
    assert.equal(parseErrorResponse(answered.body).error.code, "shutting-down");
    assert.equal((await mgr.status).code, 0);
  } finally {
    await mgr.close();
  }
});

Deno.test("keepmgr attack: a bad value from a deployed Enarx.toml reaches the deployer only", async () => {
  const lines: string[] = [];
  const secret = "s3cr3t-" + crypto.randomUUID();
  const { LocalKeepmgr } = await import("../../runtime/keepmgr/local.ts");
  const { SIM_DIR } = await import("../deploy/_deploy_fixture.ts");
  const mgr = await LocalKeepmgr.start({ simDir: SIM_DIR, onLog: (l) => lines.push(l) });
  try {
    const config = `[[files]]\nkind = "${secret}"\nname = "x"\n`;
    let said = "";
    try {
      const result = await deploy(workload(STREAMS_WAT, { config }), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: mgr.simulatorRoot,
        timeoutMs: 60_000,
      });
      said = `${result.reason} ${result.message ?? ""}`;
    } catch (error) {
      said = String(error);
    }
    // The deployer is told (unless the keep's end cuts the 400 short: the
    // output-loss race of the keep lifecycle, fixed separately).
    assert.ok(said.includes(secret) || /close_notify|EOF/.test(said), `deployer: ${said}`);
    const listing = JSON.stringify(
      await new KeepmgrClient(mgr.url, { token: mgr.token }).listKeeps(),
      (_, v) => v instanceof Uint8Array ? v.toHex() : v,
    );
    assert.ok(!listing.includes(secret), `listing: ${listing}`);
    await mgr.close();
    assert.ok(!lines.some((l) => l.includes(secret)), lines.filter((l) => l.includes(secret))[0]);
  } finally {
    await mgr.close();
  }
});
