/**
 * The SEV-SNP launch digest of a QEMU guest booted from OVMF, computed as the
 * AMD secure processor computes it (AMD SEV-SNP Firmware ABI #56860,
 * "SNP_LAUNCH_UPDATE", "PAGE_INFO Structure"), in the order QEMU and KVM
 * issue the launch updates:
 *
 * 1. the OVMF image, as NORMAL pages, mapped to end at 4 GiB;
 * 2. each SEV metadata section of OVMF, in the image's order (QEMU
 *    target/i386/sev.c, `snp_populate_metadata_pages`): SNP_SEC_MEM and
 *    SVSM_CAA as ZERO pages, SNP_SECRETS as a SECRETS page, CPUID as a CPUID
 *    page, SNP_KERNEL_HASHES as one NORMAL page holding the kernel hashes
 *    table when a kernel is given (`kernel-hashes=on`), else as a ZERO page;
 * 3. one VMSA page per vCPU (KVM, at SNP_LAUNCH_FINISH): the BSP's, then the
 *    application processors'.
 *
 * @module
 */
import { MeasureInputError, OvmfFormatError } from "./errors.ts";
import { type OvmfImage, OvmfSectionType, type OvmfSevSection, parseOvmf } from "./ovmf.ts";
import { type KernelBlobs, sevHashesPage, sevHashTable } from "./kernel_hashes.ts";
import { SnpLaunchDigest, type SnpLaunchStep } from "./snp_page_info.ts";
import { BSP_RESET_EIP, qemuVmsaPage, SEV_FEATURE_SNP_ACTIVE, vcpuSignature } from "./vmsa.ts";

/** The VMMs whose launch sequence is modelled. */
export type VmmType = "qemu";

/** What {@link snpLaunchDigest} measures. */
export interface SnpLaunchOptions {
  /** The OVMF code image (.fd) as QEMU maps it. */
  ovmf: Uint8Array;
  /** The kernel given to `-kernel`; its presence means `kernel-hashes=on`. */
  kernel?: Uint8Array;
  /** The initrd given to `-initrd` (needs `kernel`). */
  initrd?: Uint8Array;
  /** The command line given to `-append` (needs `kernel`). */
  append?: string;
  /** The number of vCPUs (`-smp`), at least 1. */
  vcpus: number;
  /** The QEMU CPU model (`-cpu`), e.g. `EPYC-Milan`; see `VCPU_TYPES`. */
  vcpuType?: string;
  /** The CPUID Fn0000_0001_EAX signature, for a CPU model not in `VCPU_TYPES` (instead of `vcpuType`). */
  vcpuSignature?: number;
  /** The VMM; only `qemu` (default). */
  vmmType?: VmmType;
  /** SEV_FEATURES of each VMSA (default 0x1, SNPActive). */
  guestFeatures?: bigint;
  /** Keep every PAGE_INFO step in the result. */
  recordSteps?: boolean;
}

/** The launch digest and, on request, how it was reached. */
export interface SnpLaunchResult {
  /** The 48-byte launch digest (MEASUREMENT of the attestation report). */
  digest: Uint8Array;
  /** Every page measured, in order, when `recordSteps` was set. */
  steps?: readonly SnpLaunchStep[];
}

/** Computes the SEV-SNP launch digest of a QEMU guest; throws EnarxError subclasses on bad input. */
export function snpLaunchDigest(options: SnpLaunchOptions): SnpLaunchResult {
  checkOptions(options);
  const signature = options.vcpuSignature ?? vcpuSignature(options.vcpuType ?? "");
  const ovmf = parseOvmf(options.ovmf);
  const blobs = options.kernel === undefined
    ? undefined
    : { kernel: options.kernel, initrd: options.initrd, append: options.append };
  const ld = new SnpLaunchDigest({ recordSteps: options.recordSteps });
  ld.updateNormalPages(ovmf.gpa, ovmf.bytes);
  measureMetadata(ld, ovmf, blobs);
  const sevFeatures = options.guestFeatures ?? SEV_FEATURE_SNP_ACTIVE;
  for (let vcpu = 0; vcpu < options.vcpus; vcpu++) {
    const eip = vcpu === 0 ? BSP_RESET_EIP : apResetEip(ovmf);
    ld.updateVmsaPage(qemuVmsaPage({ eip, vcpuSignature: signature, sevFeatures }));
  }
  return { digest: ld.digest, steps: ld.steps };
}

