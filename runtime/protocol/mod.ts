/**
 * The deploy protocol (spec/protocol.md): the deterministic CBOR codec,
 * length-prefixed frames, and every message's type and validator.
 *
 * @module
 */
export * from "./cbor.ts";
export * from "./frames.ts";
export * from "./messages.ts";
