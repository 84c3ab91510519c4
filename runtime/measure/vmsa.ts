/**
 * The VM save area (VMSA) of each vCPU as KVM hands it to SNP_LAUNCH_UPDATE
 * for a QEMU guest, and the vCPU types whose CPUID signature it carries.
 *
 * Layout: AMD64 Architecture Programmer's Manual vol. 2, Appendix B, Table
 * B-4 "VMSA Layout, State Save Area for SEV-ES" (the same offsets as Linux's
 * `struct sev_es_save_area`, 0x670 bytes). The rest of the 4 KiB VMSA page is
 * zero.
 *
 * Values: the x86 reset state (APM vol. 2, section 14.1.3 "Processor
 * Initialization State", Table 14-1) as QEMU sets it and KVM copies it into
 * the VMSA when the launch finishes: real mode at CS base 0xffff0000, RIP
 * 0xfff0 for the BSP; RDX holds the CPUID Fn0000_0001_EAX signature;
 * EFER.SVME is set, as SEV-ES requires of a VMSA; x87/SSE state as after
 * FNINIT. Application processors start at the SEV-ES reset address that OVMF
 * publishes (CS base from bits 31:16, IP from bits 15:0). SEV_FEATURES holds
 * the guest features (bit 0 SNPActive).
 *
 * @module
 */
import { defineStruct, StructBuffer } from "../../ffi/struct_layout.ts";
import { VcpuTypeError } from "./errors.ts";
import { PAGE_SIZE } from "./snp_page_info.ts";

/** A segment register in a save area (APM vol. 2, Table B-4; Linux `struct vmcb_seg`). */
export const VMCB_SEG = defineStruct("vmcb_seg", {
  size: 16,
  fields: { selector: [0, 2], attrib: [2, 2], limit: [4, 4], base: [8, 8] },
  source: { header: null, local: "no", source: "AMD APM vol. 2, Table B-4" },
});

/** The fields of the VMSA that a launch sets (APM vol. 2, Table B-4). */
export const SEV_ES_SAVE_AREA = defineStruct("sev_es_save_area", {
  size: 0x670,
  fields: {
    es: [0x000, 16],
    cs: [0x010, 16],
    ss: [0x020, 16],
    ds: [0x030, 16],
    fs: [0x040, 16],
    gs: [0x050, 16],
    gdtr: [0x060, 16],
    ldtr: [0x070, 16],
    idtr: [0x080, 16],
    tr: [0x090, 16],
    vmpl: [0x0ca, 1],
    cpl: [0x0cb, 1],
    efer: [0x0d0, 8],
    xss: [0x140, 8],
    cr4: [0x148, 8],
    cr3: [0x150, 8],
    cr0: [0x158, 8],
    dr7: [0x160, 8],
    dr6: [0x168, 8],
    rflags: [0x170, 8],
    rip: [0x178, 8],
    rsp: [0x1d8, 8],
    rax: [0x1f8, 8],
    g_pat: [0x268, 8],
    rcx: [0x308, 8],
    rdx: [0x310, 8],
    sev_features: [0x3b0, 8],
    virtual_tom: [0x3c8, 8],
    xcr0: [0x3e8, 8],
    mxcsr: [0x408, 4],
    x87_ftw: [0x40c, 2],
    x87_fsw: [0x40e, 2],
    x87_fcw: [0x410, 2],
  },
  source: {
    header: null,
    local: "no",
    source: "AMD APM vol. 2, Table B-4 (Linux struct sev_es_save_area)",
  },
});

/** Family, model and stepping of QEMU's AMD EPYC CPU models (QEMU target/i386/cpu.c). */
export const VCPU_TYPES: Readonly<
  Record<string, { family: number; model: number; stepping: number }>
> = {
  "EPYC": { family: 23, model: 1, stepping: 2 },
  "EPYC-v1": { family: 23, model: 1, stepping: 2 },
  "EPYC-v2": { family: 23, model: 1, stepping: 2 },
  "EPYC-IBPB": { family: 23, model: 1, stepping: 2 },
  "EPYC-v3": { family: 23, model: 1, stepping: 2 },
  "EPYC-v4": { family: 23, model: 1, stepping: 2 },
  "EPYC-Rome": { family: 23, model: 49, stepping: 0 },
  "EPYC-Rome-v1": { family: 23, model: 49, stepping: 0 },
  "EPYC-Rome-v2": { family: 23, model: 49, stepping: 0 },
  "EPYC-Rome-v3": { family: 23, model: 49, stepping: 0 },
  "EPYC-Milan": { family: 25, model: 1, stepping: 1 },
  "EPYC-Milan-v1": { family: 25, model: 1, stepping: 1 },
  "EPYC-Milan-v2": { family: 25, model: 1, stepping: 1 },
  "EPYC-Genoa": { family: 25, model: 17, stepping: 0 },
  "EPYC-Genoa-v1": { family: 25, model: 17, stepping: 0 },
  "EPYC-Turin": { family: 26, model: 0, stepping: 0 },
};

