/**
 * The image a keep of this release launches, by backend (`enarx keep
 * image`): for VM keeps (kvm, sev) the kernel, the initrd, the read-only
 * base disk and the kernel command line (which names the disk's dm-verity
 * root hash) that runtime/backends/kvm_image.ts builds reproducibly; for
 * nil keeps the files the keep's process executes
 * (runtime/keep/measurement.ts). The measurement of each is
 * runtime/measure/keep_measure.ts's.
 *
 * The kvm and sev images are the same bytes: neither holds a key (a kvm
 * keep's simulated evidence is signed by keepldr on the host).
 *
 * @module
 */
import { bootstrapCacheDir } from "../dirs.ts";
import { UsageError } from "../errors.ts";
import { type MeasuredInput, measureFile } from "../measure/keep_digest.ts";
import { defaultDigestCacheDir } from "../measure/file_digest_cache.ts";
import { nilKeepInputs } from "../keep/measurement.ts";
import type { KvmKernel } from "./kvm_kernel.ts";

/** The backends whose image enarx builds. */
export const IMAGE_BACKENDS = ["kvm", "sev", "nil"] as const;

/** A backend whose image enarx builds. */
export type ImageBackend = typeof IMAGE_BACKENDS[number];

/** The image of a VM keep. */
export interface VmKeepImage {
  /** `kvm` or `sev`. */
  backend: "kvm" | "sev";
  /** The kernel file. */
  kernel: string;
  /** The initrd file (in the image cache). */
  initrd: string;
  /** The kernel command line, with the base disk's `enarx.verity=<data blocks>:<root hash>`. */
  append: string;
  /** The base disk (in the image cache) and its dm-verity parameters. */
  base: { path: string; dataBlocks: number; rootHash: string };
  /** True when the initrd or the base disk was built now rather than found in the cache. */
  built: boolean;
  /**
   * The kernel, initrd and base disk as files. The measurement covers the
   * kernel, the initrd and the command line; the command line's root hash
   * covers the disk.
   */
  inputs: MeasuredInput[];
}

/** The image of a nil keep: the files its process executes. */
export interface NilKeepImage {
  /** `nil`. */
  backend: "nil";
  /** The files, in measurement order. */
  inputs: MeasuredInput[];
}

/** A keep's image. */
export type KeepImage = VmKeepImage | NilKeepImage;

/** Options of {@link keepImage}. */
export interface KeepImageOptions {
  /** Folder of cached initrds (default {@link defaultImageCacheDir}). */
  cacheDir?: string;
  /** The kernel (default: the keep kernel, runtime/backends/kvm_kernel.ts). */
  kernel?: KvmKernel;
}

/** The image cache: `$ENARX_KVM_CACHE_DIR`, else `kvm-image` in the bootstrap cache. */
export function defaultImageCacheDir(): string {
  const fromEnv = Deno.env.get("ENARX_KVM_CACHE_DIR");
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : `${bootstrapCacheDir()}/kvm-image`;
}

/** Builds (or finds in the cache) the image a keep of `backend` launches. */
export async function keepImage(
  backend: string,
  options: KeepImageOptions = {},
): Promise<KeepImage> {
  if (backend === "nil") return { backend, inputs: await nilKeepInputs() };
  if (backend !== "kvm" && backend !== "sev") {
    throw new UsageError(
      `There is no keep image for backend "${backend}"; use ${IMAGE_BACKENDS.join(", ")}`,
    );
  }
  const { buildKvmImage } = await import("./kvm_image.ts");
  const image = await buildKvmImage({
    cacheDir: options.cacheDir ?? defaultImageCacheDir(),
    kernel: options.kernel,
  });
  return {
    backend,
    kernel: image.kernel,
    initrd: image.initrd,
    append: image.append,
    base: {
      path: image.base.path,
      dataBlocks: image.base.dataBlocks,
      rootHash: image.base.rootHash,
    },
    built: image.built,
    // The base disk is some 150 MB: its digest is cached while the file is unchanged.
    inputs: [
      await measureFile("kernel", image.kernel, { digestCache: defaultDigestCacheDir() }),
      await measureFile("initrd", image.initrd, { digestCache: defaultDigestCacheDir() }),
      await measureFile("base", image.base.path, { digestCache: defaultDigestCacheDir() }),
    ],
  };
}
