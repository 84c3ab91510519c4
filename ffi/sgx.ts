/**
 * The in-kernel SGX driver's ioctls (Linux uapi
 * `arch/x86/include/uapi/asm/sgx.h`, installed as `asm/sgx.h`) and device
 * nodes. Only numbers and layouts: launching enclaves is future work, but
 * the platform checks open the devices and the uapi test keeps these honest.
 *
 * @module
 */
import { io, iow, iowr } from "./ioctl.ts";
import {
  defineConstant,
  defineStruct,
  type StructLayout,
  type UapiConstant,
} from "./struct_layout.ts";

const HEADER = { header: "asm/sgx.h", local: "yes" } as const;

/** The enclave device (Linux >= 5.11); opening it is how enclaves are built. */
export const SGX_ENCLAVE_DEVICE = "/dev/sgx_enclave";
/** The provisioning device: lets an enclave set PROVISIONKEY (needed by the DCAP quoting enclave). */
export const SGX_PROVISION_DEVICE = "/dev/sgx_provision";
/** The virtual EPC device, for giving SGX to KVM guests. */
export const SGX_VEPC_DEVICE = "/dev/sgx_vepc";

/** The ioctl type of the SGX driver. */
export const SGX_MAGIC = 0xa4;

/** `struct sgx_enclave_create`: address of the SECS page. */
export const SGX_ENCLAVE_CREATE_ARG = defineStruct("sgx_enclave_create", {
  size: 8,
  fields: { src: [0, 8] },
  source: HEADER,
});
/** `struct sgx_enclave_add_pages`. */
export const SGX_ENCLAVE_ADD_PAGES_ARG = defineStruct("sgx_enclave_add_pages", {
  size: 48,
  fields: {
    src: [0, 8],
    offset: [8, 8],
    length: [16, 8],
    secinfo: [24, 8],
    flags: [32, 8],
    count: [40, 8],
  },
  source: HEADER,
});
/** `struct sgx_enclave_init`: address of the SIGSTRUCT. */
export const SGX_ENCLAVE_INIT_ARG = defineStruct("sgx_enclave_init", {
  size: 8,
  fields: { sigstruct: [0, 8] },
  source: HEADER,
});
/** `struct sgx_enclave_provision`: an open `/dev/sgx_provision` descriptor. */
export const SGX_ENCLAVE_PROVISION_ARG = defineStruct("sgx_enclave_provision", {
  size: 8,
  fields: { fd: [0, 8] },
  source: HEADER,
});
/** `struct sgx_enclave_restrict_permissions` (SGX2). */
export const SGX_ENCLAVE_RESTRICT_PERMISSIONS_ARG = defineStruct(
  "sgx_enclave_restrict_permissions",
  {
    size: 40,
    fields: {
      offset: [0, 8],
      length: [8, 8],
      permissions: [16, 8],
      result: [24, 8],
      count: [32, 8],
    },
    source: HEADER,
  },
);
/** `struct sgx_enclave_modify_types` (SGX2). */
export const SGX_ENCLAVE_MODIFY_TYPES_ARG = defineStruct("sgx_enclave_modify_types", {
  size: 40,
  fields: { offset: [0, 8], length: [8, 8], page_type: [16, 8], result: [24, 8], count: [32, 8] },
  source: HEADER,
});
/** `struct sgx_enclave_remove_pages` (SGX2). */
export const SGX_ENCLAVE_REMOVE_PAGES_ARG = defineStruct("sgx_enclave_remove_pages", {
  size: 24,
  fields: { offset: [0, 8], length: [8, 8], count: [16, 8] },
  source: HEADER,
});
/** `struct sgx_enclave_run`: the vDSO `__vdso_sgx_enter_enclave` context. */
export const SGX_ENCLAVE_RUN = defineStruct("sgx_enclave_run", {
  size: 256,
  fields: {
    tcs: [0, 8],
    function: [8, 4],
    exception_vector: [12, 2],
    exception_error_code: [14, 2],
    exception_addr: [16, 8],
    user_handler: [24, 8],
    user_data: [32, 8],
    reserved: [40, 216],
  },
  source: HEADER,
});

