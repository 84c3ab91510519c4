/**
 * Checks every ioctl number, constant, struct size and field offset in ffi/
 * against the machine's own uapi headers, by compiling a C program that
 * prints them. Facts that the local headers lack must say where they come
 * from. Also checks errno naming on real failing calls.
 */
import assert from "node:assert/strict";
import type { StructLayout, UapiConstant } from "../ffi/struct_layout.ts";
import { SEV_GUEST_CONSTANTS, SEV_GUEST_STRUCTS } from "../ffi/sev_guest.ts";
import { PSP_SEV_CONSTANTS, PSP_SEV_STRUCTS } from "../ffi/psp_sev.ts";
import { KVM_CONSTANTS } from "../ffi/kvm.ts";
import { SGX_CONSTANTS, SGX_STRUCTS } from "../ffi/sgx.ts";
import {
  TDX_CMD_GET_REPORT0,
  TDX_GUEST_CONSTANTS,
  TDX_GUEST_STRUCTS,
  TDX_REPORT_REQ,
} from "../ffi/tdx_guest.ts";
import { io, ior, iow, iowr } from "../ffi/ioctl.ts";
import {
  AnonymousMapping,
  ERRNO_NAMES,
  errnoName,
  FileDescriptor,
  O_RDONLY,
  SyscallError,
} from "../ffi/libc.ts";
import { SEV_USER_DATA_SNP_STATUS } from "../ffi/psp_sev.ts";

const CONSTANTS: UapiConstant[] = [
  ...SEV_GUEST_CONSTANTS,
  ...PSP_SEV_CONSTANTS,
  ...KVM_CONSTANTS,
  ...SGX_CONSTANTS,
  ...TDX_GUEST_CONSTANTS,
];
const STRUCTS: StructLayout[] = [
  ...SEV_GUEST_STRUCTS,
  ...PSP_SEV_STRUCTS,
  ...SGX_STRUCTS,
  ...TDX_GUEST_STRUCTS,
];

/** Writes the C program that prints what the headers say about our facts. */
function cProgram(): string {
  const headers = new Set<string>();
  for (const fact of [...CONSTANTS, ...STRUCTS]) {
    if (fact.header !== null && fact.local !== "no") headers.add(fact.header);
  }
  const lines = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    "#include <errno.h>",
    ...[...headers].sort().map((h) => `#include <${h}>`),
    "int main(void) {",
  ];
  for (const c of CONSTANTS) {
    if (c.local === "no") continue;
    const print = `  printf("const ${c.name} %llu\\n", (unsigned long long)(${c.name}));`;
    if (c.local === "if-defined") {
      lines.push(
        `#ifdef ${c.name}`,
        print,
        "#else",
        `  printf("undefined ${c.name}\\n");`,
        "#endif",
      );
    } else {
      lines.push(print);
    }
  }
  for (const s of STRUCTS) {
    if (s.local === "no" || s.header === null) continue;
    lines.push(`  printf("size ${s.name} %zu\\n", sizeof(struct ${s.name}));`);
    for (const field of Object.keys(s.fields)) {
      lines.push(
        `  printf("field ${s.name}.${field} %zu %zu\\n", offsetof(struct ${s.name}, ${field}), ` +
          `sizeof(((struct ${s.name} *)0)->${field}));`,
      );
    }
  }
  for (const name of Object.values(ERRNO_NAMES)) {
    lines.push(`  printf("errno ${name} %d\\n", ${name});`);
  }
  lines.push("  return 0;", "}");
  return lines.join("\n") + "\n";
}

