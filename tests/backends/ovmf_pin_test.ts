/**
 * The AmdSev OVMF in the cache is the pinned build: tools/build_ovmf.sh's
 * output has the sha256 that tools/versions.sh pins (OVMF_AMDSEV_SHA256), so
 * a build that stopped being reproducible, or a stale firmware left in the
 * cache, fails here as well as in the script's own check.
 */
import assert from "node:assert/strict";
import { fileExists, requires } from "../_requires.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** The firmware tools/build_ovmf.sh writes (ENARX_OVMF_DIR, as tools/bootstrap.sh chooses it). */
function builtOvmfPath(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME");
  const cache = xdg !== undefined && xdg !== ""
    ? `${xdg}/enarx`
    : home !== undefined && home !== ""
    ? `${home}/.cache/enarx`
    : Deno.env.get("ENARX_CACHE") ?? `${ROOT}.cache`;
  return `${cache}/ovmf-amdsev/OVMF.fd`;
}

/** The value of `name=` in tools/versions.sh. */
function pinned(name: string): string {
  const text = Deno.readTextFileSync(`${ROOT}tools/versions.sh`);
  const line = text.split("\n").find((l) => l.startsWith(`${name}=`));
  assert.ok(line !== undefined, `tools/versions.sh sets no ${name}`);
  return line.slice(name.length + 1).replace(/^"|"$/g, "");
}

Deno.test("ovmf pin: tools/versions.sh pins the AmdSev OVMF's sha256 and its build path", () => {
  assert.match(pinned("OVMF_AMDSEV_SHA256"), /^[0-9a-f]{64}$/);
  assert.match(pinned("EDK2_BUILD_DIR"), /^\/[^ ]+$/);
  assert.match(pinned("EDK2_TOOLCHAIN"), /^gcc=\S+ ld=\S+ nasm=\S+ iasl=\S+ python3=\S+$/);
});

Deno.test({
  name: "ovmf pin: the OVMF.fd tools/build_ovmf.sh built has the pinned sha256",
  ...requires({
    tool: "the AmdSev OVMF",
    present: fileExists(builtOvmfPath()),
    remedy: "run tools/build_ovmf.sh",
  }, async () => {
    const path = builtOvmfPath();
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", await Deno.readFile(path)),
    ).toHex();
    assert.equal(
      digest,
      pinned("OVMF_AMDSEV_SHA256"),
      `${path} is not the pinned build: run tools/build_ovmf.sh (it rebuilds and checks)`,
    );
    const recorded = Deno.readTextFileSync(`${path}.sha256`).split(/\s/)[0];
    assert.equal(recorded, digest, `${path}.sha256 does not describe ${path}`);
  }),
});
