/**
 * The measurement a keep launched from this release reports, by backend
 * (`enarx measure`, and each backend's `measurement()` in the registry):
 *
 * - `sev`: the SEV-SNP launch digest ({@link snpLaunchDigest}) of the AmdSev
 *   OVMF with the keep image's kernel, initrd and command line
 *   (`kernel-hashes=on`), one VMSA per vCPU;
 * - `kvm`: {@link keepDigest} over the keep image's kernel, initrd and
 *   command line;
 * - `nil`: {@link keepDigest} over the files the nil keep executes.
 *
 * spec/measurement.md defines each and the `--json` form.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { amdSevOvmfPath } from "../dirs.ts";
import { keepDigest, type MeasuredInput, sha256 } from "./keep_digest.ts";
import { snpLaunchDigest } from "./snp_launch_digest.ts";
import { keepImage, type KeepImageOptions } from "../backends/keep_image.ts";
import { MeasureInputError } from "./errors.ts";

/** The default vCPU count of a sev measurement. */
export const DEFAULT_VCPUS = 1;

/** The default QEMU CPU model of a sev measurement. */
export const DEFAULT_VCPU_TYPE = "EPYC-Milan";

/** A keep's measurement and what it was computed from. */
export interface KeepMeasurement {
  /** `sev`, `kvm` or `nil`. */
  backend: string;
  /** The 48-byte measurement. */
  digest: Uint8Array;
  /** Every input, with its role, path and SHA-256. */
  inputs: MeasuredInput[];
  /** The kernel command line measured (VM keeps with a kernel). */
  append?: string;
  /** The vCPU count (sev). */
  vcpus?: number;
  /** The QEMU CPU model (sev). */
  vcpuType?: string;
}

/** Options of {@link keepMeasurement}; files override the keep image's. */
export interface KeepMeasurementOptions extends KeepImageOptions {
  /** OVMF (sev; default {@link defaultOvmfPath}). */
  ovmf?: string;
  /** The kernel file, or null for none (sev only: OVMF alone). */
  kernelFile?: string | null;
  /** The initrd file. */
  initrd?: string;
  /** The kernel command line. */
  append?: string;
  /** vCPUs (sev; default {@link DEFAULT_VCPUS}). */
  vcpus?: number;
  /** QEMU CPU model (sev; default {@link DEFAULT_VCPU_TYPE}). */
  vcpuType?: string;
}

/** The AmdSev OVMF a sev keep boots: `$ENARX_SEV_OVMF`, else the one tools/build_ovmf.sh built. */
export function defaultOvmfPath(): string {
  return amdSevOvmfPath();
}

/** Throws EnarxError (exit 66) naming an input file that is not there. */
async function checkInput(role: string, path: string): Promise<void> {
  try {
    await Deno.stat(path);
  } catch (cause) {
    throw new EnarxError("measure-input-missing", `Cannot read the ${role} "${path}": ${cause}`, {
      exit: "noInput",
      cause,
    });
  }
}

/** Reads an input file, or throws EnarxError (exit 66) naming it. */
async function readInput(role: string, path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (cause) {
    throw new EnarxError("measure-input-missing", `Cannot read the ${role} "${path}": ${cause}`, {
      exit: "noInput",
      cause,
    });
  }
}

/** Reads an input file and returns it as a measured input. */
async function fileInput(role: string, path: string): Promise<MeasuredInput> {
  return { role, path, sha256: await sha256(await readInput(role, path)) };
}

