/**
 * A deployed keep's service key for `prot = "tls"` sockets (spec/protocol.md,
 * "POST /v1/service-key"): made in the keep when the client asks, over the
 * TLS connection pinned to the key the client sealed to the attested keep;
 * its CSR and self-signed certificate go back over that connection only. The
 * upload then says which certificate to serve: the chain the deployer's CA
 * issued (`chain`), or the self-signed one. The private key never
 * leaves the keep's memory.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import type { KeepIdentity, PreparedIdentity } from "../wasm/keep_identity.ts";

/** The one service key of a keep, once the client asked for it. */
export class ServiceKey {
  #prepared?: PreparedIdentity;
  #asked = false;

  /**
   * Makes the key for `names` (once; EnarxError `service-key-taken` after).
   * Returns the CSR and the self-signed certificate, DER.
   */
  async make(names: string[]): Promise<{ csr: Uint8Array; certificate: Uint8Array }> {
    if (this.#asked) {
      throw new EnarxError("service-key-taken", "This keep has made its service key already", {
        exit: "dataError",
      });
    }
    this.#asked = true;
    try {
      // Loaded only when asked for: the X.509 library is large.
      const { prepareKeepIdentity } = await import("../wasm/keep_identity.ts");
      this.#prepared = await prepareKeepIdentity({ names });
    } catch (error) {
      this.#asked = false; // a bad name costs the client nothing but the answer
      throw error;
    }
    return { csr: this.#prepared.csr, certificate: this.#prepared.selfSigned };
  }

  /**
   * The identity to serve: with `chain` (the CA's), else self-signed; none
   * when no key was asked for. A chain without a key, or for another key,
   * is EnarxError (65).
   */
  async identity(chain: Uint8Array[] | undefined): Promise<KeepIdentity | undefined> {
    if (this.#prepared === undefined) {
      if (chain === undefined) return undefined;
      throw new EnarxError(
        "service-chain-unexpected",
        `The upload has a "chain" but no service key was asked for; ` +
          `POST /v1/service-key first`,
        { exit: "dataError" },
      );
    }
    try {
      return await this.#prepared.finish(chain);
    } catch (error) {
      if (!(error instanceof EnarxError)) throw error;
      throw new EnarxError(error.code, error.message, { exit: "dataError", cause: error });
    }
  }
}
