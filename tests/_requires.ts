/**
 * Tests that need a tool outside the repository (systemd-analyze, QEMU, the
 * keep kernel) say so instead of vanishing: {@link requires} prints one
 * `SKIP` line naming the tool and how to get it, and the test is counted as
 * ignored in Deno's summary and in tools/test.sh's closing line. Under
 * tools/test.sh (`ENARX_TEST_REQUIRE_ALL=1`), which installs every such tool,
 * a missing one is a failure, never a skip.
 *
 * @module
 */

/** A tool a test needs, whether it is here, and how to get it. */
export interface Requirement {
  /** What is needed, as a person would name it. */
  tool: string;
  /** Whether it is present on this machine. */
  present: boolean;
  /** How to get it (a command or a script). */
  remedy: string;
}

/**
 * The `ignore` value and the function for a test that needs `need`: the
 * test runs when the tool is present; otherwise it is skipped with a `SKIP`
 * line on stderr, or, when the environment demands every tool, it runs and
 * fails with a message naming the tool.
 */
export function requires(
  need: Requirement,
  fn: () => void | Promise<void>,
): { ignore: boolean; fn: () => void | Promise<void> } {
  if (need.present) return { ignore: false, fn };
  if (Deno.env.get("ENARX_TEST_REQUIRE_ALL") === "1") {
    return {
      ignore: false,
      fn: () => {
        throw new Error(`${need.tool} is missing though every tool is required: ${need.remedy}`);
      },
    };
  }
  console.error(`SKIP: ${need.tool} is missing (${need.remedy})`);
  return { ignore: true, fn };
}

/** Whether a file exists (for {@link Requirement.present}). */
export function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
