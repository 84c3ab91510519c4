/**
 * Writes spec/vectors/*.cbor: one deterministic CBOR encoding of every
 * message of the deploy protocol (spec/protocol.md), with fixed contents so
 * that the files are reproducible. Run from the repository root:
 *
 *     deno run --allow-write --allow-read tools/gen_vectors.ts
 *
 * tests/protocol/protocol_vectors_test.ts checks that each file decodes, re-encodes
 * to the same bytes and passes its validator. `VECTORS` is exported so the
 * test can check that the files are what this script writes.
 *
 * @module
 */
import { encodeCbor } from "../runtime/protocol/cbor.ts";
import { HPKE_SUITE } from "../runtime/protocol/messages.ts";

/** Bytes 0, 1, 2, ... (n of them), offset by `start`: recognisable fixed contents. */
function seq(n: number, start = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
}

function point(): Uint8Array {
  const p = seq(65, 0x40);
  p[0] = 4; // uncompressed SEC1 point
  return p;
}

const KEEP = "5b7cdd582f1b8aa1f6b4d911d36c624c";
const NONCE = seq(32, 0xa0);
const CREATED = "2025-01-02T03:04:05.678Z";
const EVIDENCE = encodeCbor({ format: "snp", report: seq(1184), certs: [] });

/** Vector file name (without .cbor) → the message it holds. */
export const VECTORS: Record<string, unknown> = {
  // client <-> keepmgr
  "create_keep_request": { v: 1, backend: "nil", nonce: NONCE },
  "create_keep_poll": { v: 1, backend: "nil", nonce: NONCE, ticket: seq(16, 0xd0) },
  "create_keep_queued": { v: 1, ticket: seq(16, 0xd0), ahead: 3, creating: false },
  "create_keep_response": {
    v: 1,
    keep: KEEP,
    backend: "nil",
    evidence: EVIDENCE,
    sealing_key: point(),
    suite: HPKE_SUITE,
    capability: seq(32, 0xc0),
  },
  "deliver_key_request": { v: 1, enc: point(), ct: seq(212, 7) },
  "deliver_key_response": { v: 1, connect: { host: "keeps.example.net", port: 40123 } },
  "list_keeps_response": {
    v: 1,
    keeps: [
      { keep: KEEP, backend: "nil", state: "running", created: CREATED },
      {
        keep: "0f9e8d7c6b5a49382716050403020100",
        backend: "nil",
        state: "exited",
        status: 0,
        reason: "exit",
        created: CREATED,
      },
      {
        keep: "aa00bb11cc22dd33ee44ff5566778899",
        backend: "nil",
        state: "failed",
        reason: "keepldr was killed by SIGKILL",
        created: CREATED,
      },
    ],
  },
  "show_keep_response": {
    v: 1,
    keep: KEEP,
    backend: "nil",
    state: "waiting-for-key",
    created: CREATED,
  },
  "show_keep_services_response": {
    v: 1,
    keep: KEEP,
    backend: "nil",
    state: "running",
    created: CREATED,
    endpoints: [{ name: "web", prot: "tcp", host: "keeps.example.net", port: 20000 }],
  },
  "keep_logs_response": {
    v: 1,
    state: "running",
    end: 17,
    chunks: [
      { stream: "stdout", at: 0, data: new TextEncoder().encode("listening\n") },
      { stream: "stderr", at: 10, data: new TextEncoder().encode("client\n") },
    ],
  },
  "info_response": {
    v: 1,
    version: "0.1.0",
    backends: ["nil"],
    simulator_root: `sha256:${"2e".repeat(32)}`,
  },
  "error_response": {
    v: 1,
    error: { code: "too-many-keeps", message: "This keepmgr already runs 64 keeps" },
  },
  // client -> wasmldr
  "sealed_key_plaintext": {
    v: 1,
    keep: KEEP,
    nonce: NONCE,
    tls_key: seq(138, 0x30),
    token: seq(32, 0xe0),
  },
  "workload_request": {
    v: 1,
    module: Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
    config: '[[files]]\nkind = "stdio"\nname = "stdout"\n',
    args: ["--greeting", "hello"],
    env: { LANG: "C", NAME: "keep" },
    stdin: new TextEncoder().encode("input\n"),
  },
  "workload_request_chain": {
    v: 1,
    module: Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
    config: '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\n',
    args: [],
    env: {},
    stdin: new Uint8Array(0),
    chain: [seq(420, 0x30), seq(380, 0x31)],
  },
  "service_key_request": { v: 1, names: ["api.example.net", "localhost", "127.0.0.1"] },
  "service_key_response": { v: 1, csr: seq(240, 0x30), certificate: seq(390, 0x30) },
  "workload_output_stdout": { t: "stdout", data: new TextEncoder().encode("hello\n") },
  "workload_output_stderr": { t: "stderr", data: new TextEncoder().encode("warning\n") },
  "workload_output_detached": { t: "detached" },
  "workload_output_exit": { t: "exit", status: 134, reason: "trap", message: "unreachable" },
  // keepmgr <-> keepldr <-> wasmldr (frames: the CBOR payload only)
  "frame_hello": {
    t: "hello",
    v: 1,
    keep: KEEP,
    backend: "nil",
    nonce: NONCE,
    limits: { memory: 268435456, timeout_ms: 600000 },
  },
  "frame_evidence": { t: "evidence", evidence: EVIDENCE, sealing_key: point() },
  "frame_sealed_key": { t: "sealed-key", enc: point(), ct: seq(212, 7) },
  "frame_listening": { t: "listening", port: 38211 },
  "frame_running": { t: "running" },
  "frame_exited": { t: "exited", status: 0, reason: "exit" },
  "frame_services": {
    t: "services",
    services: [{ name: "web", prot: "tcp", port: 41234, asked: 8080 }],
  },
  "frame_output": { t: "output", stream: "stdout", data: new TextEncoder().encode("served 1\n") },
  // wasmldr <-> keepldr only: the guest report device's host channel
  "frame_report_request": { t: "report-request", report_data: seq(64, 0x40) },
  "frame_report_response": {
    t: "report-response",
    report: seq(1184),
    certs: [seq(24, 0x30), seq(24, 0x60), seq(24, 0x90)],
  },
  "frame_error": {
    t: "error",
    code: "keep-died",
    message: "The keep's wasmldr was killed by SIGKILL before reporting an exit",
  },
};

if (import.meta.main) {
  const dir = new URL("../spec/vectors/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, value] of Object.entries(VECTORS)) {
    const bytes = encodeCbor(value);
    await Deno.writeFile(new URL(`${name}.cbor`, dir), bytes);
    console.log(`${name}.cbor ${bytes.length} bytes`);
  }
}
