/**
 * @peculiar/x509, loaded after reflect-metadata as it requires. Import X.509
 * classes from here, never from "@peculiar/x509" directly.
 *
 * @module
 */
import "reflect-metadata";
export * from "@peculiar/x509";
