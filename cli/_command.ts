/**
 * What every subcommand module exports, and the small helpers they share for
 * parsing arguments and printing.
 *
 * @module
 */
import { errorCode, exitStatusFor, UsageError } from "../runtime/errors.ts";

/** A subcommand: `run(args)` gets the arguments after its name and returns the exit status. */
export interface Command {
  /** The name typed after `enarx`, e.g. `run` or `platform info`. */
  name: string;
  /** One line for `enarx --help`. */
  summary: string;
  /** Runs the subcommand; throws EnarxError for failures the CLI reports. */
  run(args: string[]): Promise<number>;
}

/** One option of {@link parseCommandArgs}, as in node:util's parseArgs. */
export interface OptionConfig {
  /** `boolean` takes no value; `string` takes one (`--name VALUE` or `--name=VALUE`). */
  type: "boolean" | "string";
  /** A one-letter alias, e.g. `h` for `-h`. */
  short?: string;
  /** Collect every occurrence into an array instead of keeping the last. */
  multiple?: boolean;
  /** The value when the option is not given. */
  default?: string | boolean | string[] | boolean[];
}

/** Options accepted by {@link parseCommandArgs}. */
export type OptionSpec = Record<string, OptionConfig>;

type OptionValue<C extends OptionConfig> = C["multiple"] extends true
  ? (C["type"] extends "boolean" ? boolean : string)[]
  : C["type"] extends "boolean" ? boolean
  : string;

/** The values parsed for `O`: options with a default are always present. */
export type ParsedValues<O extends OptionSpec> =
  & { -readonly [K in keyof O as O[K] extends { default: unknown } ? K : never]: OptionValue<O[K]> }
  & {
    -readonly [K in keyof O as O[K] extends { default: unknown } ? never : K]?: OptionValue<O[K]>;
  };

/**
 * Parses `args` like node:util's `parseArgs` in strict mode (long options
 * with `--name VALUE` or `--name=VALUE`, short booleans alone or grouped as
 * `-hq`, `--` ending the options, `-` as a positional), with node's error
 * texts on one line, each turned into a UsageError naming the command so
 * that the CLI prints one line. It is our own because loading node:util
 * starts Deno's Node compatibility layer, about 4 ms of every start.
 */
export function parseCommandArgs<O extends OptionSpec>(
  command: string,
  args: string[],
  options: { options: O; allowPositionals?: boolean },
): { values: ParsedValues<O>; positionals: string[] } {
  try {
    return parseStrict(args, options.options, options.allowPositionals ?? true);
  } catch (error) {
    if (!(error instanceof ArgsError)) throw error;
    throw new UsageError(`${error.message.replace(/\.$/, "")}; see "enarx ${command} --help"`);
  }
}

class ArgsError extends Error {}

/** The state of one strict parse: the spec, and the values and positionals found so far. */
class StrictParser {
  readonly values: Record<string, unknown> = {};
  readonly positionals: string[] = [];
  readonly #spec: OptionSpec;
  readonly #allowPositionals: boolean;
  readonly #shortNames = new Map<string, string>();

  constructor(spec: OptionSpec, allowPositionals: boolean) {
    this.#spec = spec;
    this.#allowPositionals = allowPositionals;
    for (const [name, config] of Object.entries(spec)) {
      if (config.short !== undefined) this.#shortNames.set(config.short, name);
    }
  }

