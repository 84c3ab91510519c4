/**
 * `enarx measure`: prints the measurement a keep launched from this release
 * reports (runtime/measure/keep_measure.ts; spec/measurement.md), or that of
 * any other image given by `--ovmf`, `--kernel`, `--initrd`, `--append`.
 *
 * @module
 */
import { UsageError } from "../../runtime/errors.ts";
import {
  DEFAULT_VCPU_TYPE,
  DEFAULT_VCPUS,
  keepMeasurement,
  type KeepMeasurementOptions,
} from "../../runtime/measure/keep_measure.ts";
import { type Command, parseCommandArgs, printJson, printOut } from "../_command.ts";

const HELP = `Usage: enarx measure --backend sev|kvm|nil [OPTIONS]

Prints the measurement (48 bytes, hex) that a keep launched from this release
reports; spec/measurement.md defines it for each backend.

  sev  the SEV-SNP launch digest of OVMF (AmdSev build) with the keep image's
       kernel, initrd and command line (QEMU kernel-hashes=on)
  kvm  SHA-384 over the keep image's kernel, initrd and command line
  nil  SHA-384 over the files the keep's process executes

Options:
  --backend NAME     sev, kvm or nil (required)
  --vcpus N          vCPUs (sev; default ${DEFAULT_VCPUS})
  --vcpu-type MODEL  QEMU CPU model (sev; default ${DEFAULT_VCPU_TYPE}; also
                     EPYC, EPYC-v1..v4, EPYC-Rome, EPYC-Genoa, ...)
  --ovmf FILE        OVMF (sev; default $ENARX_SEV_OVMF, else
                     ~/.cache/enarx/ovmf-amdsev/OVMF.fd, which
                     tools/build_ovmf.sh builds)
  --kernel FILE      The kernel, instead of the keep image's (sev, kvm);
                     "none" measures OVMF alone (sev)
  --initrd FILE      The initrd, instead of the keep image's (sev, kvm)
  --append TEXT      The kernel command line, instead of the keep image's
  --json             Print {backend, digest, append?, inputs: [{role, path,
                     sha256}], vcpus?, vcpuType?}
  -h, --help         Show this help
`;

const OPTIONS = {
  backend: { type: "string" },
  vcpus: { type: "string" },
  "vcpu-type": { type: "string" },
  ovmf: { type: "string" },
  kernel: { type: "string" },
  initrd: { type: "string" },
  append: { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** Options that only some backends take. */
const ONLY: Record<string, string[]> = {
  vcpus: ["sev"],
  "vcpu-type": ["sev"],
  ovmf: ["sev"],
  kernel: ["sev", "kvm"],
  initrd: ["sev", "kvm"],
  append: ["sev", "kvm"],
};

/** Checks the options against the backend and turns them into measurement options. */
function measureOptions(
  backend: string,
  values: Record<string, string | boolean | undefined>,
): KeepMeasurementOptions {
  if (!["sev", "kvm", "nil"].includes(backend)) {
    throw new UsageError(`Unknown backend "${backend}" for "measure"; use sev, kvm or nil`);
  }
  for (const [name, backends] of Object.entries(ONLY)) {
    if (values[name] !== undefined && !backends.includes(backend)) {
      throw new UsageError(
        `--${name} does not apply to ${backend} keeps; see "enarx measure --help"`,
      );
    }
  }
  const vcpusText = values.vcpus as string | undefined;
  if (vcpusText !== undefined && !/^[1-9][0-9]{0,2}$/.test(vcpusText)) {
    throw new UsageError(`--vcpus takes a number from 1 to 999, not "${vcpusText}"`);
  }
  const kernel = values.kernel as string | undefined;
  if (kernel === "none" && backend !== "sev") {
    throw new UsageError(`--kernel none applies to sev keeps only`);
  }
  return {
    vcpus: vcpusText === undefined ? undefined : Number(vcpusText),
    vcpuType: values["vcpu-type"] as string | undefined,
    ovmf: values.ovmf as string | undefined,
    kernelFile: kernel === "none" ? null : kernel,
    initrd: values.initrd as string | undefined,
    append: values.append as string | undefined,
  };
}

/** The `measure` command. */
export const command: Command = {
  name: "measure",
  summary: "Print the measurement a keep of this release reports",
  async run(args: string[]): Promise<number> {
    const { values } = parseCommandArgs("measure", args, {
      options: OPTIONS,
      allowPositionals: false,
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    if (values.backend === undefined) {
      throw new UsageError(`Missing --backend sev|kvm|nil; see "enarx measure --help"`);
    }
    const result = await keepMeasurement(values.backend, measureOptions(values.backend, values));
    if (values.json) await printJson(result);
    else await printOut(result.digest.toHex() + "\n");
    return 0;
  },
};