/** The kernel, initrd and command line: given ones, else the keep image's. */
async function bootFiles(backend: "kvm" | "sev", options: KeepMeasurementOptions) {
  const needImage = options.kernelFile === undefined ||
    (options.kernelFile !== null && (options.initrd === undefined || options.append === undefined));
  for (const [role, path] of [["kernel", options.kernelFile], ["initrd", options.initrd]]) {
    if (typeof path === "string") await checkInput(role!, path);
  }
  const image = needImage ? await keepImage(backend, options) : undefined;
  const kernel = options.kernelFile === null
    ? undefined
    : options.kernelFile ?? (image?.backend !== "nil" ? image?.kernel : undefined);
  if (kernel === undefined) {
    if (options.initrd !== undefined || options.append !== undefined) {
      throw new MeasureInputError("An initrd or a command line needs a kernel; drop --kernel none");
    }
    return { kernel, initrd: undefined, append: undefined };
  }
  const initrd = options.initrd ?? (image?.backend !== "nil" ? image?.initrd : undefined);
  const append = options.append ?? (image?.backend !== "nil" ? image?.append : undefined);
  return { kernel, initrd, append };
}

/** Computes the measurement a keep of `backend` reports; see the module doc. */
export async function keepMeasurement(
  backend: string,
  options: KeepMeasurementOptions = {},
): Promise<KeepMeasurement> {
  if (backend === "nil") {
    const { wasmldrMeasurement, nilKeepInputs } = await import("../keep/measurement.ts");
    // The registry's value (what nil keeps report), so the two never differ.
    return { backend, digest: await wasmldrMeasurement(), inputs: await nilKeepInputs() };
  }
  if (backend === "kvm") {
    const boot = await bootFiles("kvm", options);
    if (boot.kernel === undefined) throw new MeasureInputError("A kvm keep needs a kernel");
    const inputs = [await fileInput("kernel", boot.kernel)];
    if (boot.initrd !== undefined) inputs.push(await fileInput("initrd", boot.initrd));
    const append = boot.append ?? "";
    inputs.push({ role: "cmdline", sha256: await sha256(new TextEncoder().encode(append)) });
    return { backend, digest: await keepDigest("kvm", inputs), inputs, append };
  }
  if (backend === "sev") return await sevMeasurement(options);
  throw new MeasureInputError(`enarx measures sev, kvm and nil keeps, not "${backend}"`);
}

/** The sev measurement: the SEV-SNP launch digest of OVMF and the keep image. */
async function sevMeasurement(options: KeepMeasurementOptions): Promise<KeepMeasurement> {
  const ovmfPath = options.ovmf ?? defaultOvmfPath();
  if (options.ovmf === undefined) {
    try {
      await Deno.stat(ovmfPath);
    } catch {
      throw new EnarxError(
        "ovmf-missing",
        `No AmdSev OVMF at "${ovmfPath}"; pass --ovmf FILE or build it with tools/build_ovmf.sh`,
        { exit: "noInput" },
      );
    }
  }
  const ovmf = await readInput("OVMF", ovmfPath);
  const inputs: MeasuredInput[] = [{ role: "ovmf", path: ovmfPath, sha256: await sha256(ovmf) }];
  const boot = await bootFiles("sev", options);
  const kernel = boot.kernel === undefined ? undefined : await readInput("kernel", boot.kernel);
  const initrd = boot.initrd === undefined ? undefined : await readInput("initrd", boot.initrd);
  if (kernel !== undefined) {
    inputs.push({ role: "kernel", path: boot.kernel, sha256: await sha256(kernel) });
  }
  if (initrd !== undefined) {
    inputs.push({ role: "initrd", path: boot.initrd, sha256: await sha256(initrd) });
  }
  if (boot.append !== undefined) {
    inputs.push({ role: "cmdline", sha256: await sha256(new TextEncoder().encode(boot.append)) });
  }
  const vcpus = options.vcpus ?? DEFAULT_VCPUS;
  const vcpuType = options.vcpuType ?? DEFAULT_VCPU_TYPE;
  const { digest } = snpLaunchDigest({
    ovmf,
    kernel,
    initrd,
    append: boot.append,
    vcpus,
    vcpuType,
  });
  return { backend: "sev", digest, inputs, append: boot.append, vcpus, vcpuType };
}
