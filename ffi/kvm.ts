/**
 * `/dev/kvm` system and VM ioctls (Linux uapi `include/uapi/linux/kvm.h` and
 * `arch/x86/include/uapi/asm/kvm.h`): API version, extensions, VM types and
 * VM creation, enough to probe what the host's KVM can run.
 *
 * The machine's headers (Linux 6.1) predate KVM_CAP_VM_TYPES (Linux 6.8,
 * value 235) and the x86 VM type numbers (KVM_X86_DEFAULT_VM and
 * KVM_X86_SW_PROTECTED_VM in 6.8, KVM_X86_SEV_VM and KVM_X86_SEV_ES_VM in
 * 6.10, KVM_X86_SNP_VM in 6.11, KVM_X86_TDX_VM in 6.16; see
 * `Documentation/virt/kvm/api.rst`, "KVM_CAP_VM_TYPES"). They are taken from
 * upstream and checked against the headers when a newer copy defines them.
 *
 * @module
 */
import { io, iowr } from "./ioctl.ts";
import { FileDescriptor, O_RDWR } from "./libc.ts";
import { defineConstant, type UapiConstant } from "./struct_layout.ts";

const HEADER = { header: "linux/kvm.h", local: "yes" } as const;
const NEWER_KVM = {
  header: "linux/kvm.h",
  local: "if-defined",
  source: "upstream include/uapi/linux/kvm.h (Linux >= 6.8)",
} as const;
const NEWER_ASM = {
  header: "asm/kvm.h",
  local: "if-defined",
  source: "upstream arch/x86/include/uapi/asm/kvm.h (Linux >= 6.8, SNP 6.11, TDX 6.16)",
} as const;

/** The device node. */
export const KVM_DEVICE = "/dev/kvm";

/** The ioctl type of every KVM ioctl. */
export const KVMIO = 0xae;
/** The only KVM API version there has ever been in mainline. */
export const KVM_API_VERSION = 12;

/** `_IO(KVMIO, 0x00)`: returns the API version. */
export const KVM_GET_API_VERSION = io(KVMIO, 0x00);
/** `_IO(KVMIO, 0x01)`: takes the VM type, returns a VM file descriptor. */
export const KVM_CREATE_VM = io(KVMIO, 0x01);
/** `_IO(KVMIO, 0x03)`: takes a capability, returns 0 or a capability-specific value. */
export const KVM_CHECK_EXTENSION = io(KVMIO, 0x03);
/** `_IO(KVMIO, 0x04)`: the size of the shared `kvm_run` area. */
export const KVM_GET_VCPU_MMAP_SIZE = io(KVMIO, 0x04);
/** `_IO(KVMIO, 0x41)`: on a VM, takes a vCPU id, returns a vCPU file descriptor. */
export const KVM_CREATE_VCPU = io(KVMIO, 0x41);
/** `_IOWR(KVMIO, 0xba, unsigned long)`: SEV and SNP launch commands on a VM. */
export const KVM_MEMORY_ENCRYPT_OP = iowr(KVMIO, 0xba, { size: 8 });

/** Capability: user memory regions. */
export const KVM_CAP_USER_MEMORY = 3;
/** Capability: the recommended number of vCPUs. */
export const KVM_CAP_NR_VCPUS = 9;
/** Capability: the maximum number of vCPUs. */
export const KVM_CAP_MAX_VCPUS = 66;
/** Capability: guest_memfd (private memory for SNP and TDX guests). */
export const KVM_CAP_GUEST_MEMFD = 234;
/** Capability: a bit mask of the VM types KVM_CREATE_VM accepts. */
export const KVM_CAP_VM_TYPES = 235;

/** x86 VM type: an ordinary VM. */
export const KVM_X86_DEFAULT_VM = 0;
/** x86 VM type: software-protected VM (development only). */
export const KVM_X86_SW_PROTECTED_VM = 1;
/** x86 VM type: SEV guest. */
export const KVM_X86_SEV_VM = 2;
/** x86 VM type: SEV-ES guest. */
export const KVM_X86_SEV_ES_VM = 3;
/** x86 VM type: SEV-SNP guest. */
export const KVM_X86_SNP_VM = 4;
/** x86 VM type: TDX guest. */
export const KVM_X86_TDX_VM = 5;

/** The x86 VM types by name, in bit order of KVM_CAP_VM_TYPES. */
export const KVM_X86_VM_TYPES: Readonly<Record<string, number>> = Object.freeze({
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
});

