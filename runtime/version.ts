/**
 * Versions that enarx reports and pins.
 *
 * @module
 */

/** The version of enarx itself. */
export const ENARX_VERSION = "0.1.0";

/**
 * The wasmtime release whose C API enarx loads. Must equal
 * `WASMTIME_VERSION` in tools/versions.sh (a test checks it); it is part of
 * the module cache key, so a new wasmtime never runs an old cached module.
 */
export const WASMTIME_VERSION = "50.0.1";
