import assert from "node:assert/strict";
import { bytesEqual, bytesEqualConstantTime, concatBytes } from "../runtime/bytes.ts";
import {
  derEcdsaSignature,
  derOid,
  derSequence,
  derTime,
  derUnsignedInteger,
} from "../runtime/der.ts";
import { amdSevOvmfPath, bootstrapCacheDir, userCacheDir, userStateDir } from "../runtime/dirs.ts";

function env(vars: Record<string, string>) {
  return { getEnv: (name: string) => vars[name] };
}

Deno.test("bytes: equality compares length and every byte, in both forms", () => {
  for (const equal of [bytesEqual, bytesEqualConstantTime]) {
    assert.equal(equal(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])), true);
    assert.equal(equal(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4])), false);
    assert.equal(equal(new Uint8Array([9, 2, 3]), new Uint8Array([1, 2, 3])), false);
    assert.equal(equal(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3])), false);
    assert.equal(equal(new Uint8Array(), new Uint8Array()), true);
  }
});

Deno.test("bytes: concatBytes joins in order into a new array", () => {
  const a = new Uint8Array([1]);
  const joined = concatBytes(a, new Uint8Array(), new Uint8Array([2, 3]));
  assert.deepEqual([...joined], [1, 2, 3]);
  joined[0] = 7;
  assert.equal(a[0], 1);
  assert.equal(concatBytes().length, 0);
});

Deno.test("dirs: XDG variables win, empty ones count as unset, HOME is the fallback", () => {
  assert.equal(userCacheDir(env({ XDG_CACHE_HOME: "/x", HOME: "/h" })), "/x/enarx");
  assert.equal(userCacheDir(env({ XDG_CACHE_HOME: "", HOME: "/h" })), "/h/.cache/enarx");
  assert.equal(userCacheDir(env({})), undefined);
  assert.equal(userStateDir(env({ XDG_STATE_HOME: "/s", HOME: "/h" })), "/s/enarx");
  assert.equal(userStateDir(env({ HOME: "/h" })), "/h/.local/state/enarx");
  assert.equal(userStateDir(env({})), undefined);
  assert.equal(bootstrapCacheDir(env({ ENARX_CACHE: "/e", XDG_CACHE_HOME: "/x" })), "/e");
  assert.equal(bootstrapCacheDir(env({ XDG_CACHE_HOME: "/x" })), "/x/enarx");
  const checkout = new URL("../.cache", import.meta.url).pathname;
  assert.equal(bootstrapCacheDir(env({})), checkout);
  // The sev keep's OVMF: the variable, else the bootstrap cache's build.
  assert.equal(amdSevOvmfPath(env({ ENARX_SEV_OVMF: "/o.fd", ENARX_CACHE: "/e" })), "/o.fd");
  // Outside the checkout: the user's cache, whatever ENARX_CACHE says.
  assert.equal(
    amdSevOvmfPath(env({ HOME: "/h", ENARX_CACHE: "/e" })),
    "/h/.cache/enarx/ovmf-amdsev/OVMF.fd",
  );
  assert.equal(
    amdSevOvmfPath(env({ XDG_CACHE_HOME: "/x", HOME: "/h" })),
    "/x/enarx/ovmf-amdsev/OVMF.fd",
  );
  assert.equal(
    amdSevOvmfPath(env({ ENARX_SEV_OVMF: "", ENARX_CACHE: "/e" })),
    "/e/ovmf-amdsev/OVMF.fd",
  );
});

Deno.test("der: integers, object identifiers, times and lengths encode as X.690 says", () => {
  const hex = (b: Uint8Array) => b.toHex();
  // Positive integers: leading zeros dropped, a zero byte before a set top bit.
  assert.equal(hex(derUnsignedInteger(Uint8Array.of(0, 0, 1))), "020101");
  assert.equal(hex(derUnsignedInteger(Uint8Array.of(0x80))), "02020080");
  assert.equal(hex(derUnsignedInteger(Uint8Array.of(0, 0))), "020100");
  // ecdsa-with-SHA256 and commonName, as RFC 5758 and X.520 list them.
  assert.equal(hex(derOid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  assert.equal(hex(derOid("2.5.4.3")), "0603550403");
  // UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
  const utc = derTime(new Date("2026-12-06T03:04:05.678Z"));
  assert.equal(new TextDecoder().decode(utc.subarray(2)), "261206030405Z");
  assert.equal(utc[0], 0x17);
  const gen = derTime(new Date("2050-01-01T00:00:00Z"));
  assert.equal(gen[0], 0x18);
  assert.equal(new TextDecoder().decode(gen.subarray(2)), "20500101000000Z");
  // Short and long definite lengths.
  assert.equal(hex(derSequence(new Uint8Array(5)).subarray(0, 2)), "3005");
  assert.equal(hex(derSequence(new Uint8Array(200)).subarray(0, 3)), "3081c8");
  assert.equal(hex(derSequence(new Uint8Array(300)).subarray(0, 4)), "3082012c");
  // r ‖ s to SEQUENCE { r, s }, each a minimal positive INTEGER.
  const raw = new Uint8Array(64);
  raw[0] = 0x80;
  raw[63] = 0x01;
  assert.equal(
    hex(derEcdsaSignature(raw)),
    "3026" + "022100" + "80" + "00".repeat(31) + "020101",
  );
});
