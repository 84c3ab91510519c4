/**
 * The table of kernel, initrd and command-line hashes that QEMU lays out for
 * `-object sev-snp-guest,kernel-hashes=on` (QEMU target/i386/sev.c,
 * `SevHashTable`, `SevHashTableEntry`, `PaddedSevHashTable`), and the page
 * that holds it. OVMF's AmdSev build checks each blob it loads through
 * fw_cfg against this table (edk2 OvmfPkg BlobVerifierLibSevHashes), so the
 * launch digest covers the kernel, initrd and command line.
 *
 * The table is packed: a header entry (GUID, u16 length of the whole table)
 * followed by three entries (GUID, u16 length 50, SHA-256) for the command
 * line, the initrd and the kernel, in that order; QEMU pads it with zeros to
 * a multiple of 16 bytes. For SEV-SNP, QEMU zeroes the page of the OVMF
 * metadata section SNP_KERNEL_HASHES and copies the padded table into it at
 * the offset within its page of the area that the OVMF footer entry
 * 7255371f-3a3b-4b04-927b-1da6efa8d454 names.
 *
 * What is hashed: the kernel file as given to `-kernel`; the initrd file, or
 * nothing when there is none; the command line's UTF-8 bytes followed by one
 * NUL (QEMU passes the NUL-terminated string, so no `-append` hashes "\0").
 *
 * @module
 */
import { createHash } from "node:crypto";
import { defineStruct, StructBuffer } from "../../ffi/struct_layout.ts";
import { guidBytes } from "./_guid.ts";
import { PAGE_SIZE } from "./snp_page_info.ts";

/** GUIDs of the table and its entries (QEMU sev.c; edk2 BlobVerifierLibSevHashes). */
export const SevHashGuid = {
  /** The whole table. */
  table: "9438d606-4f22-4cc9-b479-a793d411fd21",
  /** The kernel entry. */
  kernel: "4de79437-abd2-427f-b835-d5b172d2045b",
  /** The initrd entry. */
  initrd: "44baf731-3a2f-4bd7-9af1-41e29169781d",
  /** The command-line entry. */
  cmdline: "97d02dd8-bd20-4c94-aa78-e7714d36ab2a",
} as const;

/** `SevHashTableEntry`: GUID, u16 length, SHA-256. */
export const SEV_HASH_TABLE_ENTRY = defineStruct("SevHashTableEntry", {
  size: 50,
  fields: { guid: [0, 16], len: [16, 2], hash: [18, 32] },
  source: { header: null, local: "no", source: "QEMU target/i386/sev.c" },
});

/** `SevHashTable`: header GUID and length, then the cmdline, initrd and kernel entries. */
export const SEV_HASH_TABLE = defineStruct("SevHashTable", {
  size: 168,
  fields: { guid: [0, 16], len: [16, 2], cmdline: [18, 50], initrd: [68, 50], kernel: [118, 50] },
  source: { header: null, local: "no", source: "QEMU target/i386/sev.c" },
});

/** `PaddedSevHashTable`: the table rounded up to 16 bytes. */
export const PADDED_SEV_HASH_TABLE_SIZE = Math.ceil(SEV_HASH_TABLE.size / 16) * 16;

/** The blobs of a direct kernel boot. */
export interface KernelBlobs {
  /** The kernel image given to `-kernel`. */
  kernel: Uint8Array;
  /** The initrd given to `-initrd`, if any. */
  initrd?: Uint8Array;
  /** The command line given to `-append`, if any. */
  append?: string;
}

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/** The bytes QEMU hashes for the command line: UTF-8 and a terminating NUL. */
export function cmdlineBytes(append: string | undefined): Uint8Array {
  const text = new TextEncoder().encode(append ?? "");
  const out = new Uint8Array(text.length + 1);
  out.set(text);
  return out;
}

/** The padded hashes table (176 bytes) for `blobs`. */
export function sevHashTable(blobs: KernelBlobs): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(PADDED_SEV_HASH_TABLE_SIZE);
  const table = new StructBuffer(SEV_HASH_TABLE, bytes);
  table.setBytes("guid", guidBytes(SevHashGuid.table));
  table.set("len", SEV_HASH_TABLE.size);
  table.setBytes("cmdline", hashEntry(SevHashGuid.cmdline, sha256(cmdlineBytes(blobs.append))));
  table.setBytes("initrd", hashEntry(SevHashGuid.initrd, sha256(blobs.initrd ?? new Uint8Array())));
  table.setBytes("kernel", hashEntry(SevHashGuid.kernel, sha256(blobs.kernel)));
  return bytes;
}

/** The 4 KiB page QEMU measures: zeros with `table` at `offsetInPage`. */
export function sevHashesPage(table: Uint8Array, offsetInPage: number): Uint8Array<ArrayBuffer> {
  if (offsetInPage < 0 || offsetInPage + table.length > PAGE_SIZE) {
    throw new RangeError(
      `A ${table.length}-byte hashes table does not fit its page at offset ${offsetInPage}`,
    );
  }
  const page = new Uint8Array(PAGE_SIZE);
  page.set(table, offsetInPage);
  return page;
}

function hashEntry(guid: string, hash: Uint8Array): Uint8Array {
  const entry = new StructBuffer(SEV_HASH_TABLE_ENTRY);
  entry.setBytes("guid", guidBytes(guid));
  entry.set("len", SEV_HASH_TABLE_ENTRY.size);
  entry.setBytes("hash", hash);
  return entry.bytes;
}