/** Every constant above with its provenance, for the uapi test. */
export const KVM_CONSTANTS: readonly UapiConstant[] = [
  defineConstant("KVMIO", { value: KVMIO, source: HEADER }),
  defineConstant("KVM_API_VERSION", { value: KVM_API_VERSION, source: HEADER }),
  defineConstant("KVM_GET_API_VERSION", { value: KVM_GET_API_VERSION, source: HEADER }),
  defineConstant("KVM_CREATE_VM", { value: KVM_CREATE_VM, source: HEADER }),
  defineConstant("KVM_CHECK_EXTENSION", { value: KVM_CHECK_EXTENSION, source: HEADER }),
  defineConstant("KVM_GET_VCPU_MMAP_SIZE", { value: KVM_GET_VCPU_MMAP_SIZE, source: HEADER }),
  defineConstant("KVM_CREATE_VCPU", { value: KVM_CREATE_VCPU, source: HEADER }),
  defineConstant("KVM_MEMORY_ENCRYPT_OP", { value: KVM_MEMORY_ENCRYPT_OP, source: HEADER }),
  defineConstant("KVM_CAP_USER_MEMORY", { value: KVM_CAP_USER_MEMORY, source: HEADER }),
  defineConstant("KVM_CAP_NR_VCPUS", { value: KVM_CAP_NR_VCPUS, source: HEADER }),
  defineConstant("KVM_CAP_MAX_VCPUS", { value: KVM_CAP_MAX_VCPUS, source: HEADER }),
  defineConstant("KVM_CAP_GUEST_MEMFD", { value: KVM_CAP_GUEST_MEMFD, source: NEWER_KVM }),
  defineConstant("KVM_CAP_VM_TYPES", { value: KVM_CAP_VM_TYPES, source: NEWER_KVM }),
  ...Object.entries(KVM_X86_VM_TYPES).map(([name, value]) =>
    defineConstant(name, { value, source: NEWER_ASM })
  ),
];

/** A KVM virtual machine file descriptor. Close it to destroy the VM. */
export class KvmVm {
  readonly #fd: FileDescriptor;
  /** The VM type it was created with. */
  readonly type: number;

  /** Wraps a VM descriptor returned by KVM_CREATE_VM. */
  constructor(fd: FileDescriptor, type: number) {
    this.#fd = fd;
    this.type = type;
  }

  /** KVM_CHECK_EXTENSION on the VM (answers for this VM's type). */
  checkExtension(capability: number): number {
    return this.#fd.ioctl(KVM_CHECK_EXTENSION, capability, { name: "KVM_CHECK_EXTENSION" });
  }

  /** KVM_CREATE_VCPU: creates vCPU `id` and returns its descriptor (the caller closes it). */
  createVcpu(id: number): FileDescriptor {
    const fd = this.#fd.ioctl(KVM_CREATE_VCPU, id, { name: "KVM_CREATE_VCPU" });
    return FileDescriptor.adopt(fd, `${this.#fd.path} vcpu ${id}`);
  }

  /** Destroys the VM (once every vCPU descriptor is closed too). */
  close(): void {
    this.#fd.close();
  }

  /** Closes at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The KVM system device, `/dev/kvm`. */
export class KvmSystem {
  readonly #fd: FileDescriptor;

  private constructor(fd: FileDescriptor) {
    this.#fd = fd;
  }

  /** Opens `/dev/kvm` (or `path`) read-write; throws SyscallError. */
  static open(path: string = KVM_DEVICE): KvmSystem {
    return new KvmSystem(FileDescriptor.open(path, O_RDWR));
  }

  /** The device path. */
  get path(): string {
    return this.#fd.path;
  }

  /** KVM_GET_API_VERSION; 12 on every mainline kernel. */
  apiVersion(): number {
    return this.#fd.ioctl(KVM_GET_API_VERSION, 0, { name: "KVM_GET_API_VERSION" });
  }

  /** KVM_CHECK_EXTENSION: 0 when unsupported, else 1 or a capability-specific value. */
  checkExtension(capability: number): number {
    return this.#fd.ioctl(KVM_CHECK_EXTENSION, capability, { name: "KVM_CHECK_EXTENSION" });
  }

  /** KVM_GET_VCPU_MMAP_SIZE. */
  vcpuMmapSize(): number {
    return this.#fd.ioctl(KVM_GET_VCPU_MMAP_SIZE, 0, { name: "KVM_GET_VCPU_MMAP_SIZE" });
  }

  /** KVM_CREATE_VM with `type` (default KVM_X86_DEFAULT_VM); close the VM when done. */
  createVm(options: { type?: number } = {}): KvmVm {
    const type = options.type ?? KVM_X86_DEFAULT_VM;
    const fd = this.#fd.ioctl(KVM_CREATE_VM, type, { name: "KVM_CREATE_VM" });
    return new KvmVm(FileDescriptor.adopt(fd, `${this.#fd.path} vm`), type);
  }

  /** Closes the device. */
  close(): void {
    this.#fd.close();
  }

  /** Closes at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}
