/**
 * Small file-system helpers private to runtime/.
 *
 * @module
 */

/** True when something exists at `path` (following links); never throws. */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
