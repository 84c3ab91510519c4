/**
 * The vocabulary of platform checks: one check's result ({@link PlatformCheck}),
 * its remedy, and {@link CheckList}, which builds a backend's checks in
 * order, skipping a check whose prerequisite did not pass. Free of FFI so
 * that backend modules can use it without loading kernel bindings.
 *
 * @module
 */

/** What to do about a failed check. */
export interface Remedy {
  /** Shell commands to run, in order; empty when no command can fix it (e.g. firmware setup). */
  commands: string[];
  /** What else to know or do (reboot, firmware settings, persistence); null when nothing. */
  note: string | null;
}

/** One check and its result. */
export interface PlatformCheck {
  /** Stable identifier, e.g. `sev.kvm-amd.sev-snp`. */
  id: string;
  /** What is checked, for a person. */
  title: string;
  /** `pass`, `fail`, or `skip` (not evaluated because a check it needs did not pass). */
  status: "pass" | "fail" | "skip";
  /** Whether the backend is unusable unless this check passes. */
  required: boolean;
  /** What was found, one line. */
  detail: string;
  /** The errno name when a system call failed, else null. */
  errno: string | null;
  /** For a failed check: what to do; else null. */
  remedy: Remedy | null;
}

/** One check as a backend describes it, before {@link CheckList.add} judges it. */
export interface CheckInput {
  title: string;
  pass: boolean;
  detail: string;
  errno?: string | null;
  remedy?: Remedy | null;
  required?: boolean;
  needs?: string[];
}

/** A backend's checks, in order. */
export class CheckList {
  /** The checks so far, in order. */
  readonly checks: PlatformCheck[] = [];

  /** Adds a check; it is skipped when a check it `needs` did not pass. */
  add(id: string, input: CheckInput): this {
    const blocked = (input.needs ?? []).map((need) => this.checks.find((c) => c.id === need))
      .find((c) => c !== undefined && c.status !== "pass");
    const required = input.required ?? true;
    if (blocked !== undefined) {
      this.checks.push({
        id,
        title: input.title,
        status: "skip",
        required,
        detail: `Not checked (needs: ${blocked.title})`,
        errno: null,
        remedy: null,
      });
    } else {
      this.checks.push({
        id,
        title: input.title,
        status: input.pass ? "pass" : "fail",
        required,
        detail: input.detail,
        errno: input.pass ? null : input.errno ?? null,
        remedy: input.pass ? null : input.remedy ?? null,
      });
    }
    return this;
  }

  /** Every required check passed. */
  get usable(): boolean {
    return this.checks.every((c) => !c.required || c.status === "pass");
  }
}

/** A remedy: commands to run, then a note. */
export function remedy(commands: string[], note: string | null = null): Remedy {
  return { commands, note };
}
