/**
 * The keep image is reproducible: two builds into fresh caches give the
 * same initrd and the same base disk, byte for byte; one changed input byte
 * gives another; the archive is sorted with fixed times, owners and inode
 * numbers and names no host path; the disk's files are root's with fixed
 * times; the disk holds the socket shim this host builds and the guest's
 * resolver configuration, and the init points wasmldr at that shim; the
 * cache is keyed by content and private (0600 in 0700);
 * `enarx keep image` prints and writes exactly the launched image.
 */
import assert from "node:assert/strict";
import {
  buildKvmImage,
  DISK_MODULES,
  findKvmKernel,
  NET_MODULES,
} from "../../runtime/backends/kvm_image.ts";
import { kvmLaunchable } from "../../runtime/backends/kvm.ts";
import { buildSocketShim } from "../../runtime/wasm/socket_shim.ts";
import { requires } from "../_requires.ts";

const ROOT = new URL("../../", import.meta.url);
const NEED = {
  tool: "QEMU and the kvm keep kernel",
  present: kvmLaunchable(),
  remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
};

/** Finds `name` under `dir`, recursively. */
function findModuleFile(dir: string, name: string): string | undefined {
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) {
      const found = findModuleFile(path, name);
      if (found !== undefined) return found;
    } else if (entry.name === name) return path;
  }
  return undefined;
}

