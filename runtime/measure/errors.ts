/**
 * Errors of the launch-measurement library. Each has a stable `code`; the
 * CLI maps it to an exit status through {@link EnarxError.exitStatus}.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

/** A firmware image that is not an OVMF image of the shape we measure (code `ovmf-invalid`). */
export class OvmfFormatError extends EnarxError {
  /** Makes an error about a malformed or unsuitable OVMF image. */
  constructor(message: string, code = "ovmf-invalid") {
    super(code, message, { exit: "dataError" });
    this.name = "OvmfFormatError";
  }
}

/** A vCPU type the measurement does not know (code `vcpu-type-unknown`). */
export class VcpuTypeError extends EnarxError {
  /** Makes an error naming the unknown type and the known ones. */
  constructor(type: string, known: readonly string[]) {
    super(
      "vcpu-type-unknown",
      `Unknown vCPU type "${type}"; use one of ${known.join(", ")}`,
      { exit: "usage" },
    );
    this.name = "VcpuTypeError";
  }
}

/** Measurement options that cannot describe a launch (code `measure-input-invalid`). */
export class MeasureInputError extends EnarxError {
  /** Makes an error about an option of the measurement. */
  constructor(message: string) {
    super("measure-input-invalid", message, { exit: "usage" });
    this.name = "MeasureInputError";
  }
}
