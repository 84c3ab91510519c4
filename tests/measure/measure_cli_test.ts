/**
 * `enarx measure` through the CLI: text and `--json` for each backend, the
 * JSON's inputs recompute the digest, usage errors are one line with exit
 * 64, a missing OVMF is exit 66, sev equals `snpLaunchDigest`, kvm changes
 * with one initrd byte, and nil equals the registry's measurement.
 */
import assert from "node:assert/strict";
import { backendByName } from "../../runtime/backends/mod.ts";
import { snpLaunchDigest } from "../../runtime/measure/mod.ts";
import { kvmLaunchable } from "../../runtime/backends/kvm.ts";
import { fileExists, requires } from "../_requires.ts";
import { amdSevLikeSections, syntheticOvmf } from "./_synthetic_ovmf.ts";

const ROOT = new URL("../../", import.meta.url);
const DEBIAN_OVMF = "/usr/share/OVMF/OVMF_CODE.fd";

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

type JsonInput = { role: string; path?: string; sha256: string };

/** The keep digest re-derived by hand from spec/measurement.md. */
async function recompute(kind: string, inputs: JsonInput[]): Promise<string> {
  const enc = new TextEncoder();
  const parts: number[] = [...enc.encode(`enarx/v1 ${kind}-keep-measurement\0`)];
  for (const input of inputs) {
    const role = enc.encode(input.role);
    parts.push(role.length >> 8, role.length & 0xff, ...role, ...Uint8Array.fromHex(input.sha256));
  }
  const digest = await crypto.subtle.digest("SHA-384", new Uint8Array(parts));
  return new Uint8Array(digest).toHex();
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource)).toHex();
}

