/**
 * `enarx demo`: the whole product in one command. Starts a local keepmgr,
 * deploys the bundled example (examples/hello.wat) to a nil keep end to end,
 * printing each of DESIGN.md's ten steps as it happens with its timing, then
 * stops the keepmgr.
 *
 * @module
 */
import { type Command, parseCommandArgs, printOut } from "./_command.ts";
import { EnarxError, UsageError } from "../runtime/errors.ts";
import { deploy, type DeployEvent, type DeployStepRecord } from "../runtime/client/deploy.ts";
import { LocalKeepmgr, localSimulatorDir } from "../runtime/keepmgr/local.ts";

const HELP = `Usage: enarx demo [MODULE]

Runs the deploy sequence end to end on this machine: starts a local keepmgr
(127.0.0.1, a temporary state directory), deploys MODULE (default: the bundled
examples/hello.wat) to a nil keep through it, prints each of the ten steps as
it happens with its timing, and stops the keepmgr.

This machine has no TEE, so the keep is a sandboxed process and its evidence
comes from snp-sim, a software stand-in for AMD's secure processor that
keepldr runs on the host. The demo trusts exactly the local keepmgr's
simulated root, by the fingerprint it prints, as "enarx deploy
--trust-simulated sha256:..." would, and checks the keep's measurement
against the one this release computes; a real deploy refuses simulated
evidence. The simulated chain is made on the first run (a few seconds) and
kept in $ENARX_SNP_SIM_DIR, else ~/.cache/enarx/demo-snp-sim.

Options:
  -h, --help  Show this help
`;

const HOST_EVENTS: Record<string, string> = {
  "keep created": "keepmgr created the keep and started its keepldr",
  "keep attested": "wasmldr's evidence and sealing key reached keepmgr",
  "keep listening": "wasmldr listens on HTTPS; keepmgr forwards a port to it",
};

