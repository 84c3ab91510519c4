/**
 * `enarx keep list`, `enarx keep logs KEEP [--follow]` and `enarx keep stop
 * KEEP`: manage the keeps of a keepmgr (a detached deploy's keep above all)
 * with the keepmgr operator's token, through its API (spec/protocol.md).
 *
 * @module
 */
import { EnarxError, UsageError } from "../../runtime/errors.ts";
import { readToken } from "../../runtime/keepmgr/api/auth.ts";
import { KeepmgrClient, KeepmgrError } from "../../runtime/client/keepmgr_client.ts";
import type { KeepSummary } from "../../runtime/protocol/messages.ts";
import {
  type OptionSpec,
  parseCommandArgs,
  type ParsedValues,
  printJson,
  printOut,
  writeAll,
} from "../_command.ts";

const COMMON_HELP = `Options:
  --keepmgr URL          The keepmgr, e.g. https://host:8443 (default: $ENARX_KEEPMGR)
  --keepmgr-token FILE   The keepmgr operator's bearer token (default:
                         $ENARX_KEEPMGR_TOKEN_FILE; keepmgr keeps it in
                         <its state dir>/token)
  --keepmgr-ca FILE      Verify the keepmgr's TLS certificate against these PEM
                         roots (default: not verified)`;

const HELP = {
  list: `Usage: enarx keep list --keepmgr URL [--json]

Lists the keeps a keepmgr knows, oldest first: id, backend, state, and the
endpoints of running services.

${COMMON_HELP}
  --json                 Print {keeps: [{keep, backend, state, created, status?,
                         reason?, endpoints?}]}
  -h, --help             Show this help
`,
  logs: `Usage: enarx keep logs KEEP --keepmgr URL [--follow]

Prints what a detached workload (enarx deploy --detach) wrote: the keepmgr
keeps its last 256 KiB. Standard output and error go to this command's own.

${COMMON_HELP}
  -f, --follow           Keep printing new output until the keep ends
  -h, --help             Show this help
`,
  stop: `Usage: enarx keep stop KEEP --keepmgr URL [--json]

Stops a keep (its workload is killed, its ports are freed) and forgets it.

${COMMON_HELP}
  --json                 Print the keep's last summary as JSON
  -h, --help             Show this help
`,
};

const OPTIONS = {
  keepmgr: { type: "string" },
  "keepmgr-token": { type: "string" },
  "keepmgr-ca": { type: "string" },
  follow: { type: "boolean", short: "f" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

type ManageValues = ParsedValues<typeof OPTIONS>;

/** How often `logs --follow` asks for new output. */
const FOLLOW_POLL_MS = 200;

/** The keep subcommands that talk to a keepmgr. */
export const MANAGE_COMMANDS = ["list", "logs", "stop"] as const;

/** Runs `enarx keep list|logs|stop`; returns the exit status. */
export async function manageCommand(
  sub: typeof MANAGE_COMMANDS[number],
  args: string[],
): Promise<number> {
  const { values, positionals } = parseCommandArgs(`keep ${sub}`, args, { options: OPTIONS });
  if (values.help) {
    await printOut(HELP[sub]);
    return 0;
  }
  if (values.follow && sub !== "logs") throw new UsageError(`--follow is for "keep logs" only`);
  const client = await keepmgrClient(values, sub);
  if (sub === "list") {
    if (positionals.length > 0) throw new UsageError(`"keep list" takes no KEEP`);
    const { keeps } = await client.listKeeps();
    if (values.json) await printJson({ keeps });
    else await printOut(keeps.map(describe).join(""));
    return 0;
  }
  const [keep, ...extra] = positionals;
  if (keep === undefined || extra.length > 0) {
    throw new UsageError(`"keep ${sub}" takes one KEEP id; "enarx keep list" shows them`);
  }
  try {
    if (sub === "logs") return await printLogs(client, keep, values.follow === true);
    await client.showKeep(keep); // a clear 404 first: DELETE answers it too, less plainly
    const summary = await client.deleteKeep(keep);
    if (values.json) await printJson(summary);
    else await printOut(`keep ${keep} stopped\n`);
    return 0;
  } catch (error) {
    throw unknownKeep(error, keep, client.url);
  }
}

/** One line of `keep list`. */
function describe(keep: KeepSummary): string {
  const end = keep.reason === undefined ? "" : ` (${keep.reason})`;
  const endpoints = (keep.endpoints ?? []).map((e) => ` ${e.name}=${e.prot}://${e.host}:${e.port}`);
  return `${keep.keep}  ${keep.backend}  ${keep.state}${end}${endpoints.join("")}\n`;
}

/** Prints the kept output of `keep`; with `follow`, new output until the keep ends. */
async function printLogs(client: KeepmgrClient, keep: string, follow: boolean): Promise<number> {
  let from = 0;
  while (true) {
    const logs = await client.keepLogs(keep, from);
    for (const chunk of logs.chunks) {
      await writeAll(chunk.stream === "stdout" ? Deno.stdout : Deno.stderr, chunk.data);
    }
    from = logs.end;
    if (!follow || logs.state === "exited" || logs.state === "failed") return 0;
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS));
  }
}

/** A 404 for `keep` as the one line a person needs (exit 66). */
function unknownKeep(error: unknown, keep: string, url: URL): unknown {
  if (!(error instanceof KeepmgrError) || error.httpStatus !== 404) return error;
  return new EnarxError(
    "keep-not-found",
    `No keep "${keep.slice(0, 80)}" on the keepmgr at ${url.origin}; ` +
      `"enarx keep list" shows the keeps it knows`,
    { exit: "noInput" },
  );
}

async function keepmgrClient(values: ManageValues, sub: string): Promise<KeepmgrClient> {
  const url = values.keepmgr ?? Deno.env.get("ENARX_KEEPMGR");
  if (url === undefined || url === "") {
    throw new UsageError(
      `Missing --keepmgr URL (or $ENARX_KEEPMGR); see "enarx keep ${sub} --help"`,
    );
  }
  const tokenFile = values["keepmgr-token"] ?? Deno.env.get("ENARX_KEEPMGR_TOKEN_FILE");
  const token = tokenFile === undefined || tokenFile === ""
    ? undefined
    : await readToken(tokenFile);
  const caFile = values["keepmgr-ca"];
  let caCerts: string[] | undefined;
  if (caFile !== undefined) {
    let pem: string;
    try {
      pem = await Deno.readTextFile(caFile);
    } catch (cause) {
      throw new EnarxError(
        "input-unreadable",
        `Cannot read --keepmgr-ca "${caFile}": ${cause instanceof Error ? cause.message : cause}`,
        { exit: "noInput", cause },
      );
    }
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new EnarxError(
        "keepmgr-ca-invalid",
        `--keepmgr-ca "${caFile}" holds no PEM certificate; pass the keepmgr's cert.pem (or its CA)`,
        { exit: "dataError" },
      );
    }
    caCerts = [pem];
  }
  return new KeepmgrClient(url, { token, caCerts });
}
