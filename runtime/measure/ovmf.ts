/**
 * What the launch digest needs from an OVMF image: its GUIDed footer table,
 * the SEV metadata sections, the SEV-ES AP reset address and the area of the
 * kernel hashes table.
 *
 * edk2 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm lays the footer table
 * out just below the last 0x20 bytes of the image (which is mapped to end at
 * 4 GiB): the footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d ends at
 * 0xffffffe0 (image end - 0x20), the table's total length (u16) is right
 * before it, and each entry before that is `data, u16 length, GUID`, where
 * length covers all three; one walks back from the footer. edk2
 * OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm describes the SEV metadata
 * ("ASEV" header, then base/size/type sections) that the entry
 * dc886566-984a-4798-a75e-5585a7bf67cc points to by its offset from the end
 * of the image.
 *
 * @module
 */
import { defineStruct, StructBuffer } from "../../ffi/struct_layout.ts";
import { OvmfFormatError } from "./errors.ts";
import { guidBytes } from "./_guid.ts";
import { bytesEqual } from "../bytes.ts";

/** GUIDs of the footer table entries we read (ResetVectorVtf0.asm). */
export const OvmfGuid = {
  /** The table footer. */
  footer: "96b582de-1fb2-45f7-baea-a366c55a082d",
  /** u32: offset of the SEV metadata from the end of the image. */
  sevMetadata: "dc886566-984a-4798-a75e-5585a7bf67cc",
  /** u32: the SEV-ES AP reset address (CS base in bits 31:16, IP in 15:0). */
  sevEsResetBlock: "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
  /** u32 base, u32 size: where QEMU puts the kernel hashes table. */
  sevHashTable: "7255371f-3a3b-4b04-927b-1da6efa8d454",
  /** u32 base, u32 size: the SEV (pre-SNP) launch secret area. */
  sevSecret: "4c2eb361-7d9b-4cc3-8081-127c90d3d294",
} as const;

/** SEV metadata section types (OvmfSevMetadata.asm, OVMF_SECTION_TYPE_*). */
export const OvmfSectionType = {
  /** Memory the VMM pre-validates: measured as ZERO pages. */
  snpSecMem: 0x1,
  /** The SNP secrets page. */
  snpSecrets: 0x2,
  /** The CPUID page. */
  cpuid: 0x3,
  /** The SVSM calling area: measured as ZERO pages. */
  svsmCaa: 0x4,
  /** The page that holds QEMU's kernel hashes table (AmdSev builds). */
  snpKernelHashes: 0x10,
} as const;

/** The SEV metadata header (OvmfSevMetadata.asm, `_DescriptorSev`). */
export const OVMF_SEV_METADATA = defineStruct("OvmfSevMetadata", {
  size: 16,
  fields: { signature: [0, 4], length: [4, 4], version: [8, 4], num_items: [12, 4] },
  source: { header: null, local: "no", source: "edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm" },
});

/** One SEV metadata section descriptor (OvmfSevMetadata.asm). */
export const OVMF_SEV_SECTION = defineStruct("OvmfSevMetadataSection", {
  size: 12,
  fields: { base: [0, 4], size: [4, 4], type: [8, 4] },
  source: { header: null, local: "no", source: "edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm" },
});

/** One SEV metadata section. */
export interface OvmfSevSection {
  /** Guest physical address of the first byte. */
  gpa: number;
  /** Length in bytes. */
  size: number;
  /** One of {@link OvmfSectionType}, or another number an unknown build uses. */
  type: number;
}

/** The parts of an OVMF image that the launch digest depends on. */
export interface OvmfImage {
  /** The whole image, measured page by page. */
  bytes: Uint8Array;
  /** Where the image is mapped: it ends at 4 GiB. */
  gpa: number;
  /** The footer table's entries by lowercase GUID. */
  table: ReadonlyMap<string, Uint8Array>;
  /** The SEV metadata sections, in the image's order. */
  sevSections: readonly OvmfSevSection[];
  /** The SEV-ES AP reset address, if the image has the reset block. */
  sevEsResetEip?: number;
  /** The kernel hashes table's area, if the image declares one. */
  sevHashTable?: { gpa: number; size: number };
}

const FOUR_GIB = 0x1_0000_0000;
const FOOTER_END_FROM_END = 0x20;
const ENTRY_HEADER = 18;

