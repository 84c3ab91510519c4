/**
 * Probes the machine's real /dev/kvm through ffi/kvm.ts: API version,
 * extensions, VM types and VM creation. Our machines have /dev/kvm; where it
 * is missing, the test says so and fails rather than passing silently.
 */
import assert from "node:assert/strict";
import {
  KVM_API_VERSION,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_VM_TYPES,
  KVM_X86_DEFAULT_VM,
  KVM_X86_TDX_VM,
  KvmSystem,
} from "../ffi/kvm.ts";
import { SyscallError } from "../ffi/libc.ts";

function kernelAtLeast(major: number, minor: number): boolean {
  const [a, b] = Deno.osRelease().split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}

Deno.test("/dev/kvm reports API version 12", () => {
  using kvm = KvmSystem.open();
  assert.equal(kvm.apiVersion(), KVM_API_VERSION);
});

Deno.test("KVM_CHECK_EXTENSION answers for basic capabilities", () => {
  using kvm = KvmSystem.open();
  assert.equal(kvm.checkExtension(KVM_CAP_USER_MEMORY), 1);
  const recommended = kvm.checkExtension(KVM_CAP_NR_VCPUS);
  const max = kvm.checkExtension(KVM_CAP_MAX_VCPUS);
  assert.ok(recommended >= 1, `KVM_CAP_NR_VCPUS = ${recommended}`);
  assert.ok(max >= recommended, `KVM_CAP_MAX_VCPUS ${max} < NR_VCPUS ${recommended}`);
  // An unknown capability is simply unsupported, not an error.
  assert.equal(kvm.checkExtension(0x7fff_0000), 0);
  assert.ok(kvm.vcpuMmapSize() >= 4096);
});

Deno.test("KVM_CAP_VM_TYPES includes the default VM type on kernels >= 6.8", () => {
  using kvm = KvmSystem.open();
  const types = kvm.checkExtension(KVM_CAP_VM_TYPES);
  if (!kernelAtLeast(6, 8)) {
    assert.equal(types, 0, "kernels before 6.8 do not know KVM_CAP_VM_TYPES");
    return;
  }
  assert.equal(types & (1 << KVM_X86_DEFAULT_VM), 1, `VM types mask 0x${types.toString(16)}`);
  // Types are bits 0..5 today; a set bit above TDX would mean a wrong capability number.
  assert.equal(types >> (KVM_X86_TDX_VM + 1), 0, `VM types mask 0x${types.toString(16)}`);
});

Deno.test("KVM_CREATE_VM creates a VM with a vCPU, and closing releases it", () => {
  using kvm = KvmSystem.open();
  for (let i = 0; i < 3; i++) {
    using vm = kvm.createVm({ type: KVM_X86_DEFAULT_VM });
    assert.equal(vm.type, KVM_X86_DEFAULT_VM);
    assert.equal(vm.checkExtension(KVM_CAP_USER_MEMORY), 1);
    using vcpu = vm.createVcpu(0);
    assert.ok(vcpu.fd >= 0);
    // vCPU ids are unique per VM.
    try {
      vm.createVcpu(0);
      assert.fail("second vCPU 0 was created");
    } catch (e) {
      assert.ok(e instanceof SyscallError);
      assert.equal(e.code, "EEXIST");
    }
  }
});

Deno.test("KVM_CREATE_VM with an unsupported type fails with EINVAL", () => {
  using kvm = KvmSystem.open();
  const types = kvm.checkExtension(KVM_CAP_VM_TYPES);
  // Pick a type this KVM does not offer: SNP or TDX on a machine without them, else 31.
  const type = [4, 5, 31].find((t) => (types & (1 << t)) === 0)!;
  try {
    using _vm = kvm.createVm({ type });
    assert.fail(`VM type ${type} was accepted`);
  } catch (e) {
    assert.ok(e instanceof SyscallError, String(e));
    assert.equal(e.code, "EINVAL");
    assert.equal(e.syscall, "ioctl(KVM_CREATE_VM)");
  }
});
