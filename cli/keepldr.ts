/**
 * `enarx keepldr`: the loader of one keep, started by keepmgr with frames on
 * standard input and output. Not meant to be run by hand.
 *
 * @module
 */
import { type Command, parseCommandArgs, printOut } from "./_command.ts";
import { UsageError } from "../runtime/errors.ts";
import { runKeepldr } from "../runtime/keepmgr/keepldr.ts";
import { KEEP_ID_PATTERN } from "../runtime/protocol/messages.ts";

const HELP = `Usage: enarx keepldr --keep ID [--work-dir DIR]

Runs one keep for keepmgr: reads a hello frame on standard input, launches the
keep for its backend, and relays length-prefixed CBOR frames between keepmgr
(stdin/stdout) and the wasmldr inside the keep. Started by "enarx keepmgr".

Options:
  --keep ID               The keep's id (must match the hello frame)
  --work-dir DIR          Work directory for the keep's temporary files
  --wasmldr-command JSON  Run this command as wasmldr (JSON array; for testing)
  --snp-sim-dir DIR       State of the simulated SNP platform that signs nil and
                          kvm keeps' reports (default: $ENARX_SNP_SIM_DIR)
  -h, --help              Show this help
`;

/** `enarx keepldr`. */
export const command: Command = {
  name: "keepldr",
  summary: "Run one keep's loader (started by keepmgr)",
  async run(args: string[]): Promise<number> {
    const { values } = parseCommandArgs("keepldr", args, {
      options: {
        keep: { type: "string" },
        "work-dir": { type: "string" },
        "wasmldr-command": { type: "string" },
        "snp-sim-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    if (values.keep === undefined || !KEEP_ID_PATTERN.test(values.keep)) {
      throw new UsageError(`keepldr needs --keep ID (a keep id); it is started by enarx keepmgr`);
    }
    let wasmldrCommand: string[] | undefined;
    if (values["wasmldr-command"] !== undefined) {
      try {
        wasmldrCommand = JSON.parse(values["wasmldr-command"]);
      } catch { /* checked below */ }
      if (!Array.isArray(wasmldrCommand) || !wasmldrCommand.every((a) => typeof a === "string")) {
        throw new UsageError(`--wasmldr-command must be a JSON array of strings`);
      }
    }
    return await runKeepldr({
      keepId: values.keep,
      workDir: values["work-dir"],
      wasmldrCommand,
      simDir: values["snp-sim-dir"],
    });
  },
};
