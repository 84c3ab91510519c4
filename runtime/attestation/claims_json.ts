/**
 * The one rendering of claims for people and JSON: bytes become lower-case
 * hex, everything else stays as it is, in the same key order. Used only where
 * claims leave the program (`attest verify` text and `--json`, `deploy
 * --json`); everywhere else claims are compared as bytes.
 *
 * @module
 */
import type { ClaimMap, ClaimValue } from "./result.ts";

/** A rendered claim: what JSON can hold (undefined is left out, as JSON.stringify does). */
export type JsonClaim = undefined | string | number | boolean | null | JsonClaim[] | {
  [name: string]: JsonClaim;
};

function render(value: ClaimValue): JsonClaim {
  if (value instanceof Uint8Array) return value.toHex();
  if (Array.isArray(value)) return value.map(render);
  if (typeof value === "object" && value !== null) return claimsToJson(value as ClaimMap);
  return value as JsonClaim;
}

/** Claims as JSON values: bytes as lower-case hex (spec/attestation-json.md). */
export function claimsToJson(claims: ClaimMap): { [name: string]: JsonClaim } {
  const out: { [name: string]: JsonClaim } = {};
  for (const [name, value] of Object.entries(claims)) out[name] = render(value);
  return out;
}
