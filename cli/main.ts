/**
 * The `enarx` command: parses the subcommand, runs it, and turns errors into
 * one line and an exit status. A stack trace appears only with `--verbose`.
 *
 * @module
 */
import { ENARX_VERSION, WASMTIME_VERSION } from "../runtime/version.ts";
import { ExitStatus, UsageError } from "../runtime/errors.ts";
import { type Command, reportError as report } from "./_command.ts";

/**
 * Loads a subcommand module of cli/. The specifier is computed on purpose:
 * `deno run` reads and resolves every module it can see ahead of time, and
 * with string literals here that would be every subcommand's module graph
 * (about 60 files) on every start. A relative string resolves against this
 * module as a literal would, without making a URL object. compile.sh
 * `--include`s each cli/*.ts, so the compiled binary still carries them.
 */
async function loadCommand(file: string): Promise<Command> {
  const specifier = "./" + file;
  const module: { command: Command } = await import(specifier);
  return module.command;
}

/** Subcommands, loaded on demand so that start-up stays fast. */
const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  run: {
    summary: "Run a WebAssembly (WASI) module in a local keep",
    load: () => loadCommand("run.ts"),
  },
  deploy: {
    summary: "Deploy a module to a keep on a host, after attestation",
    load: () => loadCommand("deploy.ts"),
  },
  keepmgr: {
    summary: "Run the keep manager daemon on a host",
    load: () => loadCommand("keepmgr.ts"),
  },
  keepldr: {
    summary: "Run one keep's loader (started by keepmgr)",
    load: () => loadCommand("keepldr.ts"),
  },
  wasmldr: {
    summary: "Run the app loader inside a keep (started by keepldr)",
    load: () => loadCommand("wasmldr.ts"),
  },
  platform: {
    summary: "Inspect this host's TEE platforms (platform info)",
    load: () => loadCommand("platform.ts"),
  },
  attest: {
    summary: "Verify attestation evidence, or fetch a report inside a guest",
    load: () => loadCommand("attest.ts"),
  },
  measure: {
    summary: "Print the measurement a keep of this release reports",
    load: () => loadCommand("keep/measure.ts"),
  },
  keep: {
    summary: "Build the image a keep launches; list, logs, stop a keepmgr's keeps",
    load: () => loadCommand("keep/keep.ts"),
  },
  demo: {
    summary: "Start a local keepmgr and deploy a bundled example end to end",
    load: () => loadCommand("demo.ts"),
  },
};

const HELP = `enarx ${ENARX_VERSION}: deploy WebAssembly workloads into attested Keeps

Usage: enarx [--verbose] COMMAND [OPTIONS] [ARGS...]

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n")}

Options:
  -h, --help     Show this help, or a command's help with "enarx COMMAND --help"
  -V, --version  Show the version of enarx and of wasmtime
  -v, --verbose  Show stack traces for errors

Exit status: 0 success (or the workload's own status), 1 attestation check
failed, 64 usage, 65 malformed input, 66 missing input, 69 unavailable,
70 internal error, 74 I/O error, 76 protocol error, 77 permission denied,
78 configuration error, 124 workload timed out, 125 fuel exhausted,
126 memory limit reached, 134 workload trapped.
`;

/** Runs the CLI with `args` and returns the process exit status. */
export async function main(args: string[]): Promise<number> {
  let verbose = false;
  const rest = [...args];
  while (rest.length > 0 && rest[0].startsWith("-")) {
    const flag = rest.shift()!;
    if (flag === "-h" || flag === "--help") {
      await Deno.stdout.write(new TextEncoder().encode(HELP));
      return ExitStatus.ok;
    } else if (flag === "-V" || flag === "--version") {
      console.log(`enarx ${ENARX_VERSION}\nwasmtime ${WASMTIME_VERSION}`);
      return ExitStatus.ok;
    } else if (flag === "-v" || flag === "--verbose") {
      verbose = true;
    } else {
      return report(new UsageError(`Unknown option "${flag}"; see "enarx --help"`), verbose);
    }
  }
  if (verbose) Deno.env.set("ENARX_VERBOSE", "1");
  const name = rest.shift();
  if (name === undefined) {
    await Deno.stderr.write(new TextEncoder().encode(HELP));
    return ExitStatus.usage;
  }
  const entry = COMMANDS[name];
  if (entry === undefined) {
    return report(new UsageError(`Unknown command "${name}"; see "enarx --help"`), verbose);
  }
  try {
    const command = await entry.load();
    return await command.run(rest);
  } catch (error) {
    return report(error, verbose);
  }
}

if (import.meta.main) {
  const status = await main(Deno.args);
  Deno.exit(status);
}
