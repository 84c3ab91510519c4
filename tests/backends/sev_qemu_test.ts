/**
 * The QEMU command line of a sev keep (runtime/backends/sev/sev_qemu.ts), one
 * element at a time, and the helpers beside it: QEMU's version, the C-bit
 * from CPUID, what a failed SNP launch means.
 */
import assert from "node:assert/strict";
import { hostfwdCommand } from "../../runtime/backends/vm/user_net.ts";
import {
  explainSnpFailure,
  parseQemuVersion,
  qemuSupportsSnp,
  SEV_MIN_QEMU,
  sevQemuArgs,
  type SevQemuOptions,
  SNP_DEFAULT_POLICY,
  snpAddressBits,
} from "../../runtime/backends/sev/sev_qemu.ts";

const BASE: SevQemuOptions = {
  ovmf: "/c/ovmf-amdsev/OVMF.fd",
  kernel: "/c/vmlinuz",
  initrd: "/c/initrd.cpio",
  append: "console=ttyS0 quiet panic=-1",
  baseDisk: "/c/base.img",
  memoryMiB: 2048,
  vcpus: 2,
  vcpuType: "EPYC-Milan",
  snp: { cbitpos: 51, reducedPhysBits: 1 },
  accel: "kvm",
  consoleLog: "/w/console.log",
  framesSocket: "/w/frames.sock",
  qmpSocket: "/w/qmp.sock",
  hostPort: 40123,
  guestPort: 8443,
};

/** The value following `flag`, for flags given once. */
function value(args: string[], flag: string): string {
  const all = values(args, flag);
  assert.equal(all.length, 1, `${flag} given ${all.length} times`);
  return all[0];
}

