/**
 * Launching sev keeps on a host without the hardware
 * (runtime/backends/sev/sev_launch.ts): every missing piece is named (exit 69),
 * in the error and in `platform info`; the full SNP command line given to
 * this host's QEMU fails and is reported as exit 69 with what to check; and
 * the AmdSev OVMF of tools/build_ovmf.sh boots the keep kernel and initrd to
 * wasmldr's ready line on q35 under TCG without SNP, with the kernel hashes
 * table that QEMU's `kernel-hashes=on` would have written loaded in its place;
 * that keep's QEMU then forwards a host port for a service through its QMP socket.
 */
import assert from "node:assert/strict";
import { backendByName } from "../../runtime/backends/mod.ts";
import { buildKvmImage, findKvmKernel, READY_MARKER } from "../../runtime/backends/kvm_image.ts";
import { findQemu, kvmLaunchable } from "../../runtime/backends/kvm.ts";
import {
  bootSevKeep,
  missingPiecesError,
  READY_MARKER as SEV_READY_MARKER,
  SEV_APPEND,
  sevOvmfPath,
  type SevPiece,
  sevPieces,
} from "../../runtime/backends/sev/sev_launch.ts";
import {
  parseQemuVersion,
  qemuSupportsSnp,
  SEV_MIN_QEMU,
} from "../../runtime/backends/sev/sev_qemu.ts";
import { parseOvmf, sevHashesPage, sevHashTable } from "../../runtime/measure/mod.ts";
import { evaluatePlatform, probePlatform } from "../../runtime/platform/info.ts";
import { gatherHostFacts } from "../../runtime/platform/host_facts.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { fileExists, requires } from "../_requires.ts";

const IMAGE_CACHE = new URL("../../.cache/kvm-image", import.meta.url).pathname;

/** Whether this host really has every piece (then the negative tests do not apply). */
const SNP_HOST = sevPieces().every((p) => p.ok);

Deno.test("sev launch: the guest's ready line is kvm_image's", () => {
  assert.equal(SEV_READY_MARKER, READY_MARKER);
});

Deno.test({
  name: "sev launch: without the hardware, exit 69 naming each missing piece",
  ignore: SNP_HOST,
  fn: async () => {
    const sev = backendByName("sev")!;
    assert.equal(sev.launches, true);
    assert.equal(sev.launchable(gatherHostFacts()), false);
    const missing = sevPieces().filter((p) => !p.ok).map((p) => p.name);
    assert.ok(missing.includes("kvm_amd sev_snp=1"), missing.join(", "));
    assert.ok(missing.includes("/dev/sev (SEV firmware)"), missing.join(", "));
    await assert.rejects(
      () => sev.launch({ log: () => {} }),
      (e: unknown) => {
        assert.ok(e instanceof EnarxError);
        assert.equal(e.exitStatus, 69);
        assert.equal(e.code, "backend-unavailable");
        assert.match(e.message, /^Cannot launch a sev keep: missing /);
        for (const name of missing) assert.ok(e.message.includes(name), name);
        return true;
      },
    );
  },
});

Deno.test("sev launch: the missing-pieces error lists each piece with its fix", () => {
  const pieces: SevPiece[] = [
    { name: "QEMU >= 9.1", ok: false, detail: "/usr/bin/q: 7.2.22", fix: "install QEMU 10" },
    { name: "OVMF (AmdSev build)", ok: true, detail: "/x/OVMF.fd", fix: "run it" },
    { name: "kvm_amd sev_snp=1", ok: false, detail: "sev_snp=N", fix: "modprobe" },
  ];
  const error = missingPiecesError(pieces)!;
  assert.equal(error.exitStatus, 69);
  assert.equal(
    error.message,
    "Cannot launch a sev keep: missing QEMU >= 9.1, kvm_amd sev_snp=1. " +
      "QEMU >= 9.1: /usr/bin/q: 7.2.22; install QEMU 10. kvm_amd sev_snp=1: sev_snp=N; modprobe",
  );
  assert.equal(missingPiecesError(pieces.map((p) => ({ ...p, ok: true }))), undefined);
});

