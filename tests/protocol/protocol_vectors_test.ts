/**
 * spec/vectors: every vector decodes, re-encodes to the same bytes, passes
 * its message validator, and is what tools/gen_vectors.ts writes; mutated
 * vectors (a field missing, a field of the wrong type, an unknown field,
 * another protocol version) are rejected.
 */
import assert from "node:assert/strict";
import { decodeCbor, encodeCbor } from "../../runtime/protocol/cbor.ts";
import {
  MessageError,
  parseCreateKeepQueued,
  parseCreateKeepRequest,
  parseCreateKeepResponse,
  parseDeliverKeyRequest,
  parseDeliverKeyResponse,
  parseDownstreamFrame,
  parseErrorFrame,
  parseErrorResponse,
  parseEvidenceFrame,
  parseExitedFrame,
  parseHelloFrame,
  parseInfoResponse,
  parseKeepFrame,
  parseKeepLogsResponse,
  parseListeningFrame,
  parseListKeepsResponse,
  parseOutputFrame,
  parseReportReplyFrame,
  parseReportRequestFrame,
  parseReportResponseFrame,
  parseRunningFrame,
  parseSealedKeyFrame,
  parseSealedKeyPlaintext,
  parseServiceKeyRequest,
  parseServiceKeyResponse,
  parseServicesFrame,
  parseShowKeepResponse,
  parseUpstreamFrame,
  parseWorkloadOutput,
  parseWorkloadRequest,
} from "../../runtime/protocol/messages.ts";
import { VECTORS } from "../../tools/gen_vectors.ts";

const DIR = new URL("../../spec/vectors/", import.meta.url);

/** Vector name → its validator. */
const PARSERS: Record<string, (value: unknown) => unknown> = {
  create_keep_request: parseCreateKeepRequest,
  create_keep_poll: parseCreateKeepRequest,
  create_keep_queued: parseCreateKeepQueued,
  create_keep_response: parseCreateKeepResponse,
  deliver_key_request: parseDeliverKeyRequest,
  deliver_key_response: parseDeliverKeyResponse,
  list_keeps_response: parseListKeepsResponse,
  show_keep_response: parseShowKeepResponse,
  show_keep_services_response: parseShowKeepResponse,
  keep_logs_response: parseKeepLogsResponse,
  info_response: parseInfoResponse,
  error_response: parseErrorResponse,
  sealed_key_plaintext: parseSealedKeyPlaintext,
  workload_request: parseWorkloadRequest,
  workload_request_chain: parseWorkloadRequest,
  service_key_request: parseServiceKeyRequest,
  service_key_response: parseServiceKeyResponse,
  workload_output_stdout: parseWorkloadOutput,
  workload_output_stderr: parseWorkloadOutput,
  workload_output_exit: parseWorkloadOutput,
  workload_output_detached: parseWorkloadOutput,
  frame_hello: parseHelloFrame,
  frame_evidence: parseEvidenceFrame,
  frame_sealed_key: parseSealedKeyFrame,
  frame_listening: parseListeningFrame,
  frame_running: parseRunningFrame,
  frame_exited: parseExitedFrame,
  frame_services: parseServicesFrame,
  frame_output: parseOutputFrame,
  frame_error: parseErrorFrame,
  frame_report_request: parseReportRequestFrame,
  frame_report_response: parseReportResponseFrame,
};

/** Fields the CDDL marks optional (`? name`), per vector: leaving them out stays valid. */
const OPTIONAL: Record<string, string[]> = {
  workload_output_exit: ["message"],
  list_keeps_response: [],
  show_keep_response: ["status", "reason"],
  show_keep_services_response: ["status", "reason", "endpoints"],
  info_response: ["simulator_root"],
  workload_request_chain: ["chain"],
  create_keep_poll: ["ticket"],
};

function vectorNames(): string[] {
  return [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) => n.endsWith(".cbor"))
    .map((n) => n.slice(0, -5)).sort();
}

