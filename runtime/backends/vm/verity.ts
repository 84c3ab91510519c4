/**
 * The dm-verity hash tree of a VM keep's read-only base disk
 * (base_disk.ts), computed on the host and appended to the disk image, and
 * the device-mapper table with which the guest's init opens it.
 *
 * The format is the kernel's dm-verity version 1 (the Linux kernel's
 * Documentation/admin-guide/device-mapper/verity.rst and
 * drivers/md/dm-verity-target.c): SHA-256, 4096-byte data and hash
 * blocks, no salt. Level 0 holds the digest of every data block, level
 * i + 1 the digest of every hash block of level i, 128 digests to a block
 * (zero-padded); the top level is one block, and the root hash is that
 * block's digest. The levels follow the data on the same device, the top
 * level first (hash_level_block in the kernel's target), so the hash tree
 * starts at block number `dataBlocks`. No veritysetup superblock is
 * written: the table names every parameter.
 *
 * Since the root hash travels in the keep's measured kernel command line,
 * a host that hands the guest another disk, or changes one byte of this
 * one, makes the guest's reads of that block fail.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** The data and hash block size. */
export const VERITY_BLOCK = 4096;

/** The SHA-256 digests in one hash block. */
const DIGESTS_PER_BLOCK = VERITY_BLOCK / 32;

/** What the guest needs to open a verity device: the data size and the root hash. */
export interface VerityParams {
  /** Data blocks (4096 bytes each); the hash tree starts at this block. */
  dataBlocks: number;
  /** The root hash (hex, 64 digits). */
  rootHash: string;
}

function sha256(block: Uint8Array): Uint8Array {
  return createHash("sha256").update(block).digest();
}

/** The hash blocks of one level over `digests` (32 bytes each), zero-padded. */
function packLevel(digests: Uint8Array): Uint8Array {
  const count = digests.length / 32;
  const blocks = Math.ceil(count / DIGESTS_PER_BLOCK);
  const level = new Uint8Array(blocks * VERITY_BLOCK);
  level.set(digests);
  return level;
}

/** The digest of each 4096-byte block of `level`. */
function digestBlocks(level: Uint8Array): Uint8Array {
  const count = level.length / VERITY_BLOCK;
  const out = new Uint8Array(count * 32);
  for (let i = 0; i < count; i++) {
    out.set(sha256(level.subarray(i * VERITY_BLOCK, (i + 1) * VERITY_BLOCK)), i * 32);
  }
  return out;
}

/** The digests of every data block of `file` (read 1 MiB at a time). */
async function dataDigests(file: Deno.FsFile, dataBlocks: number): Promise<Uint8Array> {
  const digests = new Uint8Array(dataBlocks * 32);
  const chunk = new Uint8Array(256 * VERITY_BLOCK);
  let block = 0;
  while (block < dataBlocks) {
    let filled = 0;
    const want = Math.min(chunk.length, (dataBlocks - block) * VERITY_BLOCK);
    while (filled < want) {
      const n = await file.read(chunk.subarray(filled, want));
      if (n === null) throw new Error("the disk image ended early");
      filled += n;
    }
    digests.set(digestBlocks(chunk.subarray(0, want)), block * 32);
    block += want / VERITY_BLOCK;
  }
  return digests;
}

/**
 * Appends the dm-verity hash tree of `path` (whose size must be a multiple
 * of 4096 bytes) to that file and returns the table's parameters.
 */
export async function appendVerityTree(path: string): Promise<VerityParams> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const size = (await file.stat()).size;
    if (size === 0 || size % VERITY_BLOCK !== 0) {
      throw new RangeError(`"${path}" is ${size} bytes, not a whole number of 4096-byte blocks`);
    }
    const dataBlocks = size / VERITY_BLOCK;
    const levels: Uint8Array[] = [];
    let digests = await dataDigests(file, dataBlocks);
    while (digests.length > 32) {
      const level = packLevel(digests);
      levels.push(level);
      digests = digestBlocks(level);
    }
    await file.seek(size, Deno.SeekMode.Start);
    for (const level of levels.reverse()) {
      let written = 0;
      while (written < level.length) written += await file.write(level.subarray(written));
    }
    return { dataBlocks, rootHash: digests.toHex() };
  } finally {
    file.close();
  }
}
