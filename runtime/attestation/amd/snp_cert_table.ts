/**
 * The certificate table an extended SNP report request returns
 * (`SNP_GET_EXT_REPORT`'s certs buffer, or configfs-tsm's `auxblob`): a list
 * of 24-byte entries {GUID, offset, length} ended by an all-zero entry, then
 * the DER certificates. AMD SEV-ES GHCB Standardization #56421 rev 2.03,
 * §4.1.8.1 (MSG_REPORT_REQ). GUIDs are stored in RFC 4122 byte order (the
 * bytes in the order of the printed string), as go-sev-guest and virtee/sev
 * read them.
 *
 * @module
 */
import { defineLayout, FieldReader, isAllZero } from "../_bytes.ts";
import { MalformedEvidenceError } from "../result.ts";

/** One entry of the table: #56421 "Certificate table entry". */
export const CERT_TABLE_ENTRY_LAYOUT = defineLayout("CERT_TABLE_ENTRY", {
  size: 24,
  fields: [
    { name: "guid", offset: 0, size: 16 },
    { name: "offset", offset: 16, size: 4 }, // from the start of the table
    { name: "length", offset: 20, size: 4 },
  ],
});

/** The GUIDs AMD defines (and two that implementations use). */
export const SNP_CERT_GUIDS = {
  ark: "c0b406a4-a803-4952-9743-3fb6014cd0ae",
  ask: "4ab7b379-bbac-4fe4-a02f-05aef327c782", // also the ASVK
  vcek: "63da758d-e664-4564-adc5-f4b93be8accd",
  vlek: "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
  crl: "92f81bc3-5811-4d3d-97ff-d19f88dc67ea", // virtee/sev
  extraPlatformInfo: "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6", // go-sev-guest
} as const;

/** What a table entry holds. */
export type SnpCertKind = keyof typeof SNP_CERT_GUIDS | "unknown";

/** One certificate (or other blob) from the table. */
export interface SnpCertTableEntry {
  /** The GUID as a lower-case string with dashes. */
  guid: string;
  /** What the GUID names. */
  kind: SnpCertKind;
  /** The payload bytes (DER for certificates). */
  data: Uint8Array;
}

/** Formats 16 bytes as a GUID string (RFC 4122 byte order). */
export function guidToString(bytes: Uint8Array): string {
  const h = bytes.toHex();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Parses a GUID string into its 16 bytes (RFC 4122 byte order). */
export function guidFromString(guid: string): Uint8Array {
  const h = guid.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(h)) throw new RangeError(`Not a GUID: "${guid}"`);
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16));
}

function kindOf(guid: string): SnpCertKind {
  for (const [kind, g] of Object.entries(SNP_CERT_GUIDS)) {
    if (g === guid) return kind as SnpCertKind;
  }
  return "unknown";
}

/** True when the bytes start like a certificate table (a known GUID in the first entry). */
export function looksLikeSnpCertTable(bytes: Uint8Array): boolean {
  if (bytes.length < 48) return false;
  return kindOf(guidToString(bytes.subarray(0, 16))) !== "unknown";
}

/**
 * Parses a certificate table. Throws MalformedEvidenceError when an entry
 * points outside the buffer or into the entries, or when the terminator is
 * missing. Trailing bytes after the payloads (the buffer is page-sized) are
 * ignored.
 */
export function parseSnpCertTable(bytes: Uint8Array): SnpCertTableEntry[] {
  const entries: SnpCertTableEntry[] = [];
  const raw: { guid: string; offset: number; length: number }[] = [];
  let pos = 0;
  for (;;) {
    if (pos + 24 > bytes.length) {
      throw new MalformedEvidenceError(
        "The SEV-SNP certificate table has no terminating all-zero entry; pass the whole certs buffer",
      );
    }
    const e = new FieldReader(bytes, CERT_TABLE_ENTRY_LAYOUT, { offset: pos });
    pos += 24;
    if (isAllZero(e.bytes)) break;
    raw.push({
      guid: guidToString(e.view("guid")),
      offset: e.uint("offset"),
      length: e.uint("length"),
    });
  }
  for (const r of raw) {
    if (r.offset < pos || r.offset + r.length > bytes.length) {
      throw new MalformedEvidenceError(
        `The SEV-SNP certificate table entry "${r.guid}" points outside the table ` +
          `(offset ${r.offset}, length ${r.length}, table ${bytes.length} bytes)`,
      );
    }
    entries.push({
      guid: r.guid,
      kind: kindOf(r.guid),
      data: bytes.slice(r.offset, r.offset + r.length),
    });
  }
  return entries;
}

/**
 * Builds a certificate table (entries, terminator, payloads), as a host
 * provides it; padded to a multiple of 4096 bytes like the kernel's buffer.
 */
export function encodeSnpCertTable(
  entries: readonly { guid: string; data: Uint8Array }[],
): Uint8Array {
  const header = 24 * (entries.length + 1);
  const total = header + entries.reduce((n, e) => n + e.data.length, 0);
  const out = new Uint8Array(Math.ceil(total / 4096) * 4096);
  const view = new DataView(out.buffer);
  let offset = header;
  entries.forEach((e, i) => {
    out.set(guidFromString(e.guid), 24 * i);
    view.setUint32(24 * i + 16, offset, true);
    view.setUint32(24 * i + 20, e.data.length, true);
    out.set(e.data, offset);
    offset += e.data.length;
  });
  return out;
}
