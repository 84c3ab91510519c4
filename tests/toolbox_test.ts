import assert from "node:assert/strict";
import { bytesEqual, bytesEqualConstantTime, concatBytes } from "../runtime/bytes.ts";
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
