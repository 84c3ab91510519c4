/** Helpers shared by the evidence verifiers' tests. */
import assert from "node:assert/strict";
import {
  MalformedEvidenceError,
  type VerificationResult,
} from "../../runtime/attestation/result.ts";

/** The ids of the checks that failed, in order. */
export function failingChecks(result: VerificationResult): string[] {
  return result.checks.filter((c) => !c.ok).map((c) => c.id);
}

/** The check with `id`; fails the test when there is none. */
export function findCheck(result: VerificationResult, id: string) {
  const found = result.checks.find((c) => c.id === id);
  assert.ok(found, `no check ${id} in ${result.checks.map((c) => c.id)}`);
  return found;
}

/**
 * Runs a verifier and resolves to its result, or to "dataError" when it
 * rejects malformed input the documented way (MalformedEvidenceError, exit
 * 65); anything else it throws fails the test.
 */
export async function attemptVerify<O>(
  verify: (evidence: Uint8Array, options: O) => Promise<VerificationResult>,
  evidence: Uint8Array,
  options: O,
): Promise<VerificationResult | "dataError"> {
  try {
    return await verify(evidence, options);
  } catch (error) {
    assert.ok(error instanceof MalformedEvidenceError, `threw ${error}`);
    assert.equal(error.exitStatus, 65, `exit ${error.exitStatus}: ${error.message}`);
    return "dataError";
  }
}
