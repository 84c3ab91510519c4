/**
 * `enarx attest report` on a machine that is not a TEE guest (ours): one
 * clear line and exit 69, never a stack trace; usage errors exit 64; and the
 * runtime's errors when a device answers wrongly (/dev/null stands in for
 * a device that does not know the ioctl) or configfs-tsm is incomplete.
 */
import assert from "node:assert/strict";
import { fetchGuestReport, GuestReportError } from "../../runtime/keep/guest_report.ts";
import { fetchTsmReport, TsmReportError } from "../../runtime/keep/tsm_report.ts";
import { parseReportData } from "../../cli/attest_report.ts";

const MAIN = new URL("../../cli/main.ts", import.meta.url).pathname;

async function enarx(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

const notGuest = !["/dev/sev-guest", "/dev/tdx_guest", "/sys/kernel/config/tsm/report"].some(
  (p) => {
    try {
      Deno.statSync(p);
      return true;
    } catch {
      return false;
    }
  },
);
if (!notGuest) {
  console.error("SKIP: this host is a TEE guest; the non-guest attest report tests do not apply");
}

Deno.test({
  name: "attest report --via sev-guest on a non-guest: one line, exit 69",
  ignore: !notGuest,
  fn: async () => {
    const { code, stdout, stderr } = await enarx(["attest", "report", "--via", "sev-guest"]);
    assert.equal(code, 69);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      'enarx: Cannot open "/dev/sev-guest": no such device; this host is not an SNP guest\n',
    );
  },
});

Deno.test({
  name: "attest report (auto) and --via tdx|tsm on a non-guest: one line each, exit 69",
  ignore: !notGuest,
  fn: async () => {
    for (const args of [[], ["--via", "tdx"], ["--via", "tsm"], ["--ext", "--out", "/tmp/x"]]) {
      const { code, stderr } = await enarx(["attest", "report", ...args]);
      assert.equal(code, 69, `${args.join(" ")}: ${stderr}`);
      assert.equal(stderr.split("\n").length, 2, `one line: ${stderr}`);
      assert.match(
        stderr,
        /^enarx: Cannot open "\/(dev|sys)\/.*not (an?|a TDX|an SEV-SNP)|no config/,
      );
      assert.doesNotMatch(stderr, /\.ts:\d+/, "no stack trace");
    }
  },
});

Deno.test("attest report usage errors exit 64 with one line", async () => {
  for (
    const args of [
      ["--report-data", "xyz"],
      ["--report-data", "a".repeat(130)],
      ["--vmpl", "4"],
      ["--via", "sgx"],
      ["--via", "tdx", "--ext"],
      ["--bogus"],
      ["extra"],
    ]
  ) {
    const { code, stderr } = await enarx(["attest", "report", ...args]);
    assert.equal(code, 64, `${args.join(" ")}: ${stderr}`);
    assert.equal(stderr.split("\n").length, 2, stderr);
    assert.match(stderr, /^enarx: [A-Z"-]/);
  }
  const help = await enarx(["attest", "report", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--report-data HEX/);
});

Deno.test("report data is parsed from hex, at most 64 bytes", () => {
  assert.deepEqual(parseReportData(""), new Uint8Array());
  assert.deepEqual(parseReportData("0x00ff10"), Uint8Array.of(0, 255, 16));
  assert.equal(parseReportData("ab".repeat(64)).length, 64);
  assert.throws(() => parseReportData("ab".repeat(65)), /65 bytes/);
  assert.throws(() => parseReportData("abc"), /not hex/);
});

Deno.test("a device that does not know SNP_GET_REPORT: ENOTTY by name, exit 74", async () => {
  for (const extended of [false, true]) {
    try {
      await fetchGuestReport(new Uint8Array(8), {
        via: "sev-guest",
        extended,
        devices: { sevGuest: "/dev/null" },
      });
      assert.fail("no error");
    } catch (e) {
      assert.ok(e instanceof GuestReportError, String(e));
      assert.equal(e.code, "guest-report-failed");
      assert.equal(e.exitStatus, 74);
      const name = extended ? "SNP_GET_EXT_REPORT" : "SNP_GET_REPORT";
      assert.match(e.message, new RegExp(`^ioctl\\(${name}\\) on "/dev/null" failed: ENOTTY`));
    }
  }
  await assert.rejects(
    () =>
      fetchGuestReport(new Uint8Array(), { via: "tdx-guest", devices: { tdxGuest: "/dev/null" } }),
    (e: unknown) => e instanceof GuestReportError && /TDX_CMD_GET_REPORT0.*ENOTTY/.test(e.message),
  );
});

Deno.test("guest report options are validated before any device is touched", async () => {
  await assert.rejects(
    () => fetchGuestReport(new Uint8Array(65)),
    (e: unknown) => e instanceof GuestReportError && e.exitStatus === 64,
  );
  await assert.rejects(
    () => fetchGuestReport(new Uint8Array(), { vmpl: 4 }),
    (e: unknown) => e instanceof GuestReportError && e.code === "vmpl-invalid",
  );
});

Deno.test("configfs-tsm: a missing root is 'unavailable'; an incomplete one fails by file", async () => {
  await assert.rejects(
    () => fetchTsmReport(new Uint8Array(), { root: "/nonexistent/tsm/report" }),
    (e: unknown) => e instanceof TsmReportError && e.exitStatus === 69,
  );
  // A plain directory accepts mkdir and the inblob write, but has no outblob.
  const root = await Deno.makeTempDir({ prefix: "enarx-tsm-" });
  try {
    await assert.rejects(
      () => fetchTsmReport(new Uint8Array(64), { root }),
      (e: unknown) =>
        e instanceof TsmReportError && e.code === "tsm-io" &&
        /Cannot read ".*\/generation": (ENOENT|NotFound)/.test(e.message),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  await assert.rejects(
    () => fetchTsmReport(new Uint8Array(65)),
    (e: unknown) => e instanceof TsmReportError && e.code === "tsm-inblob-size",
  );
});