  #describe(name: string): string {
    const short = this.#spec[name].short;
    return short === undefined ? `--${name}` : `-${short}, --${name}`;
  }

  #unknown(raw: string): ArgsError {
    return new ArgsError(
      `Unknown option '${raw}'` +
        (this.#allowPositionals
          ? `. To specify a positional argument starting with a '-', place it at the end of ` +
            `the command after '--', as in '-- ${JSON.stringify(raw)}'`
          : ""),
    );
  }

  #store(name: string, value: string | boolean): void {
    if (this.#spec[name].multiple) ((this.values[name] ??= []) as unknown[]).push(value);
    else this.values[name] = value;
  }

  /** Takes the value of string option `name` given as `raw` from the next argument. */
  #valueOf(name: string, raw: string, next: string | undefined): string {
    if (next === undefined) {
      throw new ArgsError(`Option '${this.#describe(name)} <value>' argument missing`);
    }
    if (next.length > 1 && next.startsWith("-")) {
      throw new ArgsError(
        `Option '${raw}' argument is ambiguous. Did you forget to specify the option argument ` +
          `for '${raw}'? To specify an option argument starting with a dash use '${raw}=-XYZ'`,
      );
    }
    return next;
  }

  /** Adds a positional argument, or refuses it. */
  positional(arg: string): void {
    if (!this.#allowPositionals) {
      throw new ArgsError(
        `Unexpected argument '${arg}'. This command does not take positional arguments`,
      );
    }
    this.positionals.push(arg);
  }

  /** Reads `--name`, `--name=VALUE` or `--name VALUE`; returns how many arguments it used. */
  long(arg: string, next: string | undefined): number {
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!Object.hasOwn(this.#spec, name)) throw this.#unknown(eq < 0 ? arg : arg.slice(0, eq));
    if (this.#spec[name].type === "boolean") {
      if (eq >= 0) {
        throw new ArgsError(`Option '${this.#describe(name)}' does not take an argument`);
      }
      this.#store(name, true);
      return 1;
    }
    if (eq >= 0) {
      this.#store(name, arg.slice(eq + 1));
      return 1;
    }
    this.#store(name, this.#valueOf(name, arg, next));
    return 2;
  }

  /**
   * Reads a short option, or a group of them (`-hq`); a string option takes
   * the rest of the group, else the next argument, as its value. Returns how
   * many arguments it used.
   */
  shortGroup(arg: string, next: string | undefined): number {
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j];
      const name = this.#shortNames.get(letter);
      if (name === undefined) throw this.#unknown(`-${letter}`);
      if (this.#spec[name].type === "boolean") {
        this.#store(name, true);
      } else if (j < arg.length - 1) {
        this.#store(name, arg.slice(j + 1));
        return 1;
      } else {
        this.#store(name, this.#valueOf(name, `-${letter}`, next));
        return 2;
      }
    }
    return 1;
  }

  /** Fills in the defaults of options not given. */
  applyDefaults(): void {
    for (const [name, config] of Object.entries(this.#spec)) {
      if (!Object.hasOwn(this.values, name) && config.default !== undefined) {
        this.values[name] = Array.isArray(config.default) ? [...config.default] : config.default;
      }
    }
  }
}

function parseStrict<O extends OptionSpec>(
  args: string[],
  spec: O,
  allowPositionals: boolean,
): { values: ParsedValues<O>; positionals: string[] } {
  const parser = new StrictParser(spec, allowPositionals);
  for (let i = 0; i < args.length;) {
    const arg = args[i];
    if (arg === "--") {
      for (const rest of args.slice(i + 1)) parser.positional(rest);
      break;
    }
    if (arg.startsWith("--")) i += parser.long(arg, args[i + 1]);
    else if (arg.startsWith("-") && arg.length > 1) i += parser.shortGroup(arg, args[i + 1]);
    else {
      parser.positional(arg);
      i++;
    }
  }
  parser.applyDefaults();
  return { values: parser.values as ParsedValues<O>, positionals: parser.positionals };
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
  if (value instanceof Uint8Array) return value.toHex();
  return value;
}

/**
 * Prints `error` as one line on standard error (with its stack trace when
 * `verbose`) and returns the exit status it calls for: what the CLI does
 * with an error a subcommand throws (cli/main.ts, cli/bundle/run.ts).
 */
export function reportError(error: unknown, verbose: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  if (verbose && error instanceof Error && error.stack) {
    console.error(error.stack);
  }
  const code = errorCode(error);
  const prefix = code === "internal" ? "enarx: internal error" : "enarx";
  console.error(`${prefix}: ${oneLine(message)}`);
  return exitStatusFor(error);
}

/**
 * Escapes line breaks and other control characters, which arrive in messages
 * through quoted input (a TOML string, a CBOR map key), so that an error is
 * always one line on stderr.
 */
function oneLine(message: string): string {
  // deno-lint-ignore no-control-regex
  return message.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}