Deno.test("sev launch: platform info names each piece a sev keep's launch needs", () => {
  const facts = gatherHostFacts();
  const pieces: SevPiece[] = [
    { name: "QEMU >= 9.1", ok: false, detail: "7.2.22", fix: "install QEMU >= 9.1" },
    { name: "OVMF (AmdSev build)", ok: false, detail: "missing", fix: "run tools/build_ovmf.sh" },
    { name: "keep kernel", ok: true, detail: "/k/vmlinuz", fix: "" },
    { name: "kvm_amd sev_snp=1", ok: false, detail: "not loaded", fix: "modprobe" },
  ];
  const sev = evaluatePlatform({ ...facts, sevLaunch: pieces }).backends.find((b) =>
    b.name === "sev"
  )!;
  const launch = sev.checks.filter((c) => c.id.startsWith("sev.launch."));
  assert.deepEqual(launch.map((c) => [c.id, c.status]), [
    ["sev.launch.qemu-9-1", "fail"],
    ["sev.launch.ovmf-amdsev-build", "fail"],
    ["sev.launch.keep-kernel", "pass"],
    ["sev.launch.kvm-amd-sev-snp-1", "fail"],
  ]);
  assert.equal(launch[1].remedy?.note, "run tools/build_ovmf.sh");
  assert.equal(sev.usable, false);
  // Facts that do not describe the launch (a made-up host) add no such checks.
  const bare = evaluatePlatform({ ...facts, sevLaunch: undefined }).backends.find((b) =>
    b.name === "sev"
  )!;
  assert.equal(bare.checks.some((c) => c.id.startsWith("sev.launch.")), false);
  // This host: every piece is listed.
  const here = probePlatform().backends.find((b) => b.name === "sev")!;
  assert.equal(
    here.checks.filter((c) => c.id.startsWith("sev.launch.")).length,
    sevPieces().length,
  );
});

/** The version of QEMU on PATH, when it has one. */
function pathQemuVersion(): number[] | undefined {
  const qemu = findQemu();
  if (qemu === undefined) return undefined;
  const out = new Deno.Command(qemu, { args: ["--version"], stdout: "piped" }).outputSync();
  return parseQemuVersion(new TextDecoder().decode(out.stdout));
}

const SNP_QEMU = {
  tool: `QEMU >= ${SEV_MIN_QEMU.join(".")} (qemu-system-x86_64)`,
  present: (() => {
    const version = pathQemuVersion();
    return version !== undefined && qemuSupportsSnp(version);
  })(),
  remedy:
    "tools/qemu_backports.sh installs QEMU 10 from bookworm-backports (tools/test.sh runs it)",
};

/**
 * Gives the full SNP command line to `qemu` (a real QEMU, or a wrapper
 * that runs it) and returns the error of its failure.
 */
async function failedSnpBoot(qemu: string, workDir: string): Promise<EnarxError> {
  const ovmf = fileExists(sevOvmfPath()) ? sevOvmfPath() : "/usr/share/ovmf/OVMF.fd";
  const kernel = `${workDir}/vmlinuz`;
  const initrd = `${workDir}/initrd`;
  await Deno.writeFile(kernel, new Uint8Array(4096));
  await Deno.writeFile(initrd, new Uint8Array(4096));
  await Deno.writeFile(`${workDir}/base.img`, new Uint8Array(4096));
  let caught: unknown;
  await assert.rejects(
    () =>
      bootSevKeep({
        qemu,
        workDir,
        ovmf,
        kernel,
        initrd,
        append: SEV_APPEND,
        baseDisk: `${workDir}/base.img`,
        memoryMiB: 512,
        vcpus: 1,
        vcpuType: "EPYC-Milan",
        snp: { cbitpos: 51, reducedPhysBits: 1 },
        accel: "kvm",
        guestPort: 8443,
      }),
    (e: unknown) => {
      caught = e;
      return true;
    },
  );
  assert.ok(caught instanceof EnarxError, String(caught));
  assert.equal(caught.exitStatus, 69);
  assert.equal(caught.code, "backend-unavailable");
  assert.match(caught.message, /^QEMU could not start the SEV-SNP guest: qemu-system-x86_64: /);
  assert.doesNotMatch(caught.message, /\n/);
  console.log(caught.message);
  return caught;
}

Deno.test({
  name:
    "sev launch: QEMU 10 given the full SNP command line on a KVM without SNP: exit 69, sev_snp=1",
  ...requires(SNP_QEMU, async () => {
    if (SNP_HOST) return console.log("this host has every piece: its QEMU would start the guest");
    const workDir = await Deno.makeTempDir({ prefix: "enarx-sev-" });
    try {
      const error = await failedSnpBoot(findQemu()!, workDir);
      // This QEMU knows sev-snp-guest: what fails is KVM, which offers no SNP VM type here.
      assert.match(error.message, /vm-type SEV-SNP not supported by KVM/);
      assert.match(error.message, /Check: KVM refused the SNP guest: load kvm_amd with sev_snp=1/);
      assert.doesNotMatch(error.message, /use QEMU >= /);
    } finally {
      await Deno.remove(workDir, { recursive: true });
    }
  }),
});

const UNSHARE = ["/usr/bin/unshare", "/bin/unshare"].find(fileExists);

