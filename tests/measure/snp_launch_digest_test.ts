/**
 * The SEV-SNP launch digest re-derived step by step for a tiny synthetic
 * OVMF image, with PAGE_INFO laid out by hand at the offsets of the AMD
 * SEV-SNP Firmware ABI (#56860, "PAGE_INFO Structure") and hashed with
 * WebCrypto, independently of the library's own code path.
 */
import assert from "node:assert/strict";
import { snpLaunchDigest } from "../../runtime/measure/mod.ts";
import { qemuVmsaPage } from "../../runtime/measure/vmsa.ts";
import { SECTION, syntheticOvmf } from "./_synthetic_ovmf.ts";

async function sha(
  algorithm: "SHA-256" | "SHA-384",
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest(algorithm, data));
}

/** PAGE_INFO by hand: DIGEST_CUR 0x00, CONTENTS 0x30, LENGTH 0x60, PAGE_TYPE 0x62, GPA 0x68. */
function pageInfo(
  cur: Uint8Array,
  contents: Uint8Array,
  type: number,
  gpa: number,
): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array(0x70);
  const view = new DataView(info.buffer);
  info.set(cur, 0x00);
  info.set(contents, 0x30);
  view.setUint16(0x60, 0x70, true);
  info[0x62] = type;
  view.setBigUint64(0x68, BigInt(gpa), true);
  return info;
}

/** The hashes page by hand: table GUID, length 168, then cmdline, initrd, kernel entries of 50 bytes. */
async function hashesPage(
  offset: number,
  kernel: Uint8Array<ArrayBuffer>,
  initrd: Uint8Array<ArrayBuffer>,
  append: string,
) {
  const page = new Uint8Array(4096);
  const view = new DataView(page.buffer);
  const guid = (s: string) => {
    const b = Uint8Array.fromHex(s.replaceAll("-", ""));
    return new Uint8Array([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], ...b.subarray(8)]);
  };
  page.set(guid("9438d606-4f22-4cc9-b479-a793d411fd21"), offset);
  view.setUint16(offset + 16, 168, true);
  const cmdline = new Uint8Array([...new TextEncoder().encode(append), 0]);
  const entries: [string, Uint8Array<ArrayBuffer>][] = [
    ["97d02dd8-bd20-4c94-aa78-e7714d36ab2a", cmdline],
    ["44baf731-3a2f-4bd7-9af1-41e29169781d", initrd],
    ["4de79437-abd2-427f-b835-d5b172d2045b", kernel],
  ];
  let at = offset + 18;
  for (const [g, blob] of entries) {
    page.set(guid(g), at);
    view.setUint16(at + 16, 50, true);
    page.set(await sha("SHA-256", blob), at + 18);
    at += 50;
  }
  return page;
}

Deno.test("the launch digest of a tiny image equals a PAGE_INFO chain derived by hand", async () => {
  const ovmf = syntheticOvmf({
    pages: 1,
    sections: [
      { gpa: 0x1000, size: 0x2000, type: SECTION.secMem },
      { gpa: 0x3000, size: 0x1000, type: SECTION.secrets },
      { gpa: 0x4000, size: 0x1000, type: SECTION.cpuid },
      { gpa: 0x5000, size: 0x1000, type: SECTION.kernelHashes },
    ],
    hashTable: { gpa: 0x5c00, size: 0x400 },
    resetEip: 0x80b004,
  });
  const kernel = new TextEncoder().encode("not really a kernel");
  const initrd = new Uint8Array([1, 2, 3]);
  const append = "console=ttyS0";
  const zeros = new Uint8Array(48);
  const expected: [number, number, Uint8Array][] = [
    [1, 0xfffff000, await sha("SHA-384", ovmf)],
    [3, 0x1000, zeros],
    [3, 0x2000, zeros],
    [5, 0x3000, zeros],
    [6, 0x4000, zeros],
    [1, 0x5000, await sha("SHA-384", await hashesPage(0xc00, kernel, initrd, append))],
    [
      2,
      0xfffffffff000,
      await sha("SHA-384", qemuVmsaPage({ eip: 0xfffffff0, vcpuSignature: 0xa00f11 })),
    ],
    [
      2,
      0xfffffffff000,
      await sha("SHA-384", qemuVmsaPage({ eip: 0x80b004, vcpuSignature: 0xa00f11 })),
    ],
  ];
  const result = snpLaunchDigest({
    ovmf,
    kernel,
    initrd,
    append,
    vcpus: 2,
    vcpuType: "EPYC-Milan",
    recordSteps: true,
  });
  const steps = result.steps!;
  assert.equal(steps.length, expected.length);
  let digest: Uint8Array<ArrayBuffer> = new Uint8Array(48);
  for (const [i, [type, gpa, contents]] of expected.entries()) {
    digest = await sha("SHA-384", pageInfo(digest, contents, type, gpa));
    assert.equal(steps[i].gpa, gpa, `step ${i} GPA`);
    assert.equal(steps[i].contents.toHex(), contents.toHex(), `step ${i} CONTENTS`);
    assert.equal(steps[i].digest.toHex(), digest.toHex(), `step ${i} digest`);
  }
  assert.equal(result.digest.toHex(), digest.toHex());
  assert.equal(result.digest.length, 48);
});

Deno.test("without a kernel the hashes section is a ZERO page, and steps are not kept unless asked", () => {
  const ovmf = syntheticOvmf({
    pages: 2,
    sections: [{ gpa: 0x5000, size: 0x1000, type: SECTION.kernelHashes }],
    hashTable: { gpa: 0x5c00, size: 0x400 },
  });
  const quiet = snpLaunchDigest({ ovmf, vcpus: 1, vcpuType: "EPYC-Genoa" });
  assert.equal(quiet.steps, undefined);
  const loud = snpLaunchDigest({ ovmf, vcpus: 1, vcpuType: "EPYC-Genoa", recordSteps: true });
  assert.deepEqual(loud.steps!.map((s) => s.pageType), ["normal", "normal", "zero", "vmsa"]);
  assert.equal(loud.digest.toHex(), quiet.digest.toHex());
});

Deno.test("every input changes the digest", () => {
  const ovmf = syntheticOvmf({
    pages: 2,
    sections: [{ gpa: 0x5000, size: 0x1000, type: SECTION.kernelHashes }],
    hashTable: { gpa: 0x5000, size: 0x400 },
    resetEip: 0x80b004,
  });
  const kernel = new Uint8Array([7]);
  const base = {
    ovmf,
    kernel,
    initrd: new Uint8Array([1]),
    append: "a",
    vcpus: 2,
    vcpuType: "EPYC-Milan",
  };
  const variants = [
    base,
    {
      ...base,
      ovmf: syntheticOvmf({
        pages: 2,
        sections: [{ gpa: 0x5000, size: 0x1000, type: 0x10 }],
        hashTable: { gpa: 0x5000, size: 0x400 },
        resetEip: 0x80b004,
        seed: 2,
      }),
    },
    { ...base, kernel: new Uint8Array([8]) },
    { ...base, initrd: new Uint8Array([2]) },
    { ...base, append: "b" },
    { ...base, append: undefined },
    { ...base, vcpus: 3 },
    { ...base, vcpuType: "EPYC-Genoa" },
    { ...base, guestFeatures: 0x21n },
  ];
  const digests = new Set(variants.map((v) => snpLaunchDigest(v).digest.toHex()));
  assert.equal(digests.size, variants.length);
});