/** Every value following `flag`. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
}

Deno.test("sev qemu: q35 whose confidential guest support is sev0, memory from ram1", () => {
  const args = sevQemuArgs(BASE);
  assert.equal(value(args, "-machine"), "q35,confidential-guest-support=sev0,memory-backend=ram1");
  assert.equal(value(args, "-accel"), "kvm");
  assert.equal(value(args, "-cpu"), "EPYC-Milan");
  assert.equal(value(args, "-smp"), "2");
  assert.equal(value(args, "-m"), "2048M");
});

Deno.test("sev qemu: a shareable memfd backend the size of guest memory, not preallocated", () => {
  const objects = values(sevQemuArgs(BASE), "-object");
  assert.equal(objects[0], "memory-backend-memfd,id=ram1,size=2048M,share=true,prealloc=false");
});

Deno.test("sev qemu: the sev-snp-guest object with cbitpos, reduced-phys-bits, policy, kernel-hashes", () => {
  const objects = values(sevQemuArgs(BASE), "-object");
  assert.equal(objects.length, 2);
  assert.equal(
    objects[1],
    "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on",
  );
  assert.equal(SNP_DEFAULT_POLICY, 0x30000);
  const custom = sevQemuArgs({
    ...BASE,
    snp: { cbitpos: 47, reducedPhysBits: 5, policy: 0xb0000 },
  });
  assert.match(values(custom, "-object")[1], /cbitpos=47,reduced-phys-bits=5,policy=0xb0000,/);
});

Deno.test("sev qemu: the AmdSev OVMF as -bios and the keep image as kernel, initrd, append", () => {
  const args = sevQemuArgs(BASE);
  assert.equal(value(args, "-bios"), "/c/ovmf-amdsev/OVMF.fd");
  assert.equal(value(args, "-kernel"), "/c/vmlinuz");
  assert.equal(value(args, "-initrd"), "/c/initrd.cpio");
  assert.equal(value(args, "-append"), "console=ttyS0 quiet panic=-1");
  assert.equal(args.includes("-pflash"), false);
  // The one drive is the shared base disk, read-only on a virtio disk (no firmware flash).
  assert.equal(value(args, "-drive"), "file=/c/base.img,format=raw,if=none,id=base,readonly=on");
  assert.equal(value(args, "-device"), "virtio-blk-pci,drive=base");
});

Deno.test("sev qemu: console on ttyS0 to a file, frames on ttyS1 through a unix socket", () => {
  const args = sevQemuArgs(BASE);
  assert.deepEqual(values(args, "-serial"), ["file:/w/console.log", "chardev:frames"]);
  assert.equal(value(args, "-chardev"), "socket,id=frames,path=/w/frames.sock,server=on,wait=off");
  for (const flag of ["-nodefaults", "-no-user-config", "-no-reboot"]) {
    assert.ok(args.includes(flag), flag);
  }
  assert.equal(value(args, "-display"), "none");
});

Deno.test("sev qemu: wasmldr's port forwarded from a host loopback port over user networking", () => {
  const args = sevQemuArgs(BASE);
  // The netdev id is the one keepldr's hostfwd_add names for the workload's services.
  assert.equal(
    value(args, "-nic"),
    "user,id=net0,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:40123-:8443",
  );
  assert.equal(value(args, "-qmp"), "unix:/w/qmp.sock,server=on,wait=off");
  assert.equal(hostfwdCommand(41000, 35123), "hostfwd_add net0 tcp:127.0.0.1:41000-:35123");
});

Deno.test("sev qemu: without snp, plain q35 (TCG) with the same firmware and image", () => {
  const args = sevQemuArgs({ ...BASE, snp: undefined, accel: "tcg", vcpuType: "EPYC-Milan" });
  assert.equal(value(args, "-machine"), "q35");
  assert.equal(value(args, "-accel"), "tcg");
  assert.deepEqual(values(args, "-object"), []);
  assert.deepEqual(values(args, "-device"), ["virtio-blk-pci,drive=base"]);
  assert.equal(value(args, "-bios"), BASE.ovmf);
  assert.equal(value(args, "-kernel"), BASE.kernel);
  const hashes = { file: "/w/hashes.bin", gpa: 0x810000, cmdlineFile: "/w/cmdline" };
  const loaded = sevQemuArgs({ ...BASE, snp: undefined, hashes });
  assert.deepEqual(values(loaded, "-device"), [
    "loader,file=/w/hashes.bin,addr=0x810000,force-raw=on",
    "virtio-blk-pci,drive=base",
  ]);
  // The firmware's named blobs: QEMU serves the files unchanged there.
  assert.deepEqual(values(loaded, "-fw_cfg"), [
    "name=etc/boot/kernel,file=/c/vmlinuz",
    "name=etc/boot/initrd,file=/c/initrd.cpio",
    "name=etc/boot/cmdline,file=/w/cmdline",
  ]);
  for (const flag of ["-kernel", "-initrd", "-append"]) assert.equal(loaded.includes(flag), false);
  assert.throws(() => sevQemuArgs({ ...BASE, hashes }), RangeError);
});

Deno.test("sev qemu: the version from --version, and SNP from 9.1 on", () => {
  assert.deepEqual(
    parseQemuVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"),
    [7, 2, 22],
  );
  assert.deepEqual(parseQemuVersion("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1)"), [
    10,
    0,
    2,
  ]);
  assert.deepEqual(parseQemuVersion("QEMU emulator version 9.1"), [9, 1, 0]);
  assert.equal(parseQemuVersion("something else"), undefined);
  assert.deepEqual(SEV_MIN_QEMU, [9, 1]);
  assert.equal(qemuSupportsSnp([7, 2, 22]), false);
  assert.equal(qemuSupportsSnp([9, 0, 4]), false);
  assert.equal(qemuSupportsSnp([9, 1, 0]), true);
  assert.equal(qemuSupportsSnp([10, 0, 2]), true);
});

Deno.test("sev qemu: C-bit position and reduced physical bits from CPUID Fn8000_001F EBX", () => {
  // EBX[5:0] is the C-bit position, EBX[11:6] the physical address bits lost; the rest is ignored.
  assert.deepEqual(snpAddressBits(0x00000173), { cbitpos: 51, reducedPhysBits: 5 });
  assert.deepEqual(snpAddressBits(0x0000006f), { cbitpos: 47, reducedPhysBits: 1 });
  assert.deepEqual(snpAddressBits(0xfffff040 | 51), { cbitpos: 51, reducedPhysBits: 1 });
});

Deno.test("sev qemu: a failed SNP launch is explained by its first error line and what to check", () => {
  const old = explainSnpFailure(
    "qemu-system-x86_64: -object sev-snp-guest,id=sev0: invalid object type: sev-snp-guest\n",
  );
  assert.match(old.line, /invalid object type: sev-snp-guest/);
  assert.match(old.checks.join(" "), /QEMU >= 9\.1/);
  const kvm = explainSnpFailure(
    "qemu-system-x86_64: sev_snp_launch_start: SNP_LAUNCH_START ret=-22\n" +
      "qemu-system-x86_64: failed to initialize kvm: Invalid argument\n",
  );
  assert.match(kvm.checks.join(" "), /sev_snp=1/);
  const cbit = explainSnpFailure(
    "qemu-system-x86_64: sev_common_kvm_init: cbitpos check failed, host '51' requested '47'\n",
  );
  assert.match(cbit.line, /cbitpos check failed/);
  assert.match(cbit.checks.join(" "), /CPUID Fn8000_001F/);
  // QEMU 10.0's own lines on hosts without the hardware (captured here).
  const noSnp = explainSnpFailure(
    "qemu-system-x86_64: -accel kvm: vm-type SEV-SNP not supported by KVM\n",
  );
  assert.equal(noSnp.line, "qemu-system-x86_64: -accel kvm: vm-type SEV-SNP not supported by KVM");
  assert.deepEqual(noSnp.checks.length, 1);
  assert.match(noSnp.checks[0], /kvm_amd with sev_snp=1/);
  const noKvm = explainSnpFailure(
    "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: No such file or directory\n" +
      "qemu-system-x86_64: -accel kvm: failed to initialize kvm: No such file or directory\n",
  );
  assert.match(noKvm.checks.join(" "), /\/dev\/kvm is missing/);
  assert.doesNotMatch(noKvm.checks.join(" "), /sev_snp=1/);
  // QEMU's sev_common_kvm_init when it cannot open the firmware's device.
  const noPsp = explainSnpFailure(
    "qemu-system-x86_64: sev_common_kvm_init: Failed to open /dev/sev 'No such file or directory'\n",
  );
  assert.match(noPsp.checks.join(" "), /\/dev\/sev \(the AMD secure processor\) is missing/);
  const none = explainSnpFailure("");
  assert.equal(none.line, "QEMU exited without a message");
  assert.match(none.checks[0], /enarx platform info/);
});