function checkOptions(options: SnpLaunchOptions): void {
  const vmm = options.vmmType ?? "qemu";
  if (vmm !== "qemu") {
    throw new MeasureInputError(`Unknown VMM type "${vmm}"; only "qemu" is supported`);
  }
  if (!Number.isInteger(options.vcpus) || options.vcpus < 1 || options.vcpus > 512) {
    throw new MeasureInputError(
      `vCPU count "${options.vcpus}" is not a whole number from 1 to 512`,
    );
  }
  if (
    options.kernel === undefined && (options.initrd !== undefined || options.append !== undefined)
  ) {
    throw new MeasureInputError(
      "An initrd or command line is measured only with a kernel; pass the kernel too",
    );
  }
  if ((options.vcpuType === undefined) === (options.vcpuSignature === undefined)) {
    throw new MeasureInputError("Give either a vCPU type or a vCPU signature, not both or neither");
  }
  const sig = options.vcpuSignature;
  if (sig !== undefined && (!Number.isInteger(sig) || sig < 0 || sig > 0xffffffff)) {
    throw new MeasureInputError(`vCPU signature "${sig}" is not a 32-bit number`);
  }
  const features = options.guestFeatures;
  if (features !== undefined && (features < 0n || features >= 1n << 64n)) {
    throw new MeasureInputError(`Guest features "0x${features.toString(16)}" do not fit 64 bits`);
  }
}

/** Measures the SEV metadata sections (QEMU's `snp_populate_metadata_pages`). */
function measureMetadata(
  ld: SnpLaunchDigest,
  ovmf: OvmfImage,
  blobs: KernelBlobs | undefined,
): void {
  const hasHashesSection = ovmf.sevSections.some((s) => s.type === OvmfSectionType.snpKernelHashes);
  if (blobs !== undefined && !hasHashesSection) {
    throw new OvmfFormatError(
      "OVMF image has no SNP_KERNEL_HASHES section, so a kernel cannot be measured; use an OVMF built from OvmfPkg/AmdSev",
      "ovmf-no-kernel-hashes",
    );
  }
  for (const section of ovmf.sevSections) measureSection(ld, ovmf, section, blobs);
}

function measureSection(
  ld: SnpLaunchDigest,
  ovmf: OvmfImage,
  section: OvmfSevSection,
  blobs: KernelBlobs | undefined,
): void {
  switch (section.type) {
    case OvmfSectionType.snpSecMem:
    case OvmfSectionType.svsmCaa:
      return ld.updateEmptyPages("zero", section.gpa, section.size);
    case OvmfSectionType.snpSecrets:
      return ld.updateEmptyPages("secrets", section.gpa, section.size);
    case OvmfSectionType.cpuid:
      return ld.updateEmptyPages("cpuid", section.gpa, section.size);
    case OvmfSectionType.snpKernelHashes:
      if (blobs === undefined) return ld.updateEmptyPages("zero", section.gpa, section.size);
      return ld.updateNormalPages(section.gpa, hashesPage(ovmf, section, blobs));
  }
  throw new OvmfFormatError(
    `OVMF SEV metadata section at 0x${section.gpa.toString(16)} has unknown type 0x${
      section.type.toString(16)
    }`,
    "ovmf-unknown-section",
  );
}

function hashesPage(ovmf: OvmfImage, section: OvmfSevSection, blobs: KernelBlobs): Uint8Array {
  if (ovmf.sevHashTable === undefined) {
    throw new OvmfFormatError(
      "OVMF image has an SNP_KERNEL_HASHES section but no SEV hash table entry (7255371f-3a3b-4b04-927b-1da6efa8d454)",
      "ovmf-no-kernel-hashes",
    );
  }
  if (section.size !== 4096) {
    throw new OvmfFormatError(
      `OVMF SNP_KERNEL_HASHES section is ${section.size} bytes; expected one 4096-byte page`,
    );
  }
  return sevHashesPage(sevHashTable(blobs), ovmf.sevHashTable.gpa & 0xfff);
}

function apResetEip(ovmf: OvmfImage): number {
  if (ovmf.sevEsResetEip === undefined) {
    throw new OvmfFormatError(
      "OVMF image has no SEV-ES reset block (00f771de-1a7e-4fcb-890e-68c77e2fb44e), so vCPUs beyond the first cannot start; use 1 vCPU or an SEV-capable OVMF",
      "ovmf-no-reset-block",
    );
  }
  return ovmf.sevEsResetEip;
}
