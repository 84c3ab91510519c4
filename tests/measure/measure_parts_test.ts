/**
 * The parts of the launch digest: structure sizes and offsets against the
 * specs, the OVMF footer table and SEV metadata, the VMSA of each vCPU, CPUID
 * signatures, and the errors a person sees.
 */
import assert from "node:assert/strict";
import {
  cpuidSignature,
  MeasureInputError,
  OvmfFormatError,
  PAGE_INFO,
  parseOvmf,
  qemuVmsaPage,
  snpLaunchDigest,
  VCPU_TYPES,
  vcpuSignature,
  VcpuTypeError,
} from "../../runtime/measure/mod.ts";
import {
  PADDED_SEV_HASH_TABLE_SIZE,
  SEV_HASH_TABLE,
  sevHashTable,
} from "../../runtime/measure/kernel_hashes.ts";
import { SEV_ES_SAVE_AREA } from "../../runtime/measure/vmsa.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { amdSevLikeSections, SECTION, syntheticOvmf } from "./_synthetic_ovmf.ts";

Deno.test("structure sizes and offsets follow the specs", () => {
  assert.equal(PAGE_INFO.size, 0x70);
  assert.deepEqual(PAGE_INFO.fields.GPA, { offset: 0x68, size: 8 });
  assert.deepEqual(PAGE_INFO.fields.PAGE_TYPE, { offset: 0x62, size: 1 });
  // Linux EXPECTED_SEV_ES_SAVE_AREA_SIZE and APM Table B-4 offsets.
  assert.equal(SEV_ES_SAVE_AREA.size, 1648);
  assert.equal(SEV_ES_SAVE_AREA.fields.sev_features.offset, 0x3b0);
  assert.equal(SEV_ES_SAVE_AREA.fields.rdx.offset, 0x310);
  assert.equal(SEV_ES_SAVE_AREA.fields.x87_fcw.offset, 0x410);
  assert.equal(SEV_ES_SAVE_AREA.size, 1648);
  assert.equal(SEV_HASH_TABLE.size, 16 + 2 + 3 * 50);
  assert.equal(PADDED_SEV_HASH_TABLE_SIZE, 176);
});

Deno.test("parseOvmf reads the footer table, SEV metadata, reset block and hash table area", () => {
  const sections = amdSevLikeSections({ svsmCaa: true });
  const image = syntheticOvmf({
    pages: 4,
    sections,
    resetEip: 0x80b004,
    hashTable: { gpa: 0x80f400, size: 0x400 },
  });
  const ovmf = parseOvmf(image);
  assert.equal(ovmf.gpa, 0x1_0000_0000 - 4 * 4096);
  assert.deepEqual(ovmf.sevSections, sections);
  assert.equal(ovmf.sevEsResetEip, 0x80b004);
  assert.deepEqual(ovmf.sevHashTable, { gpa: 0x80f400, size: 0x400 });
  assert.deepEqual([...ovmf.table.keys()].sort(), [
    "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
    "7255371f-3a3b-4b04-927b-1da6efa8d454",
    "dc886566-984a-4798-a75e-5585a7bf67cc",
  ]);
});

Deno.test("a VMSA page holds the reset state: BSP at 0xffff0000:0xfff0, APs at OVMF's reset address", () => {
  const word = (page: Uint8Array<ArrayBuffer>, offset: number) =>
    new DataView(page.buffer).getBigUint64(offset, true);
  const bsp = qemuVmsaPage({ eip: 0xfffffff0, vcpuSignature: 0xa10f10 });
  const ap = qemuVmsaPage({ eip: 0x80b004, vcpuSignature: 0xa10f10, sevFeatures: 0x21n });
  assert.equal(bsp.length, 4096);
  // Every non-zero quadword of the BSP's page, offset by offset (APM Table B-4).
  const expected: Record<number, bigint> = {
    0x00: 0xffff00930000n, // es: attrib 0x93, limit 0xffff
    0x10: 0xffff009bf000n, // cs: selector 0xf000, attrib 0x9b, limit 0xffff
    0x18: 0xffff0000n, // cs base
    0x20: 0xffff00930000n,
    0x30: 0xffff00930000n,
    0x40: 0xffff00930000n,
    0x50: 0xffff00930000n,
    0x60: 0xffff00000000n, // gdtr limit
    0x70: 0xffff00820000n, // ldtr
    0x80: 0xffff00000000n, // idtr limit
    0x90: 0xffff008b0000n, // tr
    0xd0: 0x1000n, // EFER.SVME
    0x148: 0x40n, // CR4.MCE
    0x158: 0x10n, // CR0.ET
    0x160: 0x400n, // DR7
    0x168: 0xffff0ff0n, // DR6
    0x170: 0x2n, // RFLAGS
    0x178: 0xfff0n, // RIP
    0x268: 0x0007040600070406n, // G_PAT
    0x310: 0xa10f10n, // RDX: CPUID signature
    0x3b0: 0x1n, // SEV_FEATURES: SNPActive
    0x3e8: 0x1n, // XCR0
    0x408: 0x1f80n, // MXCSR
    0x410: 0x37fn, // x87 FCW
  };
  for (let offset = 0; offset < 4096; offset += 8) {
    assert.equal(
      word(bsp, offset),
      expected[offset] ?? 0n,
      `BSP quadword at 0x${offset.toString(16)}`,
    );
  }
  assert.equal(word(ap, 0x18), 0x800000n);
  assert.equal(word(ap, 0x178), 0xb004n);
  assert.equal(word(ap, 0x3b0), 0x21n);
});