function load(name: string): Record<string, unknown> {
  return decodeCbor(Deno.readFileSync(new URL(`${name}.cbor`, DIR))) as Record<string, unknown>;
}

/** A value of another CBOR type than `value`. */
function otherType(value: unknown): unknown {
  if (typeof value === "string") return 7;
  if (typeof value === "number") return "7";
  if (value instanceof Uint8Array) return "bytes";
  if (Array.isArray(value)) return { a: 1 };
  if (value === null) return 0;
  return [1];
}

Deno.test("vectors: there is one for every validator and nothing else", () => {
  assert.deepEqual(vectorNames(), Object.keys(PARSERS).sort());
  assert.deepEqual(Object.keys(VECTORS).sort(), Object.keys(PARSERS).sort());
});

Deno.test("vectors: each decodes, re-encodes byte for byte, and validates", () => {
  for (const name of vectorNames()) {
    const bytes = Deno.readFileSync(new URL(`${name}.cbor`, DIR));
    const value = decodeCbor(bytes);
    assert.deepEqual(encodeCbor(value), bytes, name);
    // The generator still writes exactly these bytes.
    assert.deepEqual(encodeCbor(VECTORS[name]), bytes, `${name}: run tools/gen_vectors.ts`);
    const parsed = PARSERS[name](value);
    // A validator returns the same message, field for field.
    assert.deepEqual(encodeCbor(parsed), bytes, name);
  }
});

Deno.test("vectors: frames are accepted by the dispatcher of their direction", () => {
  for (const name of ["frame_hello", "frame_sealed_key", "frame_error"]) {
    assert.equal((parseDownstreamFrame(load(name)) as { t: string }).t, load(name).t);
  }
  for (
    const name of [
      "frame_evidence",
      "frame_listening",
      "frame_running",
      "frame_exited",
      "frame_services",
      "frame_output",
    ]
  ) {
    assert.equal(parseUpstreamFrame(load(name)).t, load(name).t);
    assert.throws(() => parseDownstreamFrame(load(name)), MessageError);
  }
  assert.throws(() => parseUpstreamFrame(load("frame_hello")), MessageError);
  // The report frames stay between wasmldr and keepldr: keepmgr's dispatchers refuse them.
  assert.equal(parseKeepFrame(load("frame_report_request")).t, "report-request");
  assert.equal(parseKeepFrame(load("frame_evidence")).t, "evidence");
  assert.equal(parseReportReplyFrame(load("frame_report_response")).t, "report-response");
  assert.equal(parseReportReplyFrame(load("frame_error")).t, "error");
  assert.throws(() => parseUpstreamFrame(load("frame_report_request")), MessageError);
  assert.throws(() => parseDownstreamFrame(load("frame_report_response")), MessageError);
  assert.throws(() => parseReportReplyFrame(load("frame_sealed_key")), MessageError);
});

Deno.test("vectors: a missing required field is rejected, a missing optional one is not", () => {
  for (const name of vectorNames()) {
    const value = load(name);
    for (const key of Object.keys(value)) {
      const mutated = { ...value };
      delete mutated[key];
      if (OPTIONAL[name]?.includes(key)) {
        PARSERS[name](mutated);
      } else {
        assert.throws(() => PARSERS[name](mutated), MessageError, `${name} without ${key}`);
      }
    }
  }
});

Deno.test("vectors: a field of the wrong type is rejected", () => {
  for (const name of vectorNames()) {
    const value = load(name);
    for (const key of Object.keys(value)) {
      const mutated = { ...value, [key]: otherType(value[key]) };
      assert.throws(() => PARSERS[name](mutated), MessageError, `${name} with bad ${key}`);
    }
  }
});

