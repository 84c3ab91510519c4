/**
 * keepmgr's own TLS identity: a P-256 key and self-signed certificate made on
 * first start and kept in the state directory, or files the operator names.
 * This channel is not a trust root for deploys (the host is untrusted and
 * nothing secret crosses it unsealed); it keeps the listing and control API
 * private from the network and lets a client pin the host with
 * `--keepmgr-ca`.
 *
 * @module
 */
import * as x509 from "../x509.ts";
import { EnarxError } from "../errors.ts";
import { writeFileAtomic, writeSecretFile } from "../fs.ts";

/** A PEM certificate and key, with the certificate's SHA-256 fingerprint. */
export interface KeepmgrTls {
  /** Certificate, PEM. */
  cert: string;
  /** Private key, PKCS#8 PEM. */
  key: string;
  /** SHA-256 of the certificate's DER, lower-case hex. */
  fingerprint: string;
  /** Where the files are. */
  certFile: string;
  /** Where the key is. */
  keyFile: string;
  /** True when this call generated them. */
  generated: boolean;
}

/** Options of {@link loadOrCreateKeepmgrTls}. */
export interface KeepmgrTlsOptions {
  /** Operator's certificate file (with `keyFile`). */
  certFile?: string;
  /** Operator's key file (with `certFile`). */
  keyFile?: string;
  /** Extra subject alternative names: host names or IP addresses. */
  names?: string[];
}

/**
 * Stores a generated pair: the key 0600 in a 0700 directory of this user
 * (runtime/fs.ts), the certificate 0644 beside it, each written atomically.
 */
async function storeGeneratedPair(
  certFile: string,
  keyFile: string,
  pair: { cert: string; key: string },
): Promise<void> {
  await writeSecretFile(keyFile, pair.key);
  await writeFileAtomic(certFile, pair.cert, { mode: 0o644 });
}

/**
 * Reads the operator's certificate and key, or the ones in `stateDir/tls/`,
 * or makes and stores a new self-signed P-256 pair there (key mode 0600).
 */
export async function loadOrCreateKeepmgrTls(
  stateDir: string,
  options: KeepmgrTlsOptions = {},
): Promise<KeepmgrTls> {
  if ((options.certFile === undefined) !== (options.keyFile === undefined)) {
    throw new EnarxError(
      "usage",
      "Give both --tls-cert and --tls-key, or neither to use a generated certificate",
      { exit: "usage" },
    );
  }
  const certFile = options.certFile ?? `${stateDir}/tls/cert.pem`;
  const keyFile = options.keyFile ?? `${stateDir}/tls/key.pem`;
  let generated = false;
  if (options.certFile === undefined && !(await exists(certFile))) {
    await storeGeneratedPair(certFile, keyFile, await makeSelfSigned(options.names ?? []));
    generated = true;
  }
  let cert: string;
  let key: string;
  try {
    cert = await Deno.readTextFile(certFile);
    key = await Deno.readTextFile(keyFile);
  } catch (error) {
    throw new EnarxError(
      "tls-files",
      `Cannot read the TLS certificate "${certFile}" or key "${keyFile}": ${
        error instanceof Error ? error.message : error
      }; check the paths`,
      { exit: "noInput", cause: error },
    );
  }
  const der = x509.pemBlocks(cert)[0];
  if (der === undefined) {
    throw new EnarxError(
      "tls-files",
      `"${certFile}" holds no PEM certificate; give a PEM file`,
      { exit: "dataError" },
    );
  }
  return {
    cert,
    key,
    fingerprint: await x509.sha256Fingerprint(der),
    certFile,
    keyFile,
    generated,
  };
}

async function makeSelfSigned(names: string[]): Promise<{ cert: string; key: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const sans = new Set(["localhost", "127.0.0.1", "::1", ...names]);
  const altNames = [...sans].filter((n) => n !== "" && n !== "0.0.0.0" && n !== "::").map((n) =>
    /^[0-9.]+$/.test(n) || n.includes(":") ? { type: "ip" as const, value: n } : {
      type: "dns" as const,
      value: n,
    }
  );
  const now = new Date();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.getRandomValues(new Uint8Array(8)).toHex().replace(/^[89a-f]/, "1"),
    name: "CN=enarx keepmgr",
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 10 * 365 * 24 * 3600_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(altNames),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const key = toPem(pkcs8, "PRIVATE KEY");
  return { cert: cert.toString("pem") + "\n", key };
}

function toPem(der: Uint8Array, label: string): string {
  const b64 = der.toBase64();
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