/** A file of a base disk's file system, read with debugfs (e2fsprogs). */
async function diskFile(disk: string, path: string): Promise<Uint8Array> {
  const out = await new Deno.Command("debugfs", {
    args: ["-R", `cat ${path}`, disk],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.ok(out.success, `debugfs cat ${path}`);
  return out.stdout;
}

/** debugfs's `stat` of a base disk's file. */
async function diskStat(disk: string, path: string): Promise<string> {
  const out = await new Deno.Command("debugfs", {
    args: ["-R", `stat ${path}`, disk],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout);
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource)).toHex();
}

/** The cpio newc records: name, ino, mode, uid, gid, mtime, data. */
function cpioRecords(archive: Uint8Array) {
  const dec = new TextDecoder();
  const records = [];
  let at = 0;
  while (true) {
    const field = (i: number) =>
      parseInt(dec.decode(archive.subarray(at + 6 + i * 8, at + 14 + i * 8)), 16);
    assert.equal(dec.decode(archive.subarray(at, at + 6)), "070701");
    const nameSize = field(11);
    const name = dec.decode(archive.subarray(at + 110, at + 110 + nameSize - 1));
    const size = field(6);
    records.push({
      name,
      ino: field(0),
      mode: field(1),
      uid: field(2),
      gid: field(3),
      mtime: field(5),
      data: archive.subarray(Math.ceil((at + 110 + nameSize) / 4) * 4).subarray(0, size),
    });
    if (name === "TRAILER!!!") return records;
    at = Math.ceil((at + 110 + nameSize) / 4) * 4;
    at = Math.ceil((at + size) / 4) * 4;
  }
}

Deno.test({
  name: "keep image: reproducible across fresh caches, sorted and fixed; one input byte changes it",
  ...requires(NEED, async () => {
    const dir = await Deno.makeTempDir();
    try {
      // A copy of the keep kernel's network modules: one byte of one changes the image.
      const kernel = findKvmKernel();
      const modules = `${dir}/modules`;
      for (const name of [...NET_MODULES, ...DISK_MODULES]) {
        const from = findModuleFile(`${kernel.modules}/kernel`, `${name}.ko`)!;
        await Deno.mkdir(`${modules}/kernel/net`, { recursive: true });
        await Deno.copyFile(from, `${modules}/kernel/net/${name}.ko`);
      }
      const own = { kernel: kernel.kernel, modules };
      const a = await buildKvmImage({ cacheDir: `${dir}/a`, kernel: own });
      const b = await buildKvmImage({ cacheDir: `${dir}/b`, kernel: own });
      assert.ok(a.built && b.built);
      const bytesA = await Deno.readFile(a.initrd);
      assert.equal(await sha256Hex(bytesA), await sha256Hex(await Deno.readFile(b.initrd)));
      assert.equal(a.key, b.key);
      const diskA = await Deno.readFile(a.base.path);
      assert.equal(await sha256Hex(diskA), await sha256Hex(await Deno.readFile(b.base.path)));
      assert.deepEqual([a.base.key, a.base.rootHash], [b.base.key, b.base.rootHash]);
      assert.equal(
        a.append,
        `console=ttyS0 quiet panic=-1 enarx.verity=${a.base.dataBlocks}:${a.base.rootHash}`,
      );
      // The hash tree follows the file system: 128 digests to a 4096-byte block, level by level.
      let treeBlocks = 0;
      for (let n = a.base.dataBlocks; n > 1; n = Math.ceil(n / 128)) {
        treeBlocks += Math.ceil(n / 128);
      }
      assert.equal(diskA.length, (a.base.dataBlocks + treeBlocks) * 4096);
      for (const file of [a.initrd, a.base.path]) {
        assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
      }
      assert.equal((await Deno.stat(`${dir}/a`)).mode! & 0o777, 0o700);
      const again = await buildKvmImage({ cacheDir: `${dir}/a`, kernel: own });
      assert.equal(again.built, false);
      assert.equal(again.initrd, a.initrd);

      const records = cpioRecords(bytesA);
      const names = records.slice(0, -1).map((r) => r.name);
      assert.deepEqual(names, [...names].sort());
      assert.deepEqual(records.slice(0, -1).map((r) => r.ino), names.map((_, i) => i + 1));
      for (const r of records) assert.deepEqual([r.uid, r.gid, r.mtime], [0, 0, 0], r.name);
      assert.ok(names.includes("sbin/dmsetup") && names.includes("lib/modules/dm-verity.ko"));
      assert.ok(names.includes("lib/modules/virtio_net.ko"));
      assert.ok(!names.includes("bin/deno"), "Deno is on the base disk, not in every initrd");
      const data = (name: string) => records.find((r) => r.name === name)?.data;
      const text = (name: string) => new TextDecoder().decode(data(name));
      assert.match(text("init"), / ENARX_SOCKET_SHIM=\/app\/enarx_wasi_sockets\.so /);
      assert.match(text("init"), / verity 1 \/dev\/vda \/dev\/vda 4096 4096 /);
      // The socket shim is on the disk the measured command line names.
      assert.deepEqual(
        await diskFile(a.base.path, "/app/enarx_wasi_sockets.so"),
        await Deno.readFile(await buildSocketShim()),
      );
      const dec = new TextDecoder();
      assert.equal(
        dec.decode(await diskFile(a.base.path, "/etc/resolv.conf")),
        "nameserver 10.0.2.3\n",
      );
      assert.equal(
        dec.decode(await diskFile(a.base.path, "/etc/nsswitch.conf")),
        "hosts: files dns\n",
      );
      const deno = await diskStat(a.base.path, "/bin/deno");
      assert.match(deno, /User:\s+0\s+Group:\s+0/);
      assert.match(deno, /Mode:\s+0755/);
      for (const time of ["ctime", "atime", "mtime"]) {
        assert.match(deno, new RegExp(`${time}: 0x00000000:`));
      }
      const root = new TextEncoder().encode(decodeURIComponent(ROOT.pathname));
      assert.equal(Buffer.from(bytesA).indexOf(root), -1, "the archive names a build path");

      const ko = `${modules}/kernel/net/virtio_net.ko`;
      const bytes = await Deno.readFile(ko);
      bytes[bytes.length - 1] ^= 1;
      await Deno.writeFile(ko, bytes);
      const c = await buildKvmImage({ cacheDir: `${dir}/c`, kernel: own });
      assert.notEqual(c.key, a.key);
      assert.notEqual(await sha256Hex(await Deno.readFile(c.initrd)), await sha256Hex(bytesA));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

async function enarx(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("cli/main.ts", ROOT).pathname, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test({
  name: "keep image: the CLI lists and writes the image that enarx measure measures",
  ...requires(NEED, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const env = { ENARX_KVM_CACHE_DIR: `${dir}/cache`, ENARX_SNP_SIM_DIR: "" };
      const out = await enarx([
        "keep",
        "image",
        "--backend",
        "sev",
        "--out",
        `${dir}/out`,
        "--json",
      ], env);
      assert.equal(out.code, 0, out.stderr);
      const image = JSON.parse(out.stdout);
      assert.equal(image.backend, "sev");
      assert.deepEqual(image.inputs.map((i: { role: string }) => i.role), [
        "kernel",
        "initrd",
        "base",
      ]);
      assert.equal(
        image.inputs[0].sha256,
        await sha256Hex(await Deno.readFile(`${dir}/out/vmlinuz`)),
      );
      assert.equal(
        image.inputs[1].sha256,
        await sha256Hex(await Deno.readFile(`${dir}/out/initrd.cpio`)),
      );
      assert.equal(
        image.inputs[2].sha256,
        await sha256Hex(await Deno.readFile(`${dir}/out/base.img`)),
      );
      assert.equal(await Deno.readTextFile(`${dir}/out/cmdline`), image.append);
      assert.ok(
        image.append.endsWith(` enarx.verity=${image.base.dataBlocks}:${image.base.rootHash}`),
      );
      const kvm = JSON.parse((await enarx(["measure", "--backend", "kvm", "--json"], env)).stdout);
      assert.deepEqual(
        kvm.inputs.slice(0, 2),
        image.inputs.slice(0, 2),
        "kvm without simulator state is sev's image",
      );
      // The measured command line is the one that names the disk's root hash.
      assert.equal(kvm.append, image.append);
      const text = await enarx(["keep", "image", "--backend", "nil"]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^[0-9a-f]{64} {2}deno {2}\/\S+\n[0-9a-f]{64} {2}libwasmtime {2}/);
      const bad = await enarx(["keep", "image", "--backend", "tdx"]);
      assert.equal(bad.code, 64);
      assert.match(bad.stderr, /^enarx: [^\n]+\n$/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

/** A PEM private key with its body, or the simulator's state: what no keep image may hold. */
function keyMaterial(bytes: Uint8Array, secrets: string[]): string[] {
  const text = new TextDecoder("latin1").decode(bytes);
  const found: string[] = [];
  const pem = /-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40,}/.exec(text);
  if (pem !== null) found.push(pem[0].slice(0, 40));
  for (const secret of secrets) if (text.includes(secret)) found.push("a simulator key");
  return found;
}

Deno.test({
  name: "keep image: no file of a kvm image holds a private key or the simulator's state",
  ...requires(NEED, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const { SnpSimulator, SNP_SIM_STATE_FILE } = await import(
        "../../runtime/attestation/amd/snp_sim.ts"
      );
      const simDir = new URL("../../.cache/test-snp-sim", import.meta.url).pathname;
      await SnpSimulator.open(simDir);
      const state = JSON.parse(await Deno.readTextFile(`${simDir}/${SNP_SIM_STATE_FILE}`));
      const secrets = Object.values(state.keys as Record<string, string>).map((k) =>
        k.slice(8, 72)
      );
      const image = await buildKvmImage({ cacheDir: `${dir}/cache` });
      const bytes = await Deno.readFile(image.initrd);
      assert.deepEqual(keyMaterial(bytes, secrets), []);
      assert.deepEqual(keyMaterial(await Deno.readFile(image.base.path), secrets), []);
      const names = cpioRecords(bytes).map((r) => r.name);
      assert.ok(
        !names.some((n) => n.startsWith("sim") || n.endsWith(SNP_SIM_STATE_FILE)),
        names.join(),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

Deno.test("keep image: no file of the nil keep's measured set holds a private key", async () => {
  const { nilKeepInputs } = await import("../../runtime/keep/measurement.ts");
  const { SNP_SIM_STATE_FILE } = await import("../../runtime/attestation/amd/snp_sim.ts");
  for (const input of await nilKeepInputs()) {
    assert.ok(!input.path!.endsWith(SNP_SIM_STATE_FILE), input.path);
    if (input.role === "deno" || input.role === "libwasmtime") continue; // binaries, see above
    assert.deepEqual(keyMaterial(await Deno.readFile(input.path!), []), [], input.path);
  }
});
