/**
 * Launch measurements computed ahead of time: the SEV-SNP launch digest of a
 * QEMU guest booted from OVMF (with or without a measured kernel, initrd and
 * command line), and the parts it is made of.
 *
 * @module
 */
export { snpLaunchDigest } from "./snp_launch_digest.ts";
export type { SnpLaunchOptions, SnpLaunchResult, VmmType } from "./snp_launch_digest.ts";
export { DIGEST_SIZE, PAGE_INFO, SnpLaunchDigest, SnpPageType, VMSA_GPA } from "./snp_page_info.ts";
export type { SnpLaunchStep, SnpPageTypeName } from "./snp_page_info.ts";
export { OvmfGuid, OvmfSectionType, parseOvmf } from "./ovmf.ts";
export type { OvmfImage, OvmfSevSection } from "./ovmf.ts";
export { sevHashesPage, SevHashGuid, sevHashTable } from "./kernel_hashes.ts";
export type { KernelBlobs } from "./kernel_hashes.ts";
export { cpuidSignature, qemuVmsaPage, VCPU_TYPES, vcpuSignature } from "./vmsa.ts";
export type { VmsaOptions } from "./vmsa.ts";
export { MeasureInputError, OvmfFormatError, VcpuTypeError } from "./errors.ts";
