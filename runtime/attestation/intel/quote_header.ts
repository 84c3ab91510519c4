/**
 * The header of an Intel DCAP quote and how its fields are read: all that
 * telling a quote from other evidence needs (evidence_format.ts), apart
 * from intel_quote.ts's parser and verification, which load Intel's roots,
 * CRL and collateral code.
 *
 * Layout: Intel SGX DCAP ECDSA Quote Library API, Appendix A ("Quote
 * Header"); Intel TDX DCAP Quote Generation Library and Quote Verification
 * Library rev 0.9, Appendix 4/5. Every integer is little-endian.
 *
 * @module
 */

/** A field of a binary structure: its offset and size in bytes. */
export interface Field {
  /** Offset from the start of the structure. */
  readonly offset: number;
  /** Size in bytes. */
  readonly size: number;
}

/** Quote header, 48 bytes, every version (DCAP Quote Library API, Appendix A, "Quote Header"). */
export const QUOTE_HEADER = {
  version: { offset: 0, size: 2 },
  attestationKeyType: { offset: 2, size: 2 },
  /** v4/v5: TEE type; v3: reserved. */
  teeType: { offset: 4, size: 4 },
  /** v3 only. */
  qeSvn: { offset: 8, size: 2 },
  /** v3 only. */
  pceSvn: { offset: 10, size: 2 },
  qeVendorId: { offset: 12, size: 16 },
  userData: { offset: 28, size: 20 },
} as const satisfies Record<string, Field>;

/** Size of the quote header. */
export const QUOTE_HEADER_SIZE = 48;

/** Attestation key type 2: ECDSA-256-with-P-256 curve. */
export const ATTESTATION_KEY_ECDSA_P256 = 2;
/** TEE type of an SGX quote (v4 and v5 headers). */
export const TEE_TYPE_SGX = 0x00;
/** TEE type of a TDX quote (v4 and v5 headers). */
export const TEE_TYPE_TDX = 0x81;

/** Reads a field's bytes (a view). */
export function fieldBytes(bytes: Uint8Array, field: Field): Uint8Array {
  return bytes.subarray(field.offset, field.offset + field.size);
}

/** Reads a little-endian unsigned field of 1, 2, 4 or 8 bytes (8 bytes as a bigint). */
export function fieldUint(bytes: Uint8Array, field: Field): number | bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset + field.offset, field.size);
  switch (field.size) {
    case 1:
      return view.getUint8(0);
    case 2:
      return view.getUint16(0, true);
    case 4:
      return view.getUint32(0, true);
    case 8:
      return view.getBigUint64(0, true);
  }
  throw new RangeError(`Field of ${field.size} bytes is not an integer`);
}

/** Reads a little-endian unsigned field of at most 4 bytes. */
export function fieldNumber(bytes: Uint8Array, field: Field): number {
  return Number(fieldUint(bytes, field));
}
