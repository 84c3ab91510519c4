/**
 * The read-only base disk of kvm keeps is verified, and measured: a keep
 * whose disk the host changed by one byte stops before wasmldr runs, its
 * frames ending with an error that names the disk and dm-verity's report;
 * a disk cut short stops the guest's init before wasmldr, with its reason; a disk whose content
 * differs gives another root hash, so another command line and another
 * measurement, while the kernel and initrd stay the same. Ignored unless
 * QEMU and the keep kernel are present (tools/test_deps.sh).
 */
import assert from "node:assert/strict";
import { buildKvmImage } from "../../runtime/backends/kvm_image.ts";
import { kvmLaunchable } from "../../runtime/backends/kvm.ts";
import { launchKvmKeep } from "../../runtime/backends/kvm_vm.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { libwasmtimePath } from "../../runtime/wasm/libwasmtime_path.ts";
import { requires } from "../_requires.ts";

const ROOT = new URL("../../", import.meta.url);
const NEED = {
  tool: "QEMU and the kvm keep kernel",
  present: kvmLaunchable(),
  remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
};

/** The guest's entry point, which Deno reads first from the disk (kvm_image.ts). */
const ENTRY_TEXT = 'import { command } from "./cli/wasmldr.ts";';

Deno.test({
  name: "kvm base disk: one byte changed by the host stops the keep with dm-verity's report",
  ...requires(NEED, async () => {
    const dir = await Deno.makeTempDir({ prefix: "enarx-base-" });
    const logs: string[] = [];
    try {
      const image = await buildKvmImage({ cacheDir: `${dir}/cache` });
      const disk = await Deno.readFile(image.base.path);
      const at = Buffer.from(disk).indexOf(ENTRY_TEXT);
      assert.ok(at > 0 && at < image.base.dataBlocks * 4096, "the entry point is on the disk");
      disk[at] ^= 1; // within the file system: its hash tree is untouched
      await Deno.writeFile(image.base.path, disk);
      await Deno.mkdir(`${dir}/keep`);
      const keep = await launchKvmKeep({
        workDir: `${dir}/keep`,
        cacheDir: `${dir}/cache`,
        log: (line) => void logs.push(line),
      });
      // The guest may reach its ready line (init opens the disk before wasmldr starts) and
      // panics on the first changed block it reads: the frames end with the reason.
      const timer = setTimeout(() => keep.kill("SIGKILL"), 180_000);
      const error = await framesEnd(keep);
      await keep.status;
      clearTimeout(timer);
      assert.ok(error instanceof EnarxError, `${error}\n${logs.join("\n")}`);
      assert.equal(error.code, "keep-launch");
      assert.match(
        error.message,
        /^The keep's base disk "[^"]+base-[0-9a-f]{64}\.img" failed verification \(dm-verity: "device-mapper: verity: [0-9:]+: data block \d+ is corrupted"\)/,
      );
      assert.doesNotMatch(error.message, /\n/);
      assert.ok(logs.includes(error.message), "keepldr's log says it too");
      assert.ok(!logs.some((l) => /wasmldr exited/.test(l)), "wasmldr never ran");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

/** Reads a keep's frames to their end; resolves with the error they ended with, if any. */
async function framesEnd(keep: { stdout: ReadableStream<Uint8Array> }): Promise<unknown> {
  const reader = keep.stdout.getReader();
  try {
    while (!(await reader.read()).done) { /* no frame comes */ }
    return undefined;
  } catch (error) {
    return error;
  }
}

Deno.test({
  name: "kvm base disk: a disk shorter than the command line says stops init, which says why",
  ...requires(NEED, async () => {
    const dir = await Deno.makeTempDir({ prefix: "enarx-base-" });
    const logs: string[] = [];
    try {
      const image = await buildKvmImage({ cacheDir: `${dir}/cache` });
      await Deno.truncate(image.base.path, image.base.dataBlocks * 2048);
      await Deno.mkdir(`${dir}/keep`);
      const keep = await launchKvmKeep({
        workDir: `${dir}/keep`,
        cacheDir: `${dir}/cache`,
        log: (line) => void logs.push(line),
      });
      const timer = setTimeout(() => keep.kill("SIGKILL"), 180_000);
      const error = await framesEnd(keep);
      await keep.status;
      clearTimeout(timer);
      assert.ok(error instanceof EnarxError, `${error}\n${logs.join("\n")}`);
      assert.equal(
        error.message,
        "The keep's init stopped: dm-verity refused the base disk (/dev/vda): it is smaller " +
          "than the command line says",
      );
      assert.ok(!logs.some((l) => /guest ready/.test(l)), "init stopped before the ready line");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

const MEASURE = ["measure", "--backend", "kvm", "--json"];

/** `enarx measure --backend kvm --json` with `env`. */
async function measureKvm(env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("cli/main.ts", ROOT).pathname, ...MEASURE],
    env: { ...env, ENARX_SNP_SIM_DIR: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test({
  name: "kvm base disk: another byte on the disk gives another root hash and measurement",
  ...requires(NEED, async () => {
    const dir = await Deno.makeTempDir({ prefix: "enarx-base-" });
    try {
      // One byte of libwasmtime, which only the base disk holds, is different.
      const changed = `${dir}/libwasmtime.so`;
      const bytes = await Deno.readFile(await libwasmtimePath());
      bytes[bytes.length - 1] ^= 1;
      await Deno.writeFile(changed, bytes);
      const env = { ENARX_KVM_CACHE_DIR: `${dir}/cache` };
      const a = await measureKvm({ ...env, ENARX_LIBWASMTIME: await libwasmtimePath() });
      const b = await measureKvm({ ...env, ENARX_LIBWASMTIME: changed });
      const role = (m: { inputs: { role: string; sha256: string }[] }, name: string) =>
        m.inputs.find((i) => i.role === name)?.sha256;
      assert.equal(a.backend, "kvm");
      assert.equal(role(a, "kernel"), role(b, "kernel"));
      assert.equal(role(a, "initrd"), role(b, "initrd"), "the initrd does not hold the disk");
      const verity = /^console=ttyS0 quiet panic=-1 enarx\.verity=(\d+):([0-9a-f]{64})$/;
      const [, , rootA] = verity.exec(a.append)!;
      const [, , rootB] = verity.exec(b.append)!;
      assert.notEqual(rootA, rootB);
      assert.notEqual(role(a, "cmdline"), role(b, "cmdline"));
      assert.notEqual(a.digest, b.digest);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});
