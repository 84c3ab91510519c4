/**
 * The first module of the run bundle (build/enarx_run.js, made from
 * cli/bundle/run.ts by tools/build_run_bundle.ts): before any other module
 * of the bundle runs, it checks that the bundle is what its sources would
 * give now, and when it is not, runs `enarx` from the sources instead.
 *
 * The rule: the build records, before `deno bundle` reads anything, the
 * identity of every file the bundle is made from (each module of its code
 * graph, deno.json, package-lock.json, which pins Deno and so the bundler,
 * and the build script): device, inode, size, mtime (ms) and ctime (Deno
 * gives it in whole seconds). Here each file is stat'ed again (24 `stat`
 * calls, about 0.3 ms) and must have the same identity. No lock file can
 * change the bundle: the build refuses a graph with any module from outside
 * the checkout (npm, jsr, remote), and a deno.lock is recorded only when
 * there is one (a stat of a file that is not there costs 1.6 ms here: Deno
 * makes a NotFound error with its stack trace). Saving a file changes its
 * mtime and ctime (and the inode, for editors that write a new file and
 * rename it); a checkout,
 * `cp -p`, `tar` or `touch -d` that sets an older mtime still changes the
 * ctime, which no program can set; a moved, added or removed file changes
 * the inode or the importing module. What it cannot see: a change of the
 * same size, in the same inode, in the same millisecond of mtime and second
 * of ctime as the recorded one (a file rewritten with an old mtime within the
 * second of its last change). Directory mtimes would miss edits, git's index
 * is not there in a tarball, and `find -newer` over the files costs more
 * than the bundle saves.
 *
 * A stale bundle is deleted (./enarx builds a new one on its next `run`) and
 * this run loads cli/main.ts from the sources. The guard imports nothing, so
 * that the bundler puts it first, and holds the rest of the bundle back with
 * a top-level await until it has decided.
 *
 * @module
 */
import type * as Main from "../main.ts";

/**
 * The recorded identities, as JSON: tools/build_run_bundle.ts replaces this
 * placeholder in the bundle. In the sources it stays, and the sources are
 * always fresh.
 */
const BUILT_FROM: string = "@ENARX_RUN_BUNDLE_SOURCES@";

/** Whether this is the bundle (the build replaced the placeholder), not the sources. */
const IN_BUNDLE = BUILT_FROM.startsWith("{");
// Resolved against build/enarx_run.js in the bundle, against this file in
// the sources; in variables, so that `deno run` does not read cli/main.ts's
// graph ahead of time.
const MAIN = IN_BUNDLE ? "../cli/main.ts" : "../main.ts";

/** A file's identity: device, inode, size, mtime (ms) and ctime (ms); null when absent. */
export type FileIdentity = [number, number, number, number, number] | null;

/** The identity of the file at `path`, or null when there is none. */
export function fileIdentity(path: string): FileIdentity {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return null;
  }
  return [
    info.dev,
    info.ino ?? -1,
    info.size,
    info.mtime?.getTime() ?? -1,
    info.ctime?.getTime() ?? -1,
  ];
}

/** Whether every file of `record` (paths relative to `root`) has the identity recorded. */
export function unchanged(record: Record<string, FileIdentity>, root: string): boolean {
  for (const [path, recorded] of Object.entries(record)) {
    const now = fileIdentity(root + path);
    if (now === null || recorded === null) {
      if (now !== recorded) return false;
      continue;
    }
    for (let i = 0; i < now.length; i++) if (now[i] !== recorded[i]) return false;
  }
  return true;
}

/** Runs `enarx` with this process's arguments from the sources (cli/main.ts) and exits. */
export async function runFromSources(): Promise<never> {
  const { main }: typeof Main = await import(MAIN);
  Deno.exit(await main(Deno.args));
}

if (IN_BUNDLE) {
  // build/, one level below the root (a path string: the first URL object
  // of a process costs about 0.2 ms).
  const dir = import.meta.dirname!;
  const root = dir.slice(0, dir.lastIndexOf("/") + 1);
  if (!unchanged(JSON.parse(BUILT_FROM), root)) {
    try {
      // This file: the stale bundle.
      Deno.removeSync(new URL(import.meta.url));
    } catch {
      // Already removed by another start, or a checkout this user cannot write.
    }
    await runFromSources();
  }
}
