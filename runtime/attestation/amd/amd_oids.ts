/**
 * The object identifiers of AMD's VCEK and VLEK certificate extensions
 * (AMD's "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
 * Interface Specification", #57230, table "VCEK Certificate Extensions"),
 * in a module of their own so that the simulator, which writes them, does
 * not load the verifier and its X.509 library to sign a report.
 *
 * @module
 */

/** AMD's certificate extension OIDs (1.3.6.1.4.1.3704.1.*). */
export const AMD_OID = {
  structVersion: "1.3.6.1.4.1.3704.1.1",
  productName: "1.3.6.1.4.1.3704.1.2",
  blSpl: "1.3.6.1.4.1.3704.1.3.1",
  teeSpl: "1.3.6.1.4.1.3704.1.3.2",
  snpSpl: "1.3.6.1.4.1.3704.1.3.3",
  ucodeSpl: "1.3.6.1.4.1.3704.1.3.8",
  fmcSpl: "1.3.6.1.4.1.3704.1.3.9",
  hwId: "1.3.6.1.4.1.3704.1.4",
  cspId: "1.3.6.1.4.1.3704.1.5",
} as const;
