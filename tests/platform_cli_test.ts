/**
 * `enarx platform info`: the real probe on this machine (through the CLI),
 * the documented JSON schema, and the verdicts and remedies on made-up hosts
 * (an SEV-SNP host, a TDX host, an SGX host, misconfigured ones).
 */
import assert from "node:assert/strict";
import { command as platformCommand } from "../cli/platform.ts";
import type { HostFacts } from "../runtime/platform/host_facts.ts";
import { kvmLaunchable } from "../runtime/backends/kvm.ts";
import {
  BACKENDS,
  bestBackend,
  evaluatePlatform,
  type PlatformCheck,
  type PlatformInfo,
} from "../runtime/platform/info.ts";

const ROOT = new URL("../", import.meta.url);
const DENO = Deno.execPath();

async function enarx(args: string[]) {
  const out = await new Deno.Command(DENO, {
    args: ["run", "--allow-all", new URL("cli/main.ts", ROOT).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A healthy AMD EPYC SEV-SNP host, run by an unprivileged user. */
function snpHost(): HostFacts {
  const ok = { present: true, open: "ok", group: "kvm" };
  return {
    kernelRelease: "6.12.10-amd64",
    arch: "x86_64",
    cpu: {
      vendor: "AuthenticAMD",
      modelName: "AMD EPYC 9454 48-Core Processor",
      family: 25,
      model: 17,
      flags: ["fpu", "svm", "sev", "sev_es", "sev_snp"],
    },
    modules: ["kvm", "kvm_amd", "ccp"],
    parameters: {
      "kvm_amd/sev": "Y",
      "kvm_amd/sev_es": "Y",
      "kvm_amd/sev_snp": "Y",
      "kvm_intel/tdx": null,
      "kvm_intel/sgx": null,
    },
    devices: {
      "/dev/kvm": ok,
      "/dev/sev": { present: true, open: "ok", group: "sev" },
      "/dev/sgx_enclave": { present: false, open: "ENOENT", group: null },
      "/dev/sgx_provision": { present: false, open: "ENOENT", group: null },
      "/dev/sev-guest": { present: false, open: "ENOENT", group: null },
      "/dev/tdx_guest": { present: false, open: "ENOENT", group: null },
    },
    kvm: { apiVersion: 12, vmTypes: 0b11101, createVm: "ok" },
    sev: {
      platformStatus: { apiMajor: 1, apiMinor: 55, state: 1, flags: 0, build: 21, guestCount: 0 },
      platformStatusError: null,
      snpStatus: {
        apiMajor: 1,
        apiMinor: 55,
        state: 1,
        rmpInitialized: true,
        buildId: 21,
        featureBits: 0,
        guestCount: 0,
        currentTcb: 0x1554000000000007n,
        reportedTcb: 0x1554000000000007n,
      },
      snpStatusError: null,
    },
    configfs: { mounted: true, tsmReport: false },
    executables: { "qemu-system-x86_64": "/usr/bin/qemu-system-x86_64" },
    aesmSocket: false,
    user: { name: "alice", uid: 1000, groups: ["alice", "kvm"] },
  };
}

function check(info: PlatformInfo, id: string): PlatformCheck {
  for (const b of [...info.backends, ...info.guest.interfaces]) {
    const found = b.checks.find((c) => c.id === id);
    if (found) return found;
  }
  throw new Error(`no check "${id}"`);
}

function backend(info: PlatformInfo, name: string) {
  return info.backends.find((b) => b.name === name)!;
}

Deno.test("platform info --json on this machine: schema, order, nil and the real KVM probe", async () => {
  const { code, stdout, stderr } = await enarx(["platform", "info", "--json"]);
  assert.equal(code, 0, stderr);
  assert.equal(stdout.trim().split("\n").length, 1, "one line of JSON");
  const info = JSON.parse(stdout) as PlatformInfo;
  assert.equal(info.schema, "enarx-platform-info");
  assert.equal(info.version, 1);
  assert.deepEqual(info.backends.map((b) => b.name), [...BACKENDS]);
  assert.equal(backend(info, "nil").usable, true);
  assert.equal(backend(info, "nil").launchable, true);
  // kvm keeps launch where QEMU and a keep kernel are (tools/test_deps.sh installs both).
  const kvm = kvmLaunchable() && backend(info, "kvm").usable;
  assert.equal(backend(info, "kvm").launchable, kvm);
  assert.equal(info.best.launchable, kvm ? "kvm" : "nil");
  // Our machines have /dev/kvm with KVM API 12 and can create a VM.
  assert.equal(check(info, "kvm.device").status, "pass");
  assert.equal(check(info, "kvm.api-version").status, "pass");
  assert.equal(check(info, "kvm.create-vm").status, "pass");
  // And no TEE: nothing here is an SNP guest, so attest report has no device.
  assert.equal(backend(info, "sev").usable, false);
  assert.equal(info.guest.preferred, null);
  for (const b of [...info.backends, ...info.guest.interfaces]) {
    for (const c of b.checks) {
      if (c.status === "fail") assert.notEqual(c.remedy, null, `${c.id} fails without a remedy`);
      else assert.equal(c.remedy, null, `${c.id} has a remedy but did not fail`);
    }
  }
});

Deno.test("every field of the JSON is documented in spec/platform-info.md", async () => {
  const spec = await Deno.readTextFile(new URL("spec/platform-info.md", ROOT));
  const info = evaluatePlatform(snpHost());
  const keys = new Set<string>();
  const walk = (value: unknown) => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value !== null && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        keys.add(k);
        walk(v);
      }
    }
  };
  walk(info);
  const undocumented = [...keys].filter((k) => !spec.includes(`\`${k}\``));
  assert.deepEqual(undocumented, []);
  const ids = info.backends.flatMap((b) => b.checks.map((c) => c.id))
    .concat(info.guest.interfaces.flatMap((g) => g.checks.map((c) => c.id)));
  const missingIds = ids.filter((id) => {
    const wildcard = id.replace(/^(\w+\.kvm)\..*$/, "$1.*");
    return !spec.includes(`\`${id}\``) && !spec.includes(`\`${wildcard}\``);
  });
  assert.deepEqual(missingIds, []);
});

Deno.test("platform info prints a table with marks and the auto choice, exit 0", async () => {
  const { code, stdout } = await enarx(["platform", "info"]);
  assert.equal(code, 0);
  assert.match(stdout, /^✔ nil: usable$/m);
  assert.match(stdout, /^✘ sev: not usable$/m);
  assert.match(stdout, /^ {4}✔ \/dev\/kvm opens read-write: Opens read-write$/m);
  if (kvmLaunchable()) {
    assert.match(stdout, /^✔ kvm: usable$/m);
    assert.match(
      stdout,
      /^Strongest backend enarx can launch here: kvm \(keepmgr --backends kvm,nil;/m,
    );
  } else {
    assert.match(stdout, /^Strongest backend enarx can launch here: nil$/m);
  }
  assert.match(stdout, /not a TEE guest/);
});

Deno.test("platform --help and usage errors", async () => {
  const help = await enarx(["platform", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /enarx platform COMMAND/);
  const infoHelp = await platformCommand.run(["info", "--help"]);
  assert.equal(infoHelp, 0);
  const bad = await enarx(["platform", "info", "--yaml"]);
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /^enarx: .*--yaml.*platform info --help/);
  assert.doesNotMatch(bad.stderr, /at .*\.ts:\d+/, "no stack trace");
  assert.equal((await enarx(["platform"])).code, 64);
});

Deno.test("a healthy SNP host: sev usable but not launchable yet; auto still nil", () => {
  const info = evaluatePlatform(snpHost());
  const sev = backend(info, "sev");
  assert.deepEqual(sev.checks.filter((c) => c.status !== "pass").map((c) => c.id), []);
  assert.equal(sev.usable, true);
  assert.equal(sev.launchable, false);
  assert.equal(info.best.usable, "sev");
  assert.equal(info.best.launchable, "nil");
  assert.equal(bestBackend(info), "nil");
  assert.equal(bestBackend(info, { launchable: false }), "sev");
  assert.match(check(info, "sev.psp.snp-status").detail, /API 1\.55 build 21, state INIT/);
  // Once sev launching exists, auto picks it.
  const later = evaluatePlatform(snpHost(), { launchable: ["sev", "kvm", "nil"] });
  assert.equal(bestBackend(later), "sev");
  assert.equal(backend(later, "kvm").launchable, true);
});

Deno.test("SNP disabled in kvm_amd: the remedy reloads it with sev_snp=1", () => {
  const facts = snpHost();
  facts.parameters["kvm_amd/sev_snp"] = "N";
  facts.kvm.vmTypes = 0b01101;
  const info = evaluatePlatform(facts);
  const param = check(info, "sev.kvm-amd.sev-snp");
  assert.equal(param.status, "fail");
  assert.match(param.detail, /sev_snp = N/);
  assert.deepEqual(param.remedy?.commands, [
    "sudo modprobe -r kvm_amd",
    "sudo modprobe kvm_amd sev=1 sev_es=1 sev_snp=1",
  ]);
  assert.match(param.remedy?.note ?? "", /\/etc\/modprobe\.d\//);
  assert.equal(check(info, "sev.kvm.snp-vm-type").status, "skip");
  assert.equal(backend(info, "sev").usable, false);
  assert.equal(info.best.usable, "kvm");
});

Deno.test("device permission failures name the group and the user; root gets no sudo", () => {
  const facts = snpHost();
  facts.devices["/dev/kvm"] = { present: true, open: "EACCES", group: "kvm" };
  facts.devices["/dev/sev"] = { present: true, open: "EACCES", group: "root" };
  facts.kvm = { apiVersion: null, vmTypes: null, createVm: null };
  const info = evaluatePlatform(facts);
  const kvm = check(info, "kvm.device");
  assert.equal(kvm.errno, "EACCES");
  assert.deepEqual(kvm.remedy?.commands, ["sudo usermod -aG kvm alice"]);
  assert.equal(check(info, "kvm.api-version").status, "skip");
  const sev = check(info, "sev.psp.device");
  assert.deepEqual(sev.remedy?.commands, ["sudo setfacl -m u:alice:rw /dev/sev"]);

  facts.user = { name: "root", uid: 0, groups: ["root"] };
  facts.devices["/dev/sev"] = { present: false, open: "ENOENT", group: null };
  const asRoot = evaluatePlatform(facts);
  assert.deepEqual(check(asRoot, "sev.psp.device").remedy?.commands, ["modprobe ccp"]);
  assert.equal(check(asRoot, "sev.psp.device").errno, "ENOENT");
});

Deno.test("a firmware failure of SNP_PLATFORM_STATUS is reported with its errno", () => {
  const facts = snpHost();
  facts.sev = { ...facts.sev!, snpStatus: null, snpStatusError: "EIO (firmware INVALID_CONFIG)" };
  const c = check(evaluatePlatform(facts), "sev.psp.snp-status");
  assert.equal(c.status, "fail");
  assert.equal(c.errno, "EIO");
  assert.match(c.detail, /INVALID_CONFIG/);
});

Deno.test("a TDX host and an SGX host", () => {
  const tdx = snpHost();
  tdx.cpu = {
    vendor: "GenuineIntel",
    modelName: "Intel(R) Xeon(R) Platinum 8480+",
    family: 6,
    model: 143,
    flags: ["vmx", "tdx_host_platform", "sgx", "sgx_lc"],
  };
  tdx.kernelRelease = "6.16.0";
  tdx.modules = ["kvm", "kvm_intel"];
  tdx.parameters = { ...tdx.parameters, "kvm_intel/tdx": "N", "kvm_amd/sev_snp": null };
  tdx.kvm.vmTypes = 0b1;
  tdx.devices["/dev/sgx_enclave"] = { present: true, open: "ok", group: "sgx" };
  tdx.devices["/dev/sgx_provision"] = { present: true, open: "EACCES", group: "sgx_prv" };
  let info = evaluatePlatform(tdx);
  assert.equal(backend(info, "sev").usable, false);
  assert.equal(check(info, "sev.cpu.amd").status, "fail");
  assert.deepEqual(check(info, "tdx.kvm-intel.tdx").remedy?.commands, [
    "sudo modprobe -r kvm_intel",
    "sudo modprobe kvm_intel tdx=1",
  ]);
  assert.deepEqual(check(info, "sgx.provision-device").remedy?.commands, [
    "sudo usermod -aG sgx_prv alice",
  ]);
  assert.equal(backend(info, "sgx").usable, false);

  tdx.parameters["kvm_intel/tdx"] = "Y";
  tdx.kvm.vmTypes = 0b100001;
  tdx.devices["/dev/sgx_provision"] = { present: true, open: "ok", group: "sgx_prv" };
  info = evaluatePlatform(tdx);
  assert.equal(backend(info, "tdx").usable, true);
  assert.equal(backend(info, "sgx").usable, true, "the optional AESM check does not block");
  assert.equal(check(info, "sgx.aesm").status, "fail");
  assert.equal(info.best.usable, "tdx");
});

Deno.test("inside an SNP guest the guest interfaces are found, preferring /dev/sev-guest", () => {
  const facts = snpHost();
  facts.cpu.flags = ["hypervisor", "sev", "sev_es", "sev_snp"];
  facts.devices["/dev/sev-guest"] = { present: true, open: "ok", group: "root" };
  facts.configfs = { mounted: true, tsmReport: true };
  const info = evaluatePlatform(facts);
  assert.equal(info.system.virtualMachine, true);
  assert.equal(info.guest.interfaces.find((g) => g.name === "sev-guest")?.usable, true);
  assert.equal(info.guest.interfaces.find((g) => g.name === "tsm")?.usable, true);
  assert.equal(info.guest.preferred, "sev-guest");
  // A guest cannot host sev keeps: the kvm_amd checks are about the host.
  facts.devices["/dev/sev-guest"] = { present: false, open: "ENOENT", group: null };
  facts.configfs = { mounted: false, tsmReport: false };
  const missing = evaluatePlatform(facts);
  assert.deepEqual(check(missing, "guest.sev-guest.device").remedy?.commands, [
    "sudo modprobe sev-guest",
  ]);
  assert.deepEqual(check(missing, "guest.tsm.configfs").remedy?.commands, [
    "sudo mount -t configfs none /sys/kernel/config",
  ]);
  assert.equal(missing.guest.preferred, null);
});

Deno.test("platform info says what isolates a keep: nil is an OS process, kvm is TCG unless KVM is configured", () => {
  const tcg = evaluatePlatform(snpHost());
  const nil = tcg.backends.find((b) => b.name === "nil")!;
  assert.match(nil.description, /OS process/);
  assert.match(nil.description, /FFI .*voids Deno's sandbox/);
  assert.doesNotMatch(nil.description, /sandboxed/);
  assert.doesNotMatch(nil.checks.map((c) => c.title).join("\n"), /sandboxed local/);
  const kvm = tcg.backends.find((b) => b.name === "kvm")!;
  assert.match(kvm.description, /emulated \(TCG\) unless ENARX_KVM_ACCEL=kvm/);
  assert.doesNotMatch(kvm.description, /hardware virtualisation/);
  const accel = check(tcg, "kvm.accel");
  assert.equal(accel.status, "fail");
  assert.equal(accel.required, false, "TCG keeps still run: a warning, not a failure");
  assert.match(accel.detail, /TCG \(emulation/);
  assert.equal(kvm.usable, true);
  const accelerated = evaluatePlatform({ ...snpHost(), kvmAccel: "kvm" });
  assert.equal(check(accelerated, "kvm.accel").status, "pass");
  assert.match(check(accelerated, "kvm.accel").detail, /KVM \(hardware virtualisation\)/);
});
