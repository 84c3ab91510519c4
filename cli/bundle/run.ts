/**
 * The entry of the run bundle, build/enarx_run.js: `enarx run` of a nil keep
 * as one JavaScript file (tools/build_run_bundle.ts makes it with `deno
 * bundle`; ./enarx runs it for `run`). Deno loads one module instead of the
 * twenty of cli/main.ts's `run`, 4-5 ms less per cached run (BENCHMARKS.md,
 * "Start-up cut").
 *
 * cli/bundle/guard.ts comes first: a bundle older than its sources never
 * runs. Arguments the bundle does not cover (cli/run.ts runBundleCovers: a
 * VM backend, `--help`, options that load modules on demand) and any first
 * argument but `run` go to cli/main.ts, loaded from the sources. Otherwise it
 * does what cli/main.ts does for `run`: runs the command, prints an error as
 * one line, exits with the status.
 *
 * @module
 */
import { runFromSources } from "./guard.ts";
import { reportError } from "../_command.ts";
import { command, runBundleCovers } from "../run.ts";

const [name, ...args] = Deno.args;
if (name !== "run" || !runBundleCovers(args)) await runFromSources();
let status: number;
try {
  status = await command.run(args);
} catch (error) {
  status = reportError(error, false);
}
Deno.exit(status);