Deno.test("measure nil: text equals the registry's measurement; --json recomputes it", async () => {
  const expected = (await backendByName("nil")!.measurement())!.toHex();
  const text = await enarx(["measure", "--backend", "nil"]);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout, `${expected}\n`);
  const json = await enarx(["measure", "--backend", "nil", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const value = JSON.parse(json.stdout);
  assert.equal(value.backend, "nil");
  assert.equal(value.digest, expected);
  const roles = value.inputs.map((i: JsonInput) => i.role);
  assert.deepEqual(roles.slice(0, 2), ["deno", "libwasmtime"]);
  for (
    const role of ["app/cli/wasmldr.ts", "app/package-lock.json", "app/runtime/keep/wasmldr.ts"]
  ) {
    assert.ok(roles.includes(role), role);
  }
  assert.deepEqual(roles.slice(2), [...roles.slice(2)].sort());
  assert.equal(await recompute("nil", value.inputs), expected);
  const deno = value.inputs[0];
  assert.equal(deno.sha256, await sha256Hex(await Deno.readFile(deno.path)));
});

Deno.test("measure: bad flags are one line and exit 64", async () => {
  for (
    const args of [
      [],
      ["--backend", "tdx"],
      ["--backend", "nil", "--vcpus", "2"],
      ["--backend", "kvm", "--ovmf", DEBIAN_OVMF],
      ["--backend", "sev", "--vcpus", "0"],
      ["--backend", "sev", "--vcpus", "two"],
      ["--backend", "kvm", "--kernel", "none"],
      ["--backend", "nil", "--bogus"],
      ["--backend", "nil", "extra"],
    ]
  ) {
    const out = await enarx(["measure", ...args]);
    assert.equal(out.code, 64, `${args.join(" ")}: ${out.stderr}`);
    assert.equal(out.stdout, "");
    assert.match(out.stderr, /^enarx: [^\n]+\n$/, args.join(" "));
  }
});

Deno.test("measure sev: without OVMF it says how to get one (exit 66)", async () => {
  const empty = await Deno.makeTempDir();
  try {
    const out = await enarx(["measure", "--backend", "sev"], {
      ENARX_CACHE: empty,
      XDG_CACHE_HOME: empty,
    });
    assert.equal(out.code, 66, out.stderr);
    assert.match(out.stderr, /^enarx: [^\n]*--ovmf[^\n]*tools\/build_ovmf\.sh[^\n]*\n$/);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test({
  name:
    "measure sev: Debian's OVMF alone equals snpLaunchDigest, stable, with the defaults 1 vCPU, EPYC-Milan",
  ...requires({
    tool: "Debian's OVMF (package ovmf)",
    present: fileExists(DEBIAN_OVMF),
    remedy: "tools/test_deps.sh installs ovmf",
  }, async () => {
    const ovmf = await Deno.readFile(DEBIAN_OVMF);
    for (
      const [vcpus, vcpuType] of [[1, "EPYC-Milan"], [2, "EPYC-Genoa"], [4, "EPYC-Milan"]] as const
    ) {
      const expected = snpLaunchDigest({ ovmf, vcpus, vcpuType }).digest.toHex();
      const args = ["measure", "--backend", "sev", "--ovmf", DEBIAN_OVMF, "--kernel", "none"];
      const extra = vcpus === 1 ? [] : ["--vcpus", String(vcpus), "--vcpu-type", vcpuType];
      const first = await enarx([...args, ...extra]);
      const again = await enarx([...args, ...extra]);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stdout, `${expected}\n`);
      assert.equal(again.stdout, first.stdout);
    }
    const json = JSON.parse(
      (await enarx([
        "measure",
        "--backend",
        "sev",
        "--ovmf",
        DEBIAN_OVMF,
        "--kernel",
        "none",
        "--json",
      ]))
        .stdout,
    );
    assert.deepEqual(json, {
      backend: "sev",
      digest: snpLaunchDigest({ ovmf, vcpus: 1, vcpuType: "EPYC-Milan" }).digest.toHex(),
      inputs: [{ role: "ovmf", path: DEBIAN_OVMF, sha256: await sha256Hex(ovmf) }],
      vcpus: 1,
      vcpuType: "EPYC-Milan",
    });
  }),
});

Deno.test("measure sev and kvm: given kernel, initrd and command line; one initrd byte changes both", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spec = { pages: 64, resetEip: 0x80b004, hashTable: { gpa: 0x80fc00, size: 0x400 } };
    const ovmf = syntheticOvmf({ ...spec, sections: amdSevLikeSections() });
    const kernel = new Uint8Array(300_001).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
    const initrd = new Uint8Array(77_777).fill(0x5a);
    await Deno.writeFile(`${dir}/ovmf.fd`, ovmf);
    await Deno.writeFile(`${dir}/vmlinuz`, kernel);
    await Deno.writeFile(`${dir}/initrd`, initrd);
    const append = "console=ttyS0 quiet";
    const files = ["--kernel", `${dir}/vmlinuz`, "--initrd", `${dir}/initrd`, "--append", append];
    const sev = await enarx(["measure", "--backend", "sev", "--ovmf", `${dir}/ovmf.fd`, ...files]);
    assert.equal(sev.code, 0, sev.stderr);
    const expected = snpLaunchDigest({
      ovmf,
      kernel,
      initrd,
      append,
      vcpus: 1,
      vcpuType: "EPYC-Milan",
    });
    assert.equal(sev.stdout, `${expected.digest.toHex()}\n`);
    // Without --ovmf, measure reads the OVMF a sev keep would boot: $ENARX_SEV_OVMF.
    const fromEnv = await enarx(["measure", "--backend", "sev", ...files], {
      ENARX_SEV_OVMF: `${dir}/ovmf.fd`,
    });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.equal(fromEnv.stdout, sev.stdout);
    const kvm = await enarx(["measure", "--backend", "kvm", "--json", ...files]);
    assert.equal(kvm.code, 0, kvm.stderr);
    const value = JSON.parse(kvm.stdout);
    assert.deepEqual(value.inputs.map((i: JsonInput) => i.role), ["kernel", "initrd", "cmdline"]);
    assert.equal(value.inputs[2].sha256, await sha256Hex(new TextEncoder().encode(append)));
    assert.equal(value.append, append);
    assert.equal(value.digest, await recompute("kvm", value.inputs));
    initrd[12_345] ^= 1;
    await Deno.writeFile(`${dir}/initrd`, initrd);
    const kvm2 = JSON.parse(
      (await enarx(["measure", "--backend", "kvm", "--json", ...files])).stdout,
    );
    assert.notEqual(kvm2.digest, value.digest);
    const sev2 = await enarx(["measure", "--backend", "sev", "--ovmf", `${dir}/ovmf.fd`, ...files]);
    assert.notEqual(sev2.stdout, sev.stdout);
    const missing = await enarx(["measure", "--backend", "kvm", "--kernel", `${dir}/nothing`]);
    assert.equal(missing.code, 66, missing.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "measure kvm: the keep image's measurement equals the registry's kvm measurement()",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const out = await enarx(["measure", "--backend", "kvm"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, `${(await backendByName("kvm")!.measurement())!.toHex()}\n`);
  }),
});
