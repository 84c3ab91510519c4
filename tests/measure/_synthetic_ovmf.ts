/**
 * Small images in the shape of an OVMF code image, made here so that the
 * measurement tests need no firmware package: filler pages, the SEV metadata
 * ("ASEV" header and sections) and the GUIDed footer table that ends 0x20
 * bytes before the end of the image, as edk2's ResetVectorVtf0.asm and
 * OvmfSevMetadata.asm lay them out. GUIDs are written as the byte sequences
 * those files spell out, independently of the library's GUID helper.
 *
 * @module
 */

/** GUIDs in EFI byte order, as ResetVectorVtf0.asm writes them. */
export const GUID_BYTES = {
  footer: [
    0xde,
    0x82,
    0xb5,
    0x96,
    0xb2,
    0x1f,
    0xf7,
    0x45,
    0xba,
    0xea,
    0xa3,
    0x66,
    0xc5,
    0x5a,
    0x08,
    0x2d,
  ],
  sevMetadata: [
    0x66,
    0x65,
    0x88,
    0xdc,
    0x4a,
    0x98,
    0x98,
    0x47,
    0xa7,
    0x5e,
    0x55,
    0x85,
    0xa7,
    0xbf,
    0x67,
    0xcc,
  ],
  hashTable: [
    0x1f,
    0x37,
    0x55,
    0x72,
    0x3b,
    0x3a,
    0x04,
    0x4b,
    0x92,
    0x7b,
    0x1d,
    0xa6,
    0xef,
    0xa8,
    0xd4,
    0x54,
  ],
  resetBlock: [
    0xde,
    0x71,
    0xf7,
    0x00,
    0x7e,
    0x1a,
    0xcb,
    0x4f,
    0x89,
    0x0e,
    0x68,
    0xc7,
    0x7e,
    0x2f,
    0xb4,
    0x4e,
  ],
} as const;

/** One SEV metadata section: base, size, type. */
export interface Section {
  gpa: number;
  size: number;
  type: number;
}

/** What goes into a synthetic image. */
export interface SyntheticOvmf {
  /** Number of 4 KiB pages (at least 1). */
  pages: number;
  /** SEV metadata sections; omitted: no SEV metadata entry at all. */
  sections?: Section[];
  /** SEV-ES AP reset address; omitted: no reset block. */
  resetEip?: number;
  /** Kernel hashes area (base, size); omitted: no hash table entry. */
  hashTable?: { gpa: number; size: number };
  /** Seed of the filler bytes, so that images differ. */
  seed?: number;
}

/** Section types of OvmfSevMetadata.asm. */
export const SECTION = { secMem: 1, secrets: 2, cpuid: 3, svsmCaa: 4, kernelHashes: 0x10 } as const;

/** A layout like the AmdSev build's, with every section type that QEMU measures. */
export function amdSevLikeSections(options: { svsmCaa?: boolean } = {}): Section[] {
  return [
    { gpa: 0x800000, size: 0x9000, type: SECTION.secMem },
    { gpa: 0x809000, size: 0x1000, type: SECTION.secrets },
    { gpa: 0x80a000, size: 0x1000, type: SECTION.cpuid },
    ...(options.svsmCaa ? [{ gpa: 0x80b000, size: 0x1000, type: SECTION.svsmCaa }] : []),
    { gpa: 0x80c000, size: 0x2000, type: SECTION.secMem },
    { gpa: 0x80f000, size: 0x1000, type: SECTION.kernelHashes },
    { gpa: 0x810000, size: 0x30000, type: SECTION.secMem },
  ];
}

/** Builds the image. */
export function syntheticOvmf(spec: SyntheticOvmf): Uint8Array<ArrayBuffer> {
  const size = spec.pages * 4096;
  const image = new Uint8Array(size);
  let x = (spec.seed ?? 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    image[i] = x >>> 24;
  }
  const view = new DataView(image.buffer);
  // The footer table, written backwards from 0x20 bytes before the end.
  let end = size - 0x20;
  const entries: { guid: readonly number[]; data: Uint8Array }[] = [];
  if (spec.sections !== undefined) {
    const metaStart = writeMetadata(image, view, spec.sections);
    entries.push({ guid: GUID_BYTES.sevMetadata, data: u32s(size - metaStart) });
  }
  if (spec.hashTable) {
    entries.push({
      guid: GUID_BYTES.hashTable,
      data: u32s(spec.hashTable.gpa, spec.hashTable.size),
    });
  }
  if (spec.resetEip !== undefined) {
    entries.push({ guid: GUID_BYTES.resetBlock, data: u32s(spec.resetEip) });
  }
  let total = 18;
  for (const e of entries) total += e.data.length + 18;
  // Footer: u16 total length, then its GUID.
  image.set(GUID_BYTES.footer, end - 16);
  view.setUint16(end - 18, total, true);
  end -= 18;
  for (const e of entries.reverse()) {
    image.set(e.guid, end - 16);
    view.setUint16(end - 18, e.data.length + 18, true);
    image.set(e.data, end - 18 - e.data.length);
    end -= e.data.length + 18;
  }
  return image;
}

function writeMetadata(image: Uint8Array, view: DataView, sections: Section[]): number {
  // In the last page, well below the footer table.
  const start = image.length - 4096 + 0x100;
  image.set([0x41, 0x53, 0x45, 0x56], start); // "ASEV"
  view.setUint32(start + 4, 16 + 12 * sections.length, true);
  view.setUint32(start + 8, 1, true);
  view.setUint32(start + 12, sections.length, true);
  sections.forEach((s, i) => {
    view.setUint32(start + 16 + 12 * i, s.gpa, true);
    view.setUint32(start + 20 + 12 * i, s.size, true);
    view.setUint32(start + 24 + 12 * i, s.type, true);
  });
  return start;
}

function u32s(...values: number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint32(4 * i, v, true));
  return out;
}
