/**
 * cli/_command.ts's own argument parser against node:util's parseArgs (which
 * it replaces to keep the Node compatibility layer out of start-up): the
 * same values and positionals for every accepted command line, an error for
 * every refused one, and node's error texts on one line.
 */
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { parseCommandArgs } from "../cli/_command.ts";
import { UsageError } from "../runtime/errors.ts";

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  quiet: { type: "boolean", short: "q" },
  backend: { type: "string", default: "nil" },
  dir: { type: "string", multiple: true },
  env: { type: "string", multiple: true },
  timeout: { type: "string" },
  "no-cache": { type: "boolean" },
} as const;

const CASES: string[][] = [
  [],
  ["module.wasm"],
  ["--help"],
  ["-h"],
  ["-hq"],
  ["-qh", "x"],
  ["--help", "--help"],
  ["--backend", "kvm", "m.wasm"],
  ["--backend=kvm"],
  ["--backend="],
  ["--backend=-x"],
  ["--dir=a", "--dir", "b", "-h", "pos", "--", "--x", "-h"],
  ["--env", "A=1", "--env=B=2", "m"],
  ["--timeout", "1s", "--timeout", "2s"],
  ["--dir", "-"],
  ["-"],
  ["a", "b", "-h", "c"],
  ["--", "--help"],
  ["--no-cache", "m"],
  ["--nope"],
  ["--nope=1"],
  ["-x"],
  ["-hx"],
  ["-h=1"],
  ["---x"],
  ["--Help"],
  ["--dir"],
  ["--dir", "--help"],
  ["--dir", "--"],
  ["--help=1"],
  ["--no-cache=yes"],
  ["--constructor"],
  ["--__proto__"],
  ["-"],
];

function ours(args: string[], allowPositionals = true) {
  return parseCommandArgs("run", args, { options: OPTIONS, allowPositionals });
}

function node(args: string[], allowPositionals = true) {
  return parseArgs({ args, options: OPTIONS, allowPositionals, strict: true });
}

Deno.test("parseCommandArgs: the same result as node:util parseArgs, or an error where it errs", () => {
  for (const allowPositionals of [true, false]) {
    for (const args of CASES) {
      let expected: unknown;
      let nodeError: Error | undefined;
      try {
        expected = node(args, allowPositionals);
      } catch (error) {
        nodeError = error as Error;
      }
      const label = `${JSON.stringify(args)} (allowPositionals ${allowPositionals})`;
      if (nodeError) {
        assert.throws(() => ours(args, allowPositionals), (error: unknown) => {
          assert.ok(error instanceof UsageError, label);
          // node's text, on one line, with its trailing period dropped.
          const text = nodeError.message.replace(/\n/g, " ").replace(/\.$/, "");
          const ourText = error.message.replace(/; see "enarx run --help"$/, "");
          // node leaves the quote of "as in '-- ..." open; ours closes it.
          const closed = text.includes("as in '-- ") ? `${text}'` : text;
          assert.equal(ourText, closed, label);
          assert.doesNotMatch(error.message, /\n/, label);
          return true;
        }, label);
      } else {
        const got = ours(args, allowPositionals);
        assert.deepEqual(
          { values: { ...got.values }, positionals: got.positionals },
          JSON.parse(JSON.stringify(expected)),
          label,
        );
      }
    }
  }
});

Deno.test("parseCommandArgs: errors are one line naming the command's help", () => {
  assert.throws(
    () => ours(["--nope"]),
    new UsageError(
      `Unknown option '--nope'. To specify a positional argument starting with a '-', place it ` +
        `at the end of the command after '--', as in '-- "--nope"'; see "enarx run --help"`,
    ),
  );
  assert.throws(
    () => ours(["--dir"]),
    new UsageError(`Option '--dir <value>' argument missing; see "enarx run --help"`),
  );
  assert.throws(
    () => ours(["a"], false),
    new UsageError(
      `Unexpected argument 'a'. This command does not take positional arguments; ` +
        `see "enarx run --help"`,
    ),
  );
});
