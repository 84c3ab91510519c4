/**
 * Runs a WASI preview 1 command module with Node's built-in `node:wasi`: one
 * of the peers that issue 11's benchmarks compare `enarx run` with (see
 * bench/peers.sh). It does what bench/native/run.c does, the Node way: read
 * the module, compile it (Node keeps no compiled code between runs: V8
 * compiles every function with Liftoff, its baseline compiler, then TurboFan
 * tiers up the hot ones), argv[0] = the module's file name, no environment,
 * inherited stdio, preopened directories, call `_start` and exit with the
 * guest's status.
 *
 *     node --no-warnings bench/node_wasi.mjs [--dir HOST::GUEST[:ro]]... MODULE.wasm [ARGS...]
 *
 * `--dir` takes the same form as `enarx run --dir`; node:wasi has no
 * read-only preopens, so a `:ro` directory is preopened writable. Exit status:
 * the guest's, 134 on a trap, 64 on bad usage, 66 when the module cannot be
 * read, 70 when it cannot be compiled or instantiated.
 *
 * @module
 */
import { fstatSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import process from "node:process";
import { WASI } from "node:wasi";

const USAGE = "usage: node_wasi.mjs [--dir HOST::GUEST[:ro]]... MODULE.wasm [ARGS...]";

/** Splits the command line into preopens, the module's path and its arguments. */
function parseArgs(argv) {
  const preopens = {};
  let i = 0;
  for (; i < argv.length && argv[i].startsWith("--"); i++) {
    if (argv[i] !== "--dir" || i + 1 >= argv.length) {
      throw new UsageError(`Unknown option "${argv[i]}"; ${USAGE}`);
    }
    const spec = argv[++i];
    const sep = spec.indexOf("::");
    const guest = spec.slice(sep + 2).replace(/:ro$/, "");
    if (sep <= 0 || guest === "") {
      throw new UsageError(`--dir wants HOST::GUEST or HOST::GUEST:ro, not "${spec}"`);
    }
    preopens[guest] = spec.slice(0, sep);
  }
  if (i >= argv.length) throw new UsageError(USAGE);
  return { preopens, module: argv[i], args: argv.slice(i + 1) };
}

/**
 * The descriptor the guest gets as stdio fd `fd`. Node (as an ES module) puts
 * a pipe on its stdio into non-blocking mode, and node:wasi then passes
 * EAGAIN on to the guest, whose write fails when the pipe is full; so a pipe
 * is opened anew through /proc/self/fd, which gives a blocking file
 * description of the same pipe.
 */
function blockingStdio(fd) {
  if (!fstatSync(fd).isFIFO()) return fd;
  return openSync(`/proc/self/fd/${fd}`, fd === 0 ? "r" : "w");
}

/** A command line this runner cannot use. */
class UsageError extends Error {}

async function main(argv) {
  let options;
  try {
    options = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`node_wasi: ${e.message}`);
    return 64;
  }
  let bytes;
  try {
    bytes = await readFile(options.module);
  } catch (e) {
    console.error(`node_wasi: Cannot read "${options.module}": ${e.message}`);
    return 66;
  }
  const wasi = new WASI({
    version: "preview1",
    args: [basename(options.module), ...options.args],
    env: {},
    preopens: options.preopens,
    returnOnExit: true,
    stdin: blockingStdio(0),
    stdout: blockingStdio(1),
    stderr: blockingStdio(2),
  });
  let instance;
  try {
    const module = await WebAssembly.compile(bytes);
    instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  } catch (e) {
    console.error(`node_wasi: Cannot load "${options.module}": ${e.message}`);
    return 70;
  }
  try {
    return wasi.start(instance);
  } catch (e) {
    console.error(`node_wasi: trap: ${e.message}`);
    return 134;
  }
}

process.exitCode = await main(process.argv.slice(2));