/** Parses the footer table and SEV metadata of an OVMF image; throws {@link OvmfFormatError}. */
export function parseOvmf(bytes: Uint8Array): OvmfImage {
  if (bytes.length % 4096 !== 0 || bytes.length > FOUR_GIB || bytes.length < 4096) {
    throw new OvmfFormatError(
      `OVMF image of ${bytes.length} bytes is not a whole number of 4 KiB pages below 4 GiB; pass an OVMF code image (.fd)`,
    );
  }
  const table = footerTable(bytes);
  const reset = table.get(OvmfGuid.sevEsResetBlock);
  const hashes = table.get(OvmfGuid.sevHashTable);
  return {
    bytes,
    gpa: FOUR_GIB - bytes.length,
    table,
    sevSections: sevSections(bytes, table),
    sevEsResetEip: reset && reset.length >= 4 ? u32(reset, 0) : undefined,
    sevHashTable: hashes && hashes.length >= 8
      ? { gpa: u32(hashes, 0), size: u32(hashes, 4) }
      : undefined,
  };
}

/** The footer table's entries by lowercase GUID. */
export function footerTable(bytes: Uint8Array): Map<string, Uint8Array> {
  const footerEnd = bytes.length - FOOTER_END_FROM_END;
  const footerGuid = bytes.subarray(footerEnd - 16, footerEnd);
  if (!bytesEqual(footerGuid, guidBytes(OvmfGuid.footer))) {
    throw new OvmfFormatError(
      `No OVMF footer table (GUID ${OvmfGuid.footer}) at 0x${
        (footerEnd - 16).toString(16)
      }; this is not an OVMF code image`,
    );
  }
  const tableLength = u16(bytes, footerEnd - ENTRY_HEADER);
  const tableStart = footerEnd - tableLength;
  if (tableLength < ENTRY_HEADER || tableStart < 0) {
    throw new OvmfFormatError(`OVMF footer table length ${tableLength} is out of range`);
  }
  const entries = new Map<string, Uint8Array>();
  for (let end = footerEnd - ENTRY_HEADER; end > tableStart;) {
    const length = u16(bytes, end - ENTRY_HEADER);
    if (length < ENTRY_HEADER || end - length < tableStart) {
      throw new OvmfFormatError(
        `OVMF footer table entry ending at 0x${end.toString(16)} has bad length ${length}`,
      );
    }
    entries.set(
      guidString(bytes.subarray(end - 16, end)),
      bytes.subarray(end - length, end - ENTRY_HEADER),
    );
    end -= length;
  }
  return entries;
}

function sevSections(bytes: Uint8Array, table: Map<string, Uint8Array>): OvmfSevSection[] {
  const entry = table.get(OvmfGuid.sevMetadata);
  if (entry === undefined || entry.length < 4) {
    throw new OvmfFormatError(
      `OVMF image has no SEV metadata (GUID ${OvmfGuid.sevMetadata}); use an OVMF built for SEV-SNP (OvmfPkg/AmdSev or OvmfX64)`,
      "ovmf-no-sev-metadata",
    );
  }
  const start = bytes.length - u32(entry, 0);
  if (start < 0 || start + OVMF_SEV_METADATA.size > bytes.length) {
    throw new OvmfFormatError(`OVMF SEV metadata offset ${u32(entry, 0)} lies outside the image`);
  }
  const header = new StructBuffer(OVMF_SEV_METADATA, copy(bytes, start, OVMF_SEV_METADATA.size));
  const signature = new TextDecoder().decode(header.field("signature"));
  if (signature !== "ASEV" || header.getNumber("version") !== 1) {
    throw new OvmfFormatError(
      `OVMF SEV metadata has signature "${signature}" version ${
        header.getNumber("version")
      }; expected "ASEV" version 1`,
    );
  }
  const count = header.getNumber("num_items");
  const first = start + OVMF_SEV_METADATA.size;
  if (first + count * OVMF_SEV_SECTION.size > bytes.length) {
    throw new OvmfFormatError(`OVMF SEV metadata lists ${count} sections that run past the image`);
  }
  const sections: OvmfSevSection[] = [];
  for (let i = 0; i < count; i++) {
    const desc = new StructBuffer(
      OVMF_SEV_SECTION,
      copy(bytes, first + i * OVMF_SEV_SECTION.size, OVMF_SEV_SECTION.size),
    );
    sections.push({
      gpa: desc.getNumber("base"),
      size: desc.getNumber("size"),
      type: desc.getNumber("type"),
    });
  }
  return sections;
}

function copy(bytes: Uint8Array, offset: number, length: number): Uint8Array<ArrayBuffer> {
  return bytes.slice(offset, offset + length);
}

function u16(bytes: Uint8Array, offset: number): number {
  return bytes[offset] | (bytes[offset + 1] << 8);
}

function u32(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0, true);
}

function guidString(raw: Uint8Array): string {
  const le = new Uint8Array(raw);
  le.subarray(0, 4).reverse();
  le.subarray(4, 6).reverse();
  le.subarray(6, 8).reverse();
  const hex = le.toHex();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}