Deno.test({
  name: "sev launch: QEMU 10 given the full SNP command line without /dev/kvm: exit 69, /dev/kvm",
  ...requires({
    tool: `${SNP_QEMU.tool}, root and unshare (util-linux)`,
    present: SNP_QEMU.present && Deno.uid() === 0 && UNSHARE !== undefined,
    remedy: `${SNP_QEMU.remedy}; run the tests as root`,
  }, async () => {
    const workDir = await Deno.makeTempDir({ prefix: "enarx-sev-" });
    try {
      // The real QEMU in a mount namespace whose /dev holds only /dev/null (QEMU's file
      // locking of the base disk probes with it): a host without KVM.
      const wrapper = `${workDir}/qemu-without-kvm`;
      await Deno.writeTextFile(
        wrapper,
        `#!/bin/sh\nexec ${UNSHARE} --mount sh -c 'mount -t tmpfs none /dev && ` +
          `mknod -m 666 /dev/null c 1 3 && exec "$0" "$@"' ${findQemu()} "$@"\n`,
      );
      await Deno.chmod(wrapper, 0o755);
      const error = await failedSnpBoot(wrapper, workDir);
      assert.match(error.message, /Could not access KVM kernel module: No such file or directory/);
      assert.match(error.message, /Check: \/dev\/kvm is missing or not usable by this user/);
    } finally {
      await Deno.remove(workDir, { recursive: true });
    }
  }),
});

/** Writes the hashes page of `image` for `ovmf` and says where it goes. */
async function hashesPage(
  ovmf: string,
  image: { kernel: string; initrd: string },
  append: string,
  file: string,
): Promise<{ file: string; gpa: number; cmdlineFile: string }> {
  const area = parseOvmf(await Deno.readFile(ovmf)).sevHashTable;
  assert.ok(area !== undefined, `${ovmf} declares no kernel hashes table: not an AmdSev build`);
  const table = sevHashTable({
    kernel: await Deno.readFile(image.kernel),
    initrd: await Deno.readFile(image.initrd),
    append,
  });
  await Deno.writeFile(file, sevHashesPage(table, area.gpa & 0xfff));
  const cmdlineFile = `${file}.cmdline`;
  await Deno.writeFile(cmdlineFile, new TextEncoder().encode(`${append}\0`));
  return { file, gpa: area.gpa & ~0xfff, cmdlineFile };
}

/**
 * Boots the keep image from the AmdSev OVMF under TCG without SNP, with a
 * hashes table made for the image's command line followed by `hashedExtra`,
 * and says whether the guest reached its ready line within `waitMs`.
 */
async function bootWithHashes(hashedExtra: string, waitMs: number): Promise<boolean> {
  const workDir = await Deno.makeTempDir({ prefix: "enarx-sev-" });
  const image = await buildKvmImage({
    cacheDir: IMAGE_CACHE,
    kernel: findKvmKernel(),
  });
  const hashedAppend = `${image.append}${hashedExtra}`;
  const hashes = await hashesPage(sevOvmfPath(), image, hashedAppend, `${workDir}/hashes.bin`);
  // The command line the guest gets is always the image's.
  await Deno.writeFile(hashes.cmdlineFile, new TextEncoder().encode(`${image.append}\0`));
  const started = performance.now();
  try {
    const keep = await bootSevKeep({
      qemu: findQemu()!,
      workDir,
      ovmf: sevOvmfPath(),
      kernel: image.kernel,
      initrd: image.initrd,
      append: image.append,
      baseDisk: image.base.path,
      memoryMiB: 1024,
      vcpus: 1,
      vcpuType: "max", // TCG lacks EPYC-Milan's features; the CPU model is not the firmware path
      accel: "tcg",
      guestPort: 8443,
      hashes,
      readyTimeoutMs: waitMs,
    }).catch((error) => {
      // Not reaching the ready line in time is the one expected failure.
      assert.ok(error instanceof EnarxError, String(error));
      assert.match(error.message, /wrote no ready line within/);
      return undefined;
    });
    if (keep === undefined) return false;
    console.log(`AmdSev OVMF to wasmldr (TCG): ${(performance.now() - started).toFixed(0)} ms`);
    // A workload's services get their forwards through the keep's QMP socket, as a kvm keep's.
    const [hostPort] = await keep.forwardGuestPorts([35001]);
    assert.throws(
      () => Deno.listen({ hostname: "127.0.0.1", port: hostPort }),
      Deno.errors.AddrInUse,
    );
    keep.kill("SIGKILL");
    await keep.status;
    return true;
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
}

const OVMF_AND_KEEP = {
  tool: "the AmdSev OVMF, QEMU and the keep kernel",
  present: fileExists(sevOvmfPath()) && kvmLaunchable(),
  remedy: "tools/build_ovmf.sh builds the OVMF; tools/test.sh installs QEMU and the kernel",
};

Deno.test({
  name:
    "sev launch: the AmdSev OVMF boots the keep kernel and initrd to wasmldr under TCG (no SNP)",
  ...requires(OVMF_AND_KEEP, async () => {
    assert.ok(await bootWithHashes("", 180_000), "the guest never became ready");
  }),
});

Deno.test({
  name: "sev launch: the AmdSev OVMF refuses a command line whose hash is not the table's",
  ...requires(OVMF_AND_KEEP, async () => {
    assert.equal(await bootWithHashes(" init=/bin/sh", 40_000), false);
  }),
});
