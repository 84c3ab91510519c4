/**
 * The TCB statuses Intel assigns to a TCB level (Intel PCS API v4), shared
 * by the collateral verifier and the policy parser.
 *
 * @module
 */

/** TCB statuses Intel assigns to a TCB level (PCS API v4). */
export const TCB_STATUSES = [
  "UpToDate",
  "SWHardeningNeeded",
  "ConfigurationNeeded",
  "ConfigurationAndSWHardeningNeeded",
  "OutOfDate",
  "OutOfDateConfigurationNeeded",
  "Revoked",
] as const;

/** One of {@link TCB_STATUSES}. */
export type TcbStatus = typeof TCB_STATUSES[number];