/** `_IOW(SGX_MAGIC, 0x00, struct sgx_enclave_create)`. */
export const SGX_IOC_ENCLAVE_CREATE = iow(SGX_MAGIC, 0x00, { size: SGX_ENCLAVE_CREATE_ARG.size });
/** `_IOWR(SGX_MAGIC, 0x01, struct sgx_enclave_add_pages)`. */
export const SGX_IOC_ENCLAVE_ADD_PAGES = iowr(SGX_MAGIC, 0x01, {
  size: SGX_ENCLAVE_ADD_PAGES_ARG.size,
});
/** `_IOW(SGX_MAGIC, 0x02, struct sgx_enclave_init)`. */
export const SGX_IOC_ENCLAVE_INIT = iow(SGX_MAGIC, 0x02, { size: SGX_ENCLAVE_INIT_ARG.size });
/** `_IOW(SGX_MAGIC, 0x03, struct sgx_enclave_provision)`. */
export const SGX_IOC_ENCLAVE_PROVISION = iow(SGX_MAGIC, 0x03, {
  size: SGX_ENCLAVE_PROVISION_ARG.size,
});
/** `_IO(SGX_MAGIC, 0x04)`: on `/dev/sgx_vepc`. */
export const SGX_IOC_VEPC_REMOVE_ALL = io(SGX_MAGIC, 0x04);
/** `_IOWR(SGX_MAGIC, 0x05, struct sgx_enclave_restrict_permissions)`. */
export const SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS = iowr(SGX_MAGIC, 0x05, {
  size: SGX_ENCLAVE_RESTRICT_PERMISSIONS_ARG.size,
});
/** `_IOWR(SGX_MAGIC, 0x06, struct sgx_enclave_modify_types)`. */
export const SGX_IOC_ENCLAVE_MODIFY_TYPES = iowr(SGX_MAGIC, 0x06, {
  size: SGX_ENCLAVE_MODIFY_TYPES_ARG.size,
});
/** `_IOWR(SGX_MAGIC, 0x07, struct sgx_enclave_remove_pages)`. */
export const SGX_IOC_ENCLAVE_REMOVE_PAGES = iowr(SGX_MAGIC, 0x07, {
  size: SGX_ENCLAVE_REMOVE_PAGES_ARG.size,
});

/** Every constant above with its provenance, for the uapi test. */
export const SGX_CONSTANTS: readonly UapiConstant[] = [
  defineConstant("SGX_MAGIC", { value: SGX_MAGIC, source: HEADER }),
  defineConstant("SGX_IOC_ENCLAVE_CREATE", { value: SGX_IOC_ENCLAVE_CREATE, source: HEADER }),
  defineConstant("SGX_IOC_ENCLAVE_ADD_PAGES", { value: SGX_IOC_ENCLAVE_ADD_PAGES, source: HEADER }),
  defineConstant("SGX_IOC_ENCLAVE_INIT", { value: SGX_IOC_ENCLAVE_INIT, source: HEADER }),
  defineConstant("SGX_IOC_ENCLAVE_PROVISION", { value: SGX_IOC_ENCLAVE_PROVISION, source: HEADER }),
  defineConstant("SGX_IOC_VEPC_REMOVE_ALL", { value: SGX_IOC_VEPC_REMOVE_ALL, source: HEADER }),
  defineConstant("SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS", {
    value: SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    source: HEADER,
  }),
  defineConstant("SGX_IOC_ENCLAVE_MODIFY_TYPES", {
    value: SGX_IOC_ENCLAVE_MODIFY_TYPES,
    source: HEADER,
  }),
  defineConstant("SGX_IOC_ENCLAVE_REMOVE_PAGES", {
    value: SGX_IOC_ENCLAVE_REMOVE_PAGES,
    source: HEADER,
  }),
];

/** Every structure above, for the uapi test. */
export const SGX_STRUCTS: readonly StructLayout[] = [
  SGX_ENCLAVE_CREATE_ARG,
  SGX_ENCLAVE_ADD_PAGES_ARG,
  SGX_ENCLAVE_INIT_ARG,
  SGX_ENCLAVE_PROVISION_ARG,
  SGX_ENCLAVE_RESTRICT_PERMISSIONS_ARG,
  SGX_ENCLAVE_MODIFY_TYPES_ARG,
  SGX_ENCLAVE_REMOVE_PAGES_ARG,
  SGX_ENCLAVE_RUN,
];