/** The BSP's reset address: CS base 0xffff0000, IP 0xfff0. */
export const BSP_RESET_EIP = 0xfffffff0;

/** SEV_FEATURES bit 0, SNPActive: the default guest features of an SNP guest. */
export const SEV_FEATURE_SNP_ACTIVE = 0x1n;

/**
 * The CPUID Fn0000_0001_EAX signature for a family, model and stepping (AMD
 * CPUID specification #25481: stepping 3:0, base model 7:4, base family
 * 11:8, extended model 19:16, extended family 27:20).
 */
export function cpuidSignature(family: number, model: number, stepping: number): number {
  const extendedFamily = family > 0xf ? family - 0xf : 0;
  const baseFamily = Math.min(family, 0xf);
  return ((extendedFamily << 20) | ((model >> 4) << 16) | (baseFamily << 8) | ((model & 0xf) << 4) |
    stepping) >>> 0;
}

/** The CPUID signature of a QEMU vCPU type; throws {@link VcpuTypeError} for an unknown one. */
export function vcpuSignature(vcpuType: string): number {
  const type = VCPU_TYPES[vcpuType];
  if (type === undefined) throw new VcpuTypeError(vcpuType, Object.keys(VCPU_TYPES));
  return cpuidSignature(type.family, type.model, type.stepping);
}

/** What differs between VMSAs: where the vCPU starts, its signature, its features. */
export interface VmsaOptions {
  /** The reset address: CS base in bits 31:16, IP in bits 15:0. */
  eip: number;
  /** The CPUID signature placed in RDX. */
  vcpuSignature: number;
  /** SEV_FEATURES (default {@link SEV_FEATURE_SNP_ACTIVE}). */
  sevFeatures?: bigint;
}

/** One vCPU's VMSA page (4 KiB) as QEMU and KVM launch it. */
export function qemuVmsaPage(options: VmsaOptions): Uint8Array<ArrayBuffer> {
  const page = new Uint8Array(PAGE_SIZE);
  const vmsa = new StructBuffer(SEV_ES_SAVE_AREA, page);
  const data = { attrib: 0x93, limit: 0xffff };
  vmsa.setBytes("es", segment(data));
  vmsa.setBytes(
    "cs",
    segment({
      selector: 0xf000,
      attrib: 0x9b,
      limit: 0xffff,
      base: (options.eip & 0xffff0000) >>> 0,
    }),
  );
  for (const name of ["ss", "ds", "fs", "gs"] as const) vmsa.setBytes(name, segment(data));
  vmsa.setBytes("gdtr", segment({ limit: 0xffff }));
  vmsa.setBytes("ldtr", segment({ attrib: 0x82, limit: 0xffff }));
  vmsa.setBytes("idtr", segment({ limit: 0xffff }));
  vmsa.setBytes("tr", segment({ attrib: 0x8b, limit: 0xffff }));
  vmsa.set("efer", 0x1000); // EFER.SVME
  vmsa.set("cr4", 0x40); // CR4.MCE
  vmsa.set("cr0", 0x10); // CR0.ET
  vmsa.set("dr7", 0x400);
  vmsa.set("dr6", 0xffff0ff0);
  vmsa.set("rflags", 0x2);
  vmsa.set("rip", options.eip & 0xffff);
  vmsa.set("g_pat", 0x0007040600070406n); // the PAT's reset value
  vmsa.set("rdx", options.vcpuSignature);
  vmsa.set("sev_features", options.sevFeatures ?? SEV_FEATURE_SNP_ACTIVE);
  vmsa.set("xcr0", 0x1);
  vmsa.set("mxcsr", 0x1f80);
  vmsa.set("x87_fcw", 0x37f);
  return page;
}

function segment(
  seg: { selector?: number; attrib?: number; limit?: number; base?: number },
): Uint8Array {
  const out = new StructBuffer(VMCB_SEG);
  out.set("selector", seg.selector ?? 0);
  out.set("attrib", seg.attrib ?? 0);
  out.set("limit", seg.limit ?? 0);
  out.set("base", seg.base ?? 0);
  return out.bytes;
}
