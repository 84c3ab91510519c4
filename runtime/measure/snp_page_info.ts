/**
 * The SEV-SNP launch digest as the AMD secure processor accumulates it.
 *
 * AMD SEV Secure Nested Paging Firmware ABI Specification (publication
 * #56860), section "SNP_LAUNCH_UPDATE" and its subsection "PAGE_INFO
 * Structure": for every page the hypervisor adds to a guest before launch, the
 * firmware builds a PAGE_INFO structure and sets
 *
 *   LD := SHA-384(PAGE_INFO)   with PAGE_INFO.DIGEST_CUR = the previous LD
 *
 * starting from 48 zero bytes. PAGE_INFO.CONTENTS is SHA-384 of the page for
 * NORMAL and VMSA pages and 48 zero bytes for ZERO, UNMEASURED, SECRETS and
 * CPUID pages (the firmware measures only their type and address). A VMSA
 * page is measured at GPA 0xFFFFFFFFF000, whatever its real address (the
 * spec's "VMSA pages are measured at GPA 0FFFF_FFFF_F000h": RMP entries of
 * VMSA pages hold (u64)-1, page-aligned, with bits 63:52 clear).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { defineStruct, StructBuffer } from "../../ffi/struct_layout.ts";

/** Page types of SNP_LAUNCH_UPDATE (ABI #56860, "SNP_LAUNCH_UPDATE", PAGE_TYPE field). */
export const SnpPageType = {
  /** A page of data, measured by its SHA-384. */
  normal: 0x1,
  /** A vCPU's save area, measured by its SHA-384 at {@link VMSA_GPA}. */
  vmsa: 0x2,
  /** A page the firmware fills with zeros. */
  zero: 0x3,
  /** A page that is encrypted but whose contents are not measured. */
  unmeasured: 0x4,
  /** The page where the firmware places the guest's secrets (VMPCKs). */
  secrets: 0x5,
  /** The page of CPUID values that the firmware checks. */
  cpuid: 0x6,
} as const;

/** The name of a page type, e.g. `"normal"`. */
export type SnpPageTypeName = keyof typeof SnpPageType;

/** The GPA at which every VMSA page is measured (ABI #56860, "SNP_LAUNCH_UPDATE"). */
export const VMSA_GPA = 0xFFFFFFFFF000;

/** Size of a guest page. */
export const PAGE_SIZE = 4096;

/** Size of a SHA-384 digest, the launch digest and PAGE_INFO.CONTENTS. */
export const DIGEST_SIZE = 48;

/**
 * PAGE_INFO (ABI #56860, "PAGE_INFO Structure", table "Layout of the
 * PAGE_INFO Structure"): 0x70 bytes, all integers little-endian.
 */
export const PAGE_INFO = defineStruct("PAGE_INFO", {
  size: 0x70,
  fields: {
    DIGEST_CUR: [0x00, 48],
    CONTENTS: [0x30, 48],
    LENGTH: [0x60, 2],
    PAGE_TYPE: [0x62, 1],
    IMI_PAGE: [0x63, 1],
    VMPL3_PERMS: [0x64, 1],
    VMPL2_PERMS: [0x65, 1],
    VMPL1_PERMS: [0x66, 1],
    GPA: [0x68, 8],
  },
  source: { header: null, local: "no", source: "AMD SEV-SNP Firmware ABI #56860, PAGE_INFO" },
});

/** One page added to the launch digest, for an auditor re-deriving it. */
export interface SnpLaunchStep {
  /** The page type. */
  pageType: SnpPageTypeName;
  /** The guest physical address measured (VMSA pages: {@link VMSA_GPA}). */
  gpa: number;
  /** PAGE_INFO.CONTENTS: SHA-384 of the page, or zeros. */
  contents: Uint8Array;
  /** The launch digest after this page. */
  digest: Uint8Array;
}

/** SHA-384 of `data`. */
export function sha384(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createHash("sha384").update(data).digest());
}

/** The PAGE_INFO bytes for one page, given the digest so far. */
export function pageInfoBytes(
  digestCur: Uint8Array,
  { pageType, gpa, contents }: Omit<SnpLaunchStep, "digest">,
): Uint8Array<ArrayBuffer> {
  const info = new StructBuffer(PAGE_INFO);
  info.setBytes("DIGEST_CUR", digestCur);
  info.setBytes("CONTENTS", contents);
  info.set("LENGTH", PAGE_INFO.size);
  info.set("PAGE_TYPE", SnpPageType[pageType]);
  // IMI_PAGE and the VMPL1-3 permissions are 0: QEMU launches no migration
  // image and grants lower VMPLs nothing.
  info.set("GPA", BigInt(gpa));
  return info.bytes;
}

/**
 * The launch digest being accumulated, one SNP_LAUNCH_UPDATE page at a time
 * (the firmware's guest context, GCTX.LD).
 */
export class SnpLaunchDigest {
  #digest: Uint8Array = new Uint8Array(DIGEST_SIZE);
  readonly #steps: SnpLaunchStep[] | undefined;

  /** Starts from 48 zero bytes; with `recordSteps`, keeps every step for {@link steps}. */
  constructor(options: { recordSteps?: boolean } = {}) {
    this.#steps = options.recordSteps ? [] : undefined;
  }

  /** The launch digest so far (a copy). */
  get digest(): Uint8Array {
    return this.#digest.slice();
  }

  /** Every page measured so far, if steps are recorded. */
  get steps(): readonly SnpLaunchStep[] | undefined {
    return this.#steps;
  }

  /** Measures one page of `pageType` at `gpa` whose PAGE_INFO.CONTENTS is `contents`. */
  update(pageType: SnpPageTypeName, gpa: number, contents: Uint8Array): void {
    if (gpa % PAGE_SIZE !== 0) {
      throw new RangeError(`GPA 0x${gpa.toString(16)} is not page-aligned`);
    }
    this.#digest = sha384(pageInfoBytes(this.#digest, { pageType, gpa, contents }));
    this.#steps?.push({ pageType, gpa, contents, digest: this.#digest });
  }

  /** Measures `data` (a whole number of pages) as NORMAL pages from `gpa` up. */
  updateNormalPages(gpa: number, data: Uint8Array): void {
    requirePages(data.length);
    for (let offset = 0; offset < data.length; offset += PAGE_SIZE) {
      this.update("normal", gpa + offset, sha384(data.subarray(offset, offset + PAGE_SIZE)));
    }
  }

  /** Measures `length` bytes from `gpa` as pages of a contents-less type (ZERO, SECRETS, CPUID, UNMEASURED). */
  updateEmptyPages(
    pageType: "zero" | "unmeasured" | "secrets" | "cpuid",
    gpa: number,
    length: number,
  ): void {
    requirePages(length);
    const zeros = new Uint8Array(DIGEST_SIZE);
    for (let offset = 0; offset < length; offset += PAGE_SIZE) {
      this.update(pageType, gpa + offset, zeros);
    }
  }

  /** Measures one vCPU's VMSA page. */
  updateVmsaPage(page: Uint8Array): void {
    if (page.length !== PAGE_SIZE) {
      throw new RangeError(`A VMSA page is ${PAGE_SIZE} bytes, not ${page.length}`);
    }
    this.update("vmsa", VMSA_GPA, sha384(page));
  }
}

function requirePages(length: number): void {
  if (length % PAGE_SIZE !== 0) {
    throw new RangeError(`${length} bytes are not a whole number of ${PAGE_SIZE}-byte pages`);
  }
}
