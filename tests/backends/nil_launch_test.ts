import assert from "node:assert/strict";
import { nilBackend } from "../../runtime/backends/nil.ts";
import { EnarxError } from "../../runtime/errors.ts";

/** Fields 4-6 of /proc/PID/stat: parent, process group and session. */
function ids(pid: number): { ppid: number; pgrp: number; session: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const [, ppid, pgrp, session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return { ppid, pgrp, session };
}

Deno.test("nil launch: a detached keep leads a session and group of its own, as our direct child", async () => {
  const workDir = await Deno.makeTempDir();
  try {
    for (const detached of [true, false]) {
      const keep = await nilBackend.launch!({
        workDir,
        wasmldrCommand: ["/bin/cat"],
        log: () => {},
        detached,
      });
      const pid = keep.pid!;
      // The same process becomes the command (setsid(1) execs it, no fork).
      const cmdline = () => Deno.readTextFileSync(`/proc/${pid}/cmdline`);
      for (let i = 0; i < 200 && !cmdline().startsWith("/bin/cat\0"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.match(cmdline(), /^\/bin\/cat\0/);
      const own = ids(Deno.pid);
      const child = ids(pid);
      assert.equal(child.ppid, Deno.pid); // no fork in between: the pid is the keep's
      if (detached) {
        assert.deepEqual([child.pgrp, child.session], [pid, pid]);
      } else {
        assert.deepEqual([child.pgrp, child.session], [own.pgrp, own.session]);
      }
      await keep.stdin.close();
      await new Response(keep.stdout).arrayBuffer();
      assert.equal((await keep.status).code, 0);
    }
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});

Deno.test("nil launch: a missing wasmldr program is a keep-launch error, detached or not", async () => {
  for (const detached of [true, false]) {
    await assert.rejects(
      nilBackend.launch!({
        wasmldrCommand: ["/nonexistent/enarx-wasmldr"],
        log: () => {},
        detached,
      }),
      (e: unknown) =>
        e instanceof EnarxError && e.code === "keep-launch" &&
        e.message.includes("/nonexistent/enarx-wasmldr"),
    );
  }
});

Deno.test("nil launch: signalKeep stops a keep whose process group does not exist (yet)", async () => {
  const { signalKeep } = await import("../../runtime/keepmgr/host/hosted_keep.ts");
  // Not detached: the child is in our group, so no group has its pid as id;
  // a keep started through setsid(1) is like that until setsid() has run.
  const keep = await nilBackend.launch!({
    wasmldrCommand: ["/bin/sleep", "30"],
    log: () => {},
    detached: false,
  });
  assert.throws(() => Deno.kill(-keep.pid!, "SIGCONT"));
  signalKeep(keep, "SIGTERM");
  const status = await keep.status;
  assert.equal(status.signal, "SIGTERM");
  // Once it has ended, signalling it again is a no-op, never a reused pid's signal.
  signalKeep(keep, "SIGKILL");
  await keep.stdin.close().catch(() => {});
  await keep.stdout.cancel();
});
