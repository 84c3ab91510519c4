/**
 * `enarx attest`: `verify` checks evidence (cli/attest_verify.ts) and
 * `report` fetches a report inside a guest (cli/attest_report.ts).
 *
 * @module
 */
import { UsageError } from "../runtime/errors.ts";
import { type Command, printOut } from "./_command.ts";

const HELP = `Usage: enarx attest COMMAND [OPTIONS]

Commands:
  verify EVIDENCE   Verify SEV-SNP, TDX, SGX or Nitro evidence against a policy
  report            Fetch an attestation report from this guest's TEE

See "enarx attest COMMAND --help".
`;

/** The `attest` command group. */
export const command: Command = {
  name: "attest",
  summary: "Verify attestation evidence, or fetch a report inside a guest",
  async run(args: string[]): Promise<number> {
    const [sub, ...rest] = args;
    if (sub === "verify") return (await import("./attest_verify.ts")).command.run(rest);
    if (sub === "report") return (await import("./attest_report.ts")).command.run(rest);
    if (sub === "-h" || sub === "--help") {
      await printOut(HELP);
      return 0;
    }
    throw new UsageError(
      sub === undefined
        ? `Missing a command; see "enarx attest --help"`
        : `Unknown command "attest ${sub}"; see "enarx attest --help"`,
    );
  },
};
