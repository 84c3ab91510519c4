/**
 * A stand-in for `enarx wasmldr` that speaks the frame protocol, for keepmgr
 * tests. The first argument picks its behaviour:
 * - `normal`: hello → evidence; sealed-key → listens on 127.0.0.1 (plain TCP),
 *   sends listening; the first connection gets "hello from keep <id>\n", then
 *   running and exited {status 0}.
 * - `die-at-start`: exits with status 4 at once, before any hello (a broken install).
 * - `die-after-hello`: exits with status 3 after reading hello.
 * - `silent`: reads hello and never answers.
 * - `sleep`: ignores everything and sleeps 60 s (a decoy process).
 *
 * @module
 */
import { FrameReader, FrameWriter } from "../../runtime/protocol/frames.ts";
import { parseHelloFrame, parseSealedKeyFrame } from "../../runtime/protocol/messages.ts";

const mode = Deno.args[0] ?? "normal";

if (mode === "die-at-start") Deno.exit(4);

if (mode === "sleep") {
  await new Promise((resolve) => setTimeout(resolve, 60_000));
  Deno.exit(0);
}

const reader = new FrameReader(Deno.stdin.readable, { peer: "keepldr" });
const writer = new FrameWriter(Deno.stdout.writable);
const hello = parseHelloFrame(await reader.read());

if (mode === "die-after-hello") Deno.exit(3);
if (mode === "silent") {
  await reader.read(); // until keepldr closes or kills us
  Deno.exit(0);
}

const sealingKey = new Uint8Array(65);
sealingKey[0] = 4;
await writer.write({
  t: "evidence",
  evidence: new TextEncoder().encode(`fake evidence for ${hello.keep}`),
  sealing_key: sealingKey,
});
const next = await reader.read();
if (next === null) Deno.exit(0);
parseSealedKeyFrame(next);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
await writer.write({ t: "listening", port: listener.addr.port });
const conn = await listener.accept();
await writer.write({ t: "running" });
await conn.write(new TextEncoder().encode(`hello from keep ${hello.keep}\n`));
conn.close();
listener.close();
await writer.write({ t: "exited", status: 0, reason: "exit" });
await writer.close();
Deno.exit(0);
