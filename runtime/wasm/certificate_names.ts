/**
 * The names a keep's TLS certificate is for (`enarx run --service-name`):
 * DNS names and IP addresses, checked once so that a typo is a clear error
 * rather than a certificate no client accepts.
 *
 * @module
 */
import { isIP } from "node:net";
import { UsageError } from "../errors.ts";

/** The names of a keep's certificate when none are given. */
export const DEFAULT_SERVICE_NAMES: readonly string[] = ["localhost", "127.0.0.1"];

/** One subject alternative name: a DNS name or an IP address. */
export interface ServiceName {
  /** `dns` or `ip`. */
  type: "dns" | "ip";
  /** The name (lower case) or the address as given. */
  value: string;
}

/** A DNS label: letters, digits and hyphens, not at either end (RFC 1035 section 2.3.1). */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Says why `name` is not a DNS name a certificate may hold, or returns undefined. */
function dnsProblem(name: string): string | undefined {
  if (name.length > 253) return "longer than 253 characters";
  const labels = name.split(".");
  // A wildcard only as the whole leftmost label (RFC 6125 section 6.4.3).
  const first = labels[0] === "*" && labels.length > 2 ? 1 : 0;
  for (const label of labels.slice(first)) {
    if (!LABEL.test(label)) return `label "${label}" is not letters, digits and inner hyphens`;
  }
  return undefined;
}

/**
 * Parses one `--service-name` value: an IPv4 or IPv6 address (brackets
 * allowed) or a DNS name (`*.` wildcard allowed). Throws UsageError (64).
 */
export function parseServiceName(text: string): ServiceName {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (isIP(bare) !== 0) return { type: "ip", value: bare };
  const name = text.toLowerCase().replace(/\.$/, "");
  const problem = name === "" ? "empty" : dnsProblem(name);
  if (problem !== undefined) {
    throw new UsageError(
      `Invalid --service-name "${text}": ${problem}; use a DNS name (api.example.net) or an IP address`,
    );
  }
  return { type: "dns", value: name };
}

/** Parses every name, dropping repeats; the defaults when `names` is empty or undefined. */
export function serviceNames(names: readonly string[] | undefined): ServiceName[] {
  const given = names === undefined || names.length === 0 ? DEFAULT_SERVICE_NAMES : names;
  const out: ServiceName[] = [];
  for (const parsed of given.map(parseServiceName)) {
    if (!out.some((n) => n.type === parsed.type && n.value === parsed.value)) out.push(parsed);
  }
  return out;
}
