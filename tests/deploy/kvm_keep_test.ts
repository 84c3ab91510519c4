/**
 * A kvm keep end to end: a real keepmgr offering `kvm,nil` boots a QEMU
 * micro-VM (TCG) from the kernel and initrd of runtime/backends/kvm_image.ts,
 * deploys examples/hello.wat into it and leaves no QEMU behind. Ignored
 * unless qemu-system-x86_64 and a keep kernel (tools/test_deps.sh, or
 * ENARX_KVM_KERNEL) are present.
 */
import assert from "node:assert/strict";
import { deploy } from "../../runtime/client/deploy.ts";
import { LocalKeepmgr } from "../../runtime/keepmgr/local.ts";
import { kvmLaunchable } from "../../runtime/backends/kvm.ts";
import { requires } from "../_requires.ts";
import { eventually, SIM_DIR, SIM_ROOT, taggedProcesses, workload } from "./_deploy_fixture.ts";

const HELLO = new URL("../../examples/hello.wat", import.meta.url).pathname;
const IMAGE_CACHE = new URL("../../.cache/kvm-image", import.meta.url).pathname;

/** QEMU processes among the tagged ones. */
function qemuProcesses(tag: string): number[] {
  return taggedProcesses(tag).filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0")[0].includes("qemu-system");
    } catch {
      return false;
    }
  });
}

Deno.test({
  name: "kvm keep: hello.wat runs in a QEMU micro-VM through a real keepmgr; no QEMU is left",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const tag = crypto.randomUUID();
    const logs: string[] = [];
    const mgr = await LocalKeepmgr.start({
      simDir: SIM_DIR,
      args: ["--backends", "kvm,nil"],
      env: { ENARX_TEST_TAG: tag, ENARX_KVM_CACHE_DIR: IMAGE_CACHE },
      onLog: (line) => void logs.push(line),
    });
    try {
      const out: Uint8Array[] = [];
      const started = performance.now();
      const result = await deploy(workload(await Deno.readFile(HELLO)), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        backend: "kvm",
        trustSimulated: SIM_ROOT,
        onStdout: (chunk) => void out.push(chunk.slice()),
      }).catch((error) => {
        console.error(logs.join("\n"));
        throw error;
      });
      const elapsed = performance.now() - started;
      console.log(`kvm deploy end to end: ${elapsed.toFixed(0)} ms`);
      for (const line of logs) {
        if (/kvm image|guest ready|qemu started|keep attested|keep listening/.test(line)) {
          console.log(line);
        }
      }
      const text = out.map((c) => new TextDecoder().decode(c)).join("");
      assert.equal(text, "Hello from a WebAssembly keep!\n");
      assert.equal(result.status, 0);
      assert.equal(result.backend, "kvm");
      assert.equal(result.simulated, true);
      assert.ok(result.verification.ok);
      // The guest powers off after wasmldr exits; QEMU must end with it.
      assert.ok(await eventually(() => qemuProcesses(tag).length === 0, 15_000), logs.join("\n"));
    } finally {
      await mgr.close();
    }
    assert.deepEqual(qemuProcesses(tag), []);
  }),
});
