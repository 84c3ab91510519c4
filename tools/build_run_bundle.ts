/**
 * Builds the run bundle: `deno bundle` of cli/bundle/run.ts into one ES
 * module, build/enarx_run.js, which ./enarx runs for `enarx run` (tools/
 * bootstrap.sh's enarx_build_run_bundle calls this when the bundle is
 * missing). The compiled binary (compile.sh) does not use it.
 *
 * Before bundling it records the identity of every file the bundle is made
 * from (cli/bundle/guard.ts says which and why) and writes that record into
 * the bundle, whose first module, the guard, checks it on every start. The
 * files are the modules of the entry's code graph as `deno info` gives it
 * (type-only imports left out), which must be exactly the modules the
 * bundler put in; the build fails otherwise, and so when the guard is not the
 * bundle's first module. The bundle is written to a temporary name and
 * renamed, so that concurrent builds and starts never see half a file.
 *
 * Usage: deno run -A tools/build_run_bundle.ts [OUT]   (default build/enarx_run.js)
 *
 * @module
 */
// The identity the guard checks (importing the guard from the sources runs nothing).
import { type FileIdentity, fileIdentity } from "../cli/bundle/guard.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const ENTRY = "cli/bundle/run.ts";
const GUARD = "cli/bundle/guard.ts";
const PLACEHOLDER = '"@ENARX_RUN_BUNDLE_SOURCES@"';
/** Files that are no module of the bundle but change what it would be. */
const CONFIG_FILES = ["deno.json", "deno.lock", "package-lock.json", "tools/build_run_bundle.ts"];

class BuildError extends Error {}

function fail(message: string): never {
  throw new BuildError(message);
}

async function deno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    fail(`deno ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

interface InfoModule {
  specifier: string;
  local?: string;
  dependencies?: { code?: { specifier: string } }[];
}

/** The entry's code graph (static and literal dynamic imports, no type-only ones), root-relative. */
async function codeGraph(): Promise<string[]> {
  const info = JSON.parse(await deno(["info", "--json", "--config", "deno.json", ENTRY]));
  const modules = new Map<string, InfoModule>(
    (info.modules as InfoModule[]).map((m) => [m.specifier, m]),
  );
  const rootUrl = new URL(`file://${ROOT}`).href;
  const seen = new Set<string>();
  const walk = (specifier: string) => {
    if (seen.has(specifier)) return;
    seen.add(specifier);
    for (const dep of modules.get(specifier)?.dependencies ?? []) {
      if (dep.code) walk(dep.code.specifier);
    }
  };
  walk(new URL(ENTRY, rootUrl).href);
  const files = [...seen].map((s) => {
    if (!s.startsWith(rootUrl)) fail(`the run path imports "${s}", outside the checkout`);
    return decodeURIComponent(s.slice(rootUrl.length));
  });
  return files.sort();
}

/** The modules the bundler put in, from the `// path` line it writes before each. */
function bundledModules(text: string): string[] {
  return [...text.matchAll(/^\/\/ ([\w./-]+\.ts)$/gm)].map((m) => m[1]);
}

/**
 * Fails unless the guard's code is the first module code the bundle runs.
 * The bundler may put modules before it that are also imported dynamically
 * (nil.ts loads runtime/wasm/workload.ts so): each is then wrapped in an
 * `__esm` function that runs only when an `init_NAME()` call, emitted where
 * the module is first imported, calls it. So: every module before the guard
 * must be so wrapped, and no `init_NAME()` may come before the guard.
 */
function checkGuardRunsFirst(text: string): void {
  const at = text.search(new RegExp(`^// ${GUARD.replaceAll(".", "\\.")}$`, "m"));
  if (at < 0) fail(`${GUARD} is not in the bundle`);
  const before = text.slice(0, at);
  if (/^init_\w+\(\);?$/m.test(before)) fail(`module code runs before ${GUARD}`);
  const sections = before.split(/^\/\/ [\w./-]+\.ts$/m).slice(1);
  for (const section of sections) {
    if (!/^var init_\w+ = __esm\(\{$/m.test(section)) {
      fail(`a module before ${GUARD} is not wrapped for lazy evaluation`);
    }
  }
}

/** Builds the bundle into `out`. */
async function build(out: string): Promise<void> {
  const files = await codeGraph();
  // Recorded before the bundler reads anything: a file saved after this has
  // another identity, whether or not the bundle caught its new text.
  const record: Record<string, FileIdentity> = {};
  for (const file of [...files, ...CONFIG_FILES]) {
    // A config file that is not there is not recorded (cli/bundle/guard.ts says why).
    const identity = fileIdentity(ROOT + file);
    if (identity !== null || files.includes(file)) record[file] = identity;
  }
  await Deno.mkdir(out.slice(0, out.lastIndexOf("/")), { recursive: true });
  const tmp = `${out}.tmp-${Deno.pid}`;
  try {
    await deno([
      "bundle",
      "--quiet",
      "--config",
      "deno.json",
      "--platform",
      "deno",
      "--format",
      "esm",
      "--output",
      tmp,
      ENTRY,
    ]);
    const text = await Deno.readTextFile(tmp);
    const bundled = bundledModules(text);
    checkGuardRunsFirst(text);
    const missing = files.filter((f) => !bundled.includes(f));
    const extra = bundled.filter((f) => !files.includes(f));
    if (missing.length > 0 || extra.length > 0) {
      fail(
        `deno info and the bundle disagree: not bundled [${missing}], not in the graph [${extra}]`,
      );
    }
    const parts = text.split(PLACEHOLDER);
    if (parts.length !== 2) {
      fail(`expected ${PLACEHOLDER} once in the bundle, found ${parts.length - 1}`);
    }
    await Deno.writeTextFile(tmp, parts.join(JSON.stringify(JSON.stringify(record))));
    await Deno.rename(tmp, out);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

try {
  await build(Deno.args[0] ?? `${ROOT}build/enarx_run.js`);
} catch (error) {
  if (!(error instanceof BuildError)) throw error;
  console.error(`build_run_bundle: ${error.message}`);
  Deno.exit(1);
}
