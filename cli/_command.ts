/**
 * What every subcommand module exports, and the small helpers they share for
 * parsing arguments and printing.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../runtime/errors.ts";

/** A subcommand: `run(args)` gets the arguments after its name and returns the exit status. */
export interface Command {
  /** The name typed after `enarx`, e.g. `run` or `platform info`. */
  name: string;
  /** One line for `enarx --help`. */
  summary: string;
  /** Runs the subcommand; throws EnarxError for failures the CLI reports. */
  run(args: string[]): Promise<number>;
}

/** Options accepted by {@link parseCommandArgs}. */
export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parses `args` with node:util's parseArgs, turning its errors into
 * UsageError with the command's name, so that the CLI prints one line.
 */
export function parseCommandArgs<O extends OptionSpec>(
  command: string,
  args: string[],
  options: { options: O; allowPositionals?: boolean },
) {
  try {
    return parseArgs({
      args,
      options: options.options,
      allowPositionals: options.allowPositionals ?? true,
      strict: true,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(`${message.replace(/\.$/, "")}; see "enarx ${command} --help"`);
  }
}

/** Writes text to standard output, waiting until it is written. */
export async function printOut(text: string): Promise<void> {
  await writeAll(Deno.stdout, new TextEncoder().encode(text));
}

/** Writes text to standard error, waiting until it is written. */
export async function printErr(text: string): Promise<void> {
  await writeAll(Deno.stderr, new TextEncoder().encode(text));
}

/** Writes all of `bytes` to a writer. */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}

/** Prints a value as JSON on one line of standard output. */
export async function printJson(value: unknown): Promise<void> {
  await printOut(JSON.stringify(value, jsonReplacer) + "\n");
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return hex(value);
  return value;
}

/** Lower-case hexadecimal of bytes. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