/** `enarx demo`. */
export const command: Command = {
  name: "demo",
  summary: "Start a local keepmgr and deploy a bundled example end to end",
  async run(args: string[]): Promise<number> {
    const { values, positionals } = parseCommandArgs("demo", args, {
      options: { help: { type: "boolean", short: "h" } },
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    if (positionals.length > 1) {
      throw new UsageError(`Unexpected argument "${positionals[1]}"; see "enarx demo --help"`);
    }
    const modulePath = positionals[0] ??
      new URL("../examples/hello.wat", import.meta.url).pathname;
    let module: Uint8Array;
    try {
      module = await Deno.readFile(modulePath);
    } catch (cause) {
      throw new EnarxError("input-unreadable", `Cannot read the module "${modulePath}"`, {
        exit: "noInput",
        cause,
      });
    }
    say(`enarx demo: deploying ${displayPath(modulePath)} through a local keepmgr, end to end\n`);
    say("This machine has no TEE: the keep is a nil keep (a separate, sandboxed process) and its");
    say("evidence is signed by snp-sim, a software stand-in for AMD's secure processor, which");
    say("keepldr runs on the host. The demo trusts exactly this keepmgr's simulated root, by its");
    say("fingerprint, as --trust-simulated does; a real deploy refuses such evidence.\n");

    const hostEvents: HostEvent[] = [];
    await using keepmgr = await startLocalKeepmgr(hostEvents);
    let status: number;
    try {
      status = await deployThrough(keepmgr, module, hostEvents);
    } finally {
      const stopping = performance.now();
      await keepmgr.close();
      say(`Stopped the keepmgr (${ms(performance.now() - stopping)}).`);
    }
    return status;
  },
};

/** A line of the demo on standard output. */
function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
}

/** A keepmgr log event the demo shows, with its time (ms since the epoch). */
interface HostEvent {
  msg: string;
  at: number;
}

/** Starts keepmgr on 127.0.0.1, collecting the events of {@link HOST_EVENTS} it logs. */
async function startLocalKeepmgr(hostEvents: HostEvent[]): Promise<LocalKeepmgr> {
  const started = performance.now();
  say("Starting a local keepmgr on 127.0.0.1 with a temporary state directory...");
  // The simulated chain (two RSA-4096 keys) is made once and kept in the cache.
  const keepmgr = await LocalKeepmgr.start({
    simDir: localSimulatorDir(),
    onLog: (line) => {
      try {
        const entry = JSON.parse(line);
        if (typeof entry.msg === "string" && entry.msg in HOST_EVENTS) {
          hostEvents.push({ msg: entry.msg, at: Date.parse(entry.ts) });
        }
      } catch { /* not JSON */ }
    },
  });
  say(`  keepmgr ${keepmgr.url} (pid ${keepmgr.pid}) ready in ${ms(performance.now() - started)}`);
  say(`  its simulated SNP root: ${keepmgr.simulatorRoot ?? "none"}\n`);
  return keepmgr;
}

/** Deploys `module` to a nil keep through `keepmgr`, printing every step; returns its status. */
async function deployThrough(
  keepmgr: LocalKeepmgr,
  module: Uint8Array,
  hostEvents: HostEvent[],
): Promise<number> {
  let stepWallStart = Date.now();
  const printHost = (from: number) => {
    for (const e of hostEvents.filter((e) => e.at >= from)) {
      say(`      host: ${HOST_EVENTS[e.msg]} (+${e.at - from} ms)`);
    }
  };
  const onStep = (event: DeployEvent) => {
    if (event.kind === "step-start") {
      stepWallStart = Date.now();
      return;
    }
    if (event.kind === "warning") {
      say(`      ${event.message}`);
      return;
    }
    if (event.kind === "step-end") printStep(event.step, say, () => printHost(stepWallStart));
  };
  const result = await deploy({
    module,
    config: null,
    args: [],
    env: {},
    stdin: new Uint8Array(0),
  }, {
    keepmgr: keepmgr.url,
    keepmgrToken: keepmgr.token,
    backend: "nil",
    // Exactly this keepmgr's simulator, by the fingerprint it printed: no trust on first use.
    trustSimulated: keepmgr.simulatorRoot,
    timeoutMs: 60_000,
    onStep,
    onStdout: (chunk) => void say(indent(chunk, "stdout")),
    onStderr: (chunk) => void say(indent(chunk, "stderr")),
  });
  say(
    `     The workload exited with status ${result.status} (${result.reason}); the keep ended and keepmgr frees it`,
  );
  say(`\nDeployed, ran and verified end to end in ${ms(result.totalMs)}.`);
  return result.status;
}

function printStep(step: DeployStepRecord, say: (line: string) => void, host: () => void) {
  const took = ms(step.ms);
  if (step.failed) {
    say(` [${step.design}] FAILED after ${took}: ${step.detail ?? step.title}`);
    return;
  }
  switch (step.id) {
    case "create":
      say(" 1.  client -> keepmgr: create a nil keep, with a fresh 32-byte nonce");
      host();
      say(" 2.  keepmgr started a keepldr for it (a supervised child process)");
      say(" 3.  keepldr launched the keep and wasmldr inside it");
      say(" 4.  wasmldr made an HPKE key pair and got evidence binding the nonce and its key");
      say(`     -> ${step.detail} (steps 1-4: ${took})`);
      break;
    case "verify":
      say(` 5.  client verified the evidence: ${step.detail} (${took})`);
      break;
    case "seal":
      say(
        ` 6.  client made a one-use TLS key and upload token and sealed them to the keep (${took})`,
      );
      break;
    case "deliver":
      say(" 7.  keepmgr relayed the sealed key; wasmldr opened it and made a certificate for it");
      host();
      say(` 8.  ${step.detail} (steps 6-8 relay: ${took})`);
      break;
    case "connect":
      say(` 9.  client connected over TLS pinning exactly its one-use key (${took})`);
      break;
    case "upload":
      say(`     and uploaded the module with the sealed token: ${step.detail} (${took})`);
      say("10.  wasmldr runs it under wasmtime and streams its output:");
      break;
    case "run":
      say(`     (ran and streamed in ${took}, counted from the upload's reply)`);
      break;
  }
}

function indent(chunk: Uint8Array, stream: string): string {
  const text = new TextDecoder().decode(chunk).replace(/\n$/, "");
  return text.split("\n").map((line) => `     | ${stream}: ${line}`).join("\n");
}

function ms(value: number): string {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

function displayPath(path: string): string {
  const cwd = Deno.cwd() + "/";
  return path.startsWith(cwd) ? path.slice(cwd.length) : path;
}
