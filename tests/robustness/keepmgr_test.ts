/**
 * Robustness of keepmgr's HTTP API against bad requests, through a real
 * daemon (LocalKeepmgr): random methods, paths, content types and bodies.
 * Every answer is a CBOR error map with a stable code and a 4xx status (never
 * 500), the daemon stays up and no keep is left behind. Seeded: a failure
 * names its seed and request.
 *
 * @module
 */
import assert from "node:assert/strict";
import { decodeCbor, encodeCbor } from "../../runtime/protocol/cbor.ts";
import { parseErrorResponse, parseListKeepsResponse } from "../../runtime/protocol/messages.ts";
import { startKeepmgr } from "../deploy/_deploy_fixture.ts";
import { Prng, show } from "./_robustness.ts";

const SEED = 0x5eed_0004;

const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const PATHS = [
  "/",
  "/v1",
  "/v1/",
  "/v1/info",
  "/v1/keeps",
  "/v1/keeps/",
  "/v1/keeps/nope",
  "/v1/keeps/%zz",
  "/v1/keeps/%E0%A4%A",
  "/v1/keeps/%00",
  "/v1/keeps/a/key",
  "/v1/keeps/%zz/key",
  "/v1/keeps/a/b/c",
  "/v2/keeps",
  "/v1/keeps/" + "x".repeat(300),
  "//v1//keeps//",
];
const TYPES = [
  null,
  "application/cbor",
  "application/json",
  "text/plain",
  "application/cbor; x=y",
  "",
];

function randomBody(rng: Prng): Uint8Array | undefined {
  switch (rng.int(6)) {
    case 0:
      return undefined;
    case 1:
      return rng.bytes(rng.int(64));
    case 2:
      return encodeCbor(rng.pick([
        {},
        { v: 1 },
        { v: 1, backend: "nil" },
        { v: 1, backend: 7, nonce: new Uint8Array(32) },
        { v: 2, backend: "nil", nonce: new Uint8Array(32) },
        { v: 1, backend: "nil", nonce: new Uint8Array(3) },
        { v: 1, enc: new Uint8Array(65), ct: "x" },
        [1, 2, 3],
        "text",
      ]));
    case 3:
      return new Uint8Array(4096 + 1 + rng.int(100)); // over the create limit
    case 4:
      return new Uint8Array([0xbf, 0x61, 0x76, 0x01, 0xff]); // indefinite-length map
    default:
      return new TextEncoder().encode('{"v":1,"backend":"nil"}');
  }
}

Deno.test("robustness: keepmgr answers random requests with CBOR errors and stays up", async () => {
  const mgr = await startKeepmgr();
  const cert = await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`);
  const client = Deno.createHttpClient({ caCerts: [cert] });
  try {
    const rng = new Prng(SEED);
    for (let i = 0; i < 150; i++) {
      const method = rng.pick(METHODS);
      const path = rng.pick(PATHS);
      const type = rng.pick(TYPES);
      const body = method === "GET" ? undefined : randomBody(rng);
      const label = `seed ${rng.seed} #${i} ${method} ${path} type ${type} body ${
        body === undefined ? "none" : show(body, 16)
      }`;
      const response = await fetch(`${mgr.url}${path}`, {
        method,
        client,
        headers: {
          authorization: `Bearer ${mgr.token}`,
          ...(type === null ? {} : { "content-type": type }),
        },
        body: body as Uint8Array<ArrayBuffer> | undefined,
      } as RequestInit);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (response.status < 400) {
        // Only the read-only endpoints may succeed on random input.
        assert.ok(
          method === "GET" && (path === "/v1/info" || /^\/+v1\/+keeps\/*$/.test(path)),
          `${label}: status ${response.status}`,
        );
        continue;
      }
      assert.ok(response.status < 500, `${label}: status ${response.status}`);
      assert.equal(response.headers.get("content-type"), "application/cbor", label);
      const error = parseErrorResponse(decodeCbor(bytes));
      assert.match(error.error.code, /^[a-z][a-z0-9-]*$/, label);
      assert.ok(error.error.message.length > 0, label);
    }
    const list = await fetch(`${mgr.url}/v1/keeps`, {
      client,
      headers: { authorization: `Bearer ${mgr.token}` },
    } as RequestInit);
    assert.equal(list.status, 200, "the daemon is still up");
    const keeps = parseListKeepsResponse(decodeCbor(new Uint8Array(await list.arrayBuffer())));
    assert.deepEqual(keeps.keeps, [], "no keep is left behind");
  } finally {
    client.close();
    await mgr.close();
  }
});
