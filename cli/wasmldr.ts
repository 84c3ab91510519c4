/**
 * `enarx wasmldr`: the app loader inside a keep, started by keepldr with
 * frames on standard input and output (runtime/keep/wasmldr.ts). Not meant to be
 * run by hand.
 *
 * @module
 */
import { type Command, parseCommandArgs, printOut } from "./_command.ts";
import { UsageError } from "../runtime/errors.ts";
import { runWasmldr } from "../runtime/keep/wasmldr.ts";
import { runWorkload } from "../runtime/wasm/workload.ts";
import type { parseDeployedConfig as ParseDeployedConfig } from "../runtime/wasm/config.ts";
import { backendEvidence } from "../runtime/keep/evidence.ts";

// Only a deploy with an Enarx.toml needs the TOML parser (smol-toml, an npm
// package, and node:path): loading either starts Deno's Node compatibility
// layer, about 20 ms of a keep's CPU. By a specifier in a variable, which
// `deno run` does not read ahead; compile.sh `--include`s it.
const CONFIG = "../runtime/wasm/config.ts";

/** Parses a deployed Enarx.toml, loading runtime/wasm/config.ts on first use. */
async function parseConfig(text: string) {
  const { parseDeployedConfig }: { parseDeployedConfig: typeof ParseDeployedConfig } = await import(
    CONFIG
  );
  return parseDeployedConfig(text);
}

const HELP = `Usage: enarx wasmldr

The app loader inside a keep. keepldr starts it with length-prefixed CBOR
frames on standard input and output (spec/protocol.md); it makes the keep's
sealing key and evidence, opens the client's sealed TLS key, serves HTTPS on
127.0.0.1 (or $ENARX_WASMLDR_LISTEN, HOST:PORT, inside a kvm keep), runs
exactly one workload and exits. Its evidence comes from the guest report
device: /dev/sev-guest, configfs-tsm, or else keepldr over the frames (the
simulated SNP platform of nil and kvm keeps, which runs on the host).
Diagnostics go to standard error.

Options:
  -h, --help  Show this help
`;

/** `enarx wasmldr`. */
export const command: Command = {
  name: "wasmldr",
  summary: "Run the app loader inside a keep (started by keepldr)",
  async run(args: string[]): Promise<number> {
    const { values } = parseCommandArgs("wasmldr", args, {
      options: {
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    const listen = parseListenEnv(Deno.env.get("ENARX_WASMLDR_LISTEN"));
    const outcome = await runWasmldr({
      listen,
      input: Deno.stdin.readable,
      output: Deno.stdout.writable,
      evidence: backendEvidence(),
      run: runWorkload,
      parseConfig,
    });
    return outcome.exitStatus;
  },
};

/** Parses ENARX_WASMLDR_LISTEN (`HOST:PORT`, set inside a kvm keep's VM). */
function parseListenEnv(value: string | undefined): { hostname: string; port: number } | undefined {
  if (value === undefined || value === "") return undefined;
  const match = value.match(/^([0-9.]+):(\d{1,5})$/);
  if (match === null || Number(match[2]) > 65535) {
    throw new UsageError(`ENARX_WASMLDR_LISTEN is "${value}"; expected an IPv4 HOST:PORT`);
  }
  return { hostname: match[1], port: Number(match[2]) };
}