Deno.test("vectors: an unknown field is rejected (the CDDL maps are closed)", () => {
  for (const name of vectorNames()) {
    const mutated = { ...load(name), extension: 1 };
    assert.throws(
      () => PARSERS[name](mutated),
      (e: unknown) => e instanceof MessageError && /unknown field "extension"/.test(e.message),
      name,
    );
  }
  // Nested closed maps too.
  const hello = load("frame_hello");
  assert.throws(() => parseHelloFrame({ ...hello, limits: { cpu: 1 } }), MessageError);
  const connect = load("deliver_key_response");
  assert.throws(
    () => parseDeliverKeyResponse({ ...connect, connect: { host: "h", port: 1, tls: true } }),
    MessageError,
  );
});

Deno.test("vectors: another protocol version is a `version` error", () => {
  for (const name of vectorNames()) {
    const value = load(name);
    if (!("v" in value)) continue;
    assert.throws(
      () => PARSERS[name]({ ...value, v: 2 }),
      (e: unknown) =>
        e instanceof MessageError && e.code === "version" && /version 2/.test(e.message),
      name,
    );
  }
});

Deno.test("vectors: sizes, ranges and literals of the CDDL are enforced", () => {
  const bad: [string, Record<string, unknown>][] = [
    ["create_keep_request", { nonce: new Uint8Array(31) }],
    ["create_keep_request", { backend: "tdx" }],
    ["create_keep_poll", { ticket: new Uint8Array(15) }],
    ["create_keep_queued", { ticket: new Uint8Array(32) }],
    ["create_keep_queued", { ahead: -1 }],
    ["create_keep_queued", { creating: 1 }],
    ["create_keep_response", { sealing_key: new Uint8Array(33) }],
    ["create_keep_response", { suite: "DHKEM-X25519" }],
    ["create_keep_response", { keep: "Not A Dns Label" }],
    ["create_keep_response", { capability: new Uint8Array(16) }],
    ["create_keep_response", { capability: "00".repeat(32) }],
    ["deliver_key_response", { connect: { host: "h", port: 0 } }],
    ["deliver_key_response", { connect: { host: "h", port: 65536 } }],
    ["frame_listening", { port: -1 }],
    ["frame_listening", { port: 1.5 }],
    ["frame_exited", { status: 256 }],
    ["show_keep_response", { state: "sleeping" }],
    ["sealed_key_plaintext", { token: new Uint8Array(16) }],
    ["workload_request", { env: { A: 1 } }],
    ["workload_request", { args: ["a", 1] }],
    ["workload_request_chain", { chain: [] }],
    ["workload_request_chain", { chain: ["pem"] }],
    ["service_key_request", { names: [] }],
    ["service_key_request", { names: [""] }],
    ["workload_output_exit", { t: "quit" }],
    ["frame_running", { t: "exited" }],
    ["frame_services", { services: [] }],
    ["frame_services", { services: [{ name: "web", prot: "udp", port: 1, asked: 0 }] }],
    ["frame_services", { services: [{ name: "web", prot: "tcp", port: 0, asked: 0 }] }],
    [
      "frame_services",
      {
        services: [
          { name: "web", prot: "tcp", port: 1, asked: 0 },
          { name: "web", prot: "tcp", port: 2, asked: 0 },
        ],
      },
    ],
    ["frame_output", { stream: "stdin" }],
    ["keep_logs_response", { chunks: [{ stream: "stdout", at: -1, data: new Uint8Array() }] }],
    ["show_keep_services_response", {
      endpoints: [{ name: "web", prot: "tcp", host: "h", port: 0 }],
    }],
    ["show_keep_services_response", {
      endpoints: [{ name: "web", prot: "tcp", host: "h", port: 1, tls: true }],
    }],
    ["workload_request", { detach: 1 }],
  ];
  for (const [name, change] of bad) {
    assert.throws(() => PARSERS[name]({ ...load(name), ...change }), MessageError, name);
  }
  // config may be null; detach is optional and a boolean.
  parseWorkloadRequest({ ...load("workload_request"), config: null });
  assert.equal(parseWorkloadRequest({ ...load("workload_request"), detach: true }).detach, true);
});
