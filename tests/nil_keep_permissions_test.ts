/**
 * The nil keep's Deno permissions (runtime/keepmgr/self_command.ts): it reads
 * its own code, its work directory, libwasmtime and what it is given, and
 * nothing else; deploys through a real nil keep are in tests/deploy/.
 */
import assert from "node:assert/strict";
import { wasmldrPermissions } from "../runtime/keepmgr/self_command.ts";

const PROBE = `
const results = {};
for (const path of Deno.args) {
  try {
    await Deno.readTextFile(path);
    results[path] = "read";
  } catch (error) {
    results[path] = error instanceof Deno.errors.NotCapable ||
        error instanceof Deno.errors.PermissionDenied
      ? "denied"
      : String(error);
  }
}
console.log(JSON.stringify(results));
`;

Deno.test("nil keep permissions: no read outside its code, work directory and the paths given", async () => {
  const outside = await Deno.makeTempDir({ prefix: "enarx-outside-" });
  const workDir = await Deno.makeTempDir({ prefix: "enarx-keep-work-" });
  const given = await Deno.makeTempDir({ prefix: "enarx-given-" });
  try {
    await Deno.writeTextFile(`${outside}/secret.txt`, "not for the keep");
    await Deno.writeTextFile(`${workDir}/mine.txt`, "the keep's own");
    await Deno.writeTextFile(`${given}/cache.txt`, "a cache it may read");
    await Deno.writeTextFile(`${workDir}/probe.js`, PROBE);
    const perms = wasmldrPermissions(workDir, { read: [given] });
    assert.ok(perms.every((p) => p !== "--allow-read" && p !== "--allow-all"), perms.join(" "));
    const code = new URL("../deno.json", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--no-config",
        ...perms,
        `${workDir}/probe.js`,
        `${outside}/secret.txt`,
        "/etc/hostname",
        `${workDir}/mine.txt`,
        `${given}/cache.txt`,
        code,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const results = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(results[`${outside}/secret.txt`], "denied");
    assert.equal(results["/etc/hostname"], "denied");
    assert.equal(results[`${workDir}/mine.txt`], "read");
    assert.equal(results[`${given}/cache.txt`], "read");
    assert.equal(results[code], "read");
  } finally {
    for (const dir of [outside, workDir, given]) await Deno.remove(dir, { recursive: true });
  }
});
