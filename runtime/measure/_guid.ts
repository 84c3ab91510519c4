/**
 * GUIDs as EFI and QEMU lay them out in memory: the first three fields
 * little-endian, the last two as written (UEFI spec 2.10, Appendix A, "EFI
 * GUID Format"; QEMU's UUID_LE).
 *
 * @module
 */

/** The 16 bytes of `guid` ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx") in EFI byte order. */
export function guidBytes(guid: string): Uint8Array<ArrayBuffer> {
  const hex = guid.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`Not a GUID: "${guid}"`);
  const raw = Uint8Array.fromHex(hex);
  const out = new Uint8Array(16);
  out.set(raw.subarray(0, 4).reverse(), 0);
  out.set(raw.subarray(4, 6).reverse(), 4);
  out.set(raw.subarray(6, 8).reverse(), 6);
  out.set(raw.subarray(8), 8);
  return out;
}