/** Compiles and runs the program; returns its lines keyed by their first two words. */
async function headerFacts(): Promise<Map<string, string>> {
  const dir = await Deno.makeTempDir({ prefix: "enarx-uapi-" });
  try {
    await Deno.writeTextFile(`${dir}/uapi.c`, cProgram());
    const compile = await new Deno.Command("gcc", {
      args: ["-std=gnu11", "-Wall", "-Werror", "-o", `${dir}/uapi`, `${dir}/uapi.c`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(compile.code, 0, new TextDecoder().decode(compile.stderr));
    const run = await new Deno.Command(`${dir}/uapi`, { stdout: "piped" }).output();
    assert.equal(run.code, 0);
    const facts = new Map<string, string>();
    for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
      const [kind, name, ...rest] = line.split(" ");
      facts.set(`${kind} ${name}`, rest.join(" "));
    }
    return facts;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const facts = await headerFacts();

Deno.test("every ioctl number and constant we use matches the local uapi headers", () => {
  const mismatches: string[] = [];
  let compared = 0;
  for (const c of CONSTANTS) {
    if (c.local === "no") continue;
    if (c.local === "if-defined" && facts.has(`undefined ${c.name}`)) continue;
    const value = facts.get(`const ${c.name}`);
    compared++;
    if (value !== String(c.value)) {
      mismatches.push(`${c.name}: ours 0x${c.value.toString(16)}, header ${value}`);
    }
  }
  assert.deepEqual(mismatches, []);
  // SNP_GET_REPORT .. SGX_IOC_ENCLAVE_REMOVE_PAGES: at least the ones every 6.1 header has.
  assert.ok(compared >= 30, `only ${compared} constants compared`);
});

Deno.test("every struct size and field offset we use matches the local uapi headers", () => {
  const mismatches: string[] = [];
  let fields = 0;
  for (const s of STRUCTS) {
    if (s.local === "no" || s.header === null) continue;
    const size = facts.get(`size ${s.name}`);
    if (size !== String(s.size)) mismatches.push(`sizeof ${s.name}: ours ${s.size}, C ${size}`);
    for (const [name, f] of Object.entries(s.fields)) {
      fields++;
      const c = facts.get(`field ${s.name}.${name}`);
      if (c !== `${f.offset} ${f.size}`) {
        mismatches.push(`${s.name}.${name}: ours ${f.offset} ${f.size}, C ${c}`);
      }
    }
  }
  assert.deepEqual(mismatches, []);
  assert.ok(fields >= 50, `only ${fields} fields compared`);
});

Deno.test("facts the local headers lack name their source", () => {
  const undocumented: string[] = [];
  for (const c of CONSTANTS) {
    const missing = c.local === "no" ||
      (c.local === "if-defined" && facts.has(`undefined ${c.name}`));
    if (missing && !c.source) undocumented.push(c.name);
  }
  for (const s of STRUCTS) if (s.local === "no" && !s.source) undocumented.push(s.name);
  assert.deepEqual(undocumented, []);
});

Deno.test("TDX guest ioctl matches the kernel's tdx-guest.h (not in local headers)", () => {
  assert.equal(TDX_REPORT_REQ.size, 64 + 1024);
  assert.equal(TDX_CMD_GET_REPORT0, 0xc4405401);
  assert.equal(TDX_CMD_GET_REPORT0, iowr("T", 1, { size: 1088 }));
});

Deno.test("upstream SNP platform status layout is packed and 32 bytes", () => {
  const fields = Object.values(SEV_USER_DATA_SNP_STATUS.fields).sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const f of fields) {
    assert.equal(f.offset, end, "fields are contiguous (packed)");
    end = f.offset + f.size;
  }
  assert.equal(end, SEV_USER_DATA_SNP_STATUS.size);
  assert.equal(end, 32);
});

Deno.test("ioctl number helpers match _IO/_IOR/_IOW/_IOWR", () => {
  assert.equal(io(0xae, 0), 0xae00);
  assert.equal(io(0xae, 1), 0xae01);
  assert.equal(iowr("S", 0, { size: 16 }), 0xc0105300);
  assert.equal(iowr("S", 2, { size: 32 }), 0xc0205302);
  assert.equal(iow(0xa4, 0, { size: 8 }), 0x4008a400);
  assert.equal(ior(0xae, 0x81, { size: 144 }), 0x8090ae81);
  assert.throws(() => io("ST", 256), RangeError);
  assert.throws(() => iowr("S", 0, { size: 1 << 14 }), RangeError);
});

Deno.test("errno names match <errno.h>", () => {
  const wrong: string[] = [];
  for (const [value, name] of Object.entries(ERRNO_NAMES)) {
    if (facts.get(`errno ${name}`) !== value) wrong.push(name);
  }
  assert.deepEqual(wrong, []);
  assert.equal(errnoName(25), "ENOTTY");
  assert.equal(errnoName(4095), "E4095");
});

Deno.test("a missing device fails with ENOENT by name", () => {
  try {
    FileDescriptor.open("/dev/enarx-does-not-exist", O_RDONLY);
    assert.fail("open succeeded");
  } catch (e) {
    assert.ok(e instanceof SyscallError);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.errno, 2);
    assert.equal(e.syscall, "open");
    assert.match(e.message, /"\/dev\/enarx-does-not-exist".*ENOENT/);
  }
});

Deno.test("an ioctl the device does not know fails with ENOTTY by name", () => {
  using fd = FileDescriptor.open("/dev/null", O_RDONLY);
  try {
    fd.ioctl(iowr("S", 0, { size: 32 }), new Uint8Array(32), { name: "SNP_GET_REPORT" });
    assert.fail("ioctl succeeded");
  } catch (e) {
    assert.ok(e instanceof SyscallError);
    assert.equal(e.code, "ENOTTY");
    assert.equal(e.syscall, "ioctl(SNP_GET_REPORT)");
    assert.equal(e.path, "/dev/null");
  }
  fd.close();
  assert.throws(() => fd.fd, TypeError);
});

Deno.test("anonymous mappings are page-aligned, zeroed and copied out", () => {
  using mapping = AnonymousMapping.create(5000);
  assert.equal(mapping.length, 8192);
  assert.equal(mapping.address % 4096n, 0n);
  assert.deepEqual(mapping.read(4000, 8), new Uint8Array(8));
  assert.throws(() => mapping.read(8190, 4), RangeError);
  mapping.close();
  assert.throws(() => mapping.read(0, 1), TypeError);
});