Deno.test("CPUID signatures of QEMU's EPYC models", () => {
  assert.equal(vcpuSignature("EPYC"), 0x800f12);
  assert.equal(vcpuSignature("EPYC-v4"), 0x800f12);
  assert.equal(vcpuSignature("EPYC-Rome"), 0x830f10);
  assert.equal(vcpuSignature("EPYC-Milan"), 0xa00f11);
  assert.equal(vcpuSignature("EPYC-Genoa"), 0xa10f10);
  assert.equal(vcpuSignature("EPYC-Turin"), 0xb00f00);
  assert.equal(cpuidSignature(6, 0x55, 4), 0x50654);
  assert.ok(Object.keys(VCPU_TYPES).length >= 16);
});

Deno.test("the hashes table hashes the command line with its NUL and an absent initrd as empty", async () => {
  const table = sevHashTable({ kernel: new Uint8Array([1]) });
  const sha256 = async (b: Uint8Array<ArrayBuffer>) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", b)).toHex();
  assert.equal(table.length, 176);
  assert.equal(table.subarray(18 + 18, 18 + 50).toHex(), await sha256(new Uint8Array([0])));
  assert.equal(table.subarray(68 + 18, 68 + 50).toHex(), await sha256(new Uint8Array()));
  assert.equal(table.subarray(118 + 18, 118 + 50).toHex(), await sha256(new Uint8Array([1])));
  assert.equal(table.subarray(168).toHex(), "00".repeat(8));
});

Deno.test("errors name the problem and have stable codes", () => {
  const good = syntheticOvmf({
    pages: 1,
    sections: [{ gpa: 0x1000, size: 0x1000, type: SECTION.secrets }],
  });
  const base = { ovmf: good, vcpus: 1, vcpuType: "EPYC-Milan" };
  const fails = (
    options: Parameters<typeof snpLaunchDigest>[0],
    type: new (...a: never[]) => Error,
    code: string,
  ) =>
    assert.throws(() => snpLaunchDigest(options), (e: unknown) => {
      assert.ok(e instanceof EnarxError && e instanceof type, String(e));
      assert.equal(e.code, code);
      assert.doesNotMatch(e.message, /\n|\.$/);
      return true;
    });
  fails({ ...base, ovmf: new Uint8Array(4096) }, OvmfFormatError, "ovmf-invalid");
  fails({ ...base, ovmf: new Uint8Array(100) }, OvmfFormatError, "ovmf-invalid");
  fails(
    { ...base, ovmf: syntheticOvmf({ pages: 1, resetEip: 1 }) },
    OvmfFormatError,
    "ovmf-no-sev-metadata",
  );
  fails({ ...base, kernel: new Uint8Array(1) }, OvmfFormatError, "ovmf-no-kernel-hashes");
  fails({ ...base, vcpus: 2 }, OvmfFormatError, "ovmf-no-reset-block");
  fails(
    { ...base, ovmf: syntheticOvmf({ pages: 1, sections: [{ gpa: 0, size: 4096, type: 9 }] }) },
    OvmfFormatError,
    "ovmf-unknown-section",
  );
  fails({ ...base, vcpuType: "Skylake" }, VcpuTypeError, "vcpu-type-unknown");
  fails({ ...base, vcpus: 0 }, MeasureInputError, "measure-input-invalid");
  fails({ ...base, append: "x" }, MeasureInputError, "measure-input-invalid");
  fails({ ...base, vmmType: "ec2" as "qemu" }, MeasureInputError, "measure-input-invalid");
  fails({ ...base, vcpuSignature: 0xa00f11 }, MeasureInputError, "measure-input-invalid");
  fails({ ...base, vcpuType: undefined }, MeasureInputError, "measure-input-invalid");
  fails(
    { ...base, vcpuType: undefined, vcpuSignature: -1 },
    MeasureInputError,
    "measure-input-invalid",
  );
  assert.equal(
    snpLaunchDigest({ ...base, vcpuType: undefined, vcpuSignature: 0xa00f11 }).digest.toHex(),
    snpLaunchDigest(base).digest.toHex(),
  );
  assert.throws(
    () => vcpuSignature("Skylake"),
    /Unknown vCPU type "Skylake"; use one of EPYC, .*EPYC-Milan, .*EPYC-Genoa/,
  );
});
