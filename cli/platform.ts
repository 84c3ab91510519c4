/**
 * `enarx platform info [--json]`: which keep backends this host can use,
 * every check behind each answer, and what to do about a failed one. The
 * JSON form is documented in spec/platform-info.md.
 *
 * @module
 */
import { UsageError } from "../runtime/errors.ts";
import {
  type BackendInfo,
  type GuestInterfaceInfo,
  type PlatformCheck,
  type PlatformInfo,
  probePlatform,
} from "../runtime/platform/info.ts";
import { type Command, parseCommandArgs, printJson, printOut } from "./_command.ts";

const HELP = `Usage: enarx platform COMMAND [OPTIONS]

Commands:
  info    Show which keep backends this host can use, and why

See "enarx platform info --help".
`;

const INFO_HELP = `Usage: enarx platform info [--json]

Checks this host for each keep backend (sev, tdx, sgx, kvm, nil, strongest
first) and for the TEE guest interfaces that "enarx attest report" uses. Each
check shows its result; a failed one shows the command that fixes it, or the
firmware setting to change where no command can.

Options:
      --json   Print the report as JSON (schema: spec/platform-info.md)
  -h, --help   Show this help

Exit status: 0 (the report is the answer, whatever it says).
`;

const MARK = { pass: "✔", fail: "✘", skip: "–" } as const;

function checkLines(check: PlatformCheck): string[] {
  const mark = check.status === "fail" && !check.required ? "!" : MARK[check.status];
  const optional = check.required ? "" : " (optional)";
  const lines = [`    ${mark} ${check.title}${optional}: ${check.detail}`];
  if (check.status === "fail" && check.remedy !== null) {
    for (const command of check.remedy.commands) lines.push(`        run: ${command}`);
    if (check.remedy.note !== null) lines.push(`        ${check.remedy.note}`);
  }
  return lines;
}

function backendLines(backend: BackendInfo): string[] {
  const state = backend.launchable
    ? "usable"
    : backend.usable && backend.name === "kvm"
    ? "usable, but no keep kernel was found (./tools/test.sh fetches one; or set ENARX_KVM_KERNEL)"
    : backend.usable
    ? "usable, but enarx cannot launch it yet"
    : "not usable";
  const evidence = backend.evidence === "snp-sim"
    ? "simulated SNP evidence (proves nothing about hardware)"
    : `${backend.evidence} evidence`;
  return [
    `${backend.usable ? MARK.pass : MARK.fail} ${backend.name}: ${state}`,
    `    ${backend.description}; ${evidence}`,
    ...backend.checks.flatMap(checkLines),
  ];
}

function guestLines(guest: GuestInterfaceInfo): string[] {
  return [
    `${guest.usable ? MARK.pass : MARK.fail} ${guest.name}: ${
      guest.usable ? "available" : "not available"
    }`,
    `    ${guest.description}`,
    ...guest.checks.flatMap(checkLines),
  ];
}

/** Renders the report for a person. */
export function formatPlatformInfo(info: PlatformInfo): string {
  const s = info.system;
  const cpu = [
    s.cpuVendor ?? "unknown vendor",
    s.cpuModel ?? "",
    s.cpuFamily === null
      ? ""
      : `(family 0x${s.cpuFamily.toString(16)}, model 0x${(s.cpuModelNumber ?? 0).toString(16)})`,
  ].filter((x) => x !== "").join(" ");
  const best = info.best;
  const strongest = best.launchable === "nil"
    ? "Strongest backend enarx can launch here: nil"
    : `Strongest backend enarx can launch here: ${best.launchable} ` +
      `(keepmgr --backends ${best.launchable},nil; enarx run runs nil keeps)`;
  const auto = best.usable === best.launchable
    ? strongest
    : `${strongest}; the strongest usable is ${best.usable}, which enarx cannot launch yet`;
  const lines = [
    `enarx ${info.enarx} platform info`,
    `System: Linux ${s.kernel} ${s.arch}; ${cpu}${
      s.virtualMachine ? "; virtual machine" : ""
    }; user ${s.user}`,
    "",
    "Backends, strongest first:",
    ...info.backends.flatMap(backendLines),
    "",
    auto,
    "",
    'Guest interfaces (for "enarx attest report"):',
    ...info.guest.interfaces.flatMap(guestLines),
    "",
    info.guest.preferred === null
      ? "This machine is not a TEE guest: enarx attest report has no device to ask"
      : `enarx attest report uses: ${info.guest.preferred}`,
  ];
  return lines.join("\n") + "\n";
}

/** The `platform` command group. */
export const command: Command = {
  name: "platform",
  summary: "Inspect this host's TEE platforms (platform info)",
  async run(args: string[]): Promise<number> {
    const [sub, ...rest] = args;
    if (sub === "-h" || sub === "--help") {
      await printOut(HELP);
      return 0;
    }
    if (sub !== "info") {
      throw new UsageError(
        sub === undefined
          ? `Missing a command; see "enarx platform --help"`
          : `Unknown command "platform ${sub}"; see "enarx platform --help"`,
      );
    }
    const { values, positionals } = parseCommandArgs("platform info", rest, {
      options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    });
    if (values.help) {
      await printOut(INFO_HELP);
      return 0;
    }
    if (positionals.length > 0) {
      throw new UsageError(
        `Unexpected argument "${positionals[0]}"; see "enarx platform info --help"`,
      );
    }
    const info = probePlatform();
    if (values.json) await printJson(info);
    else await printOut(formatPlatformInfo(info));
    return 0;
  },
};
