/**
 * Helpers for tests and benchmarks of `prot = "tls"` sockets: a running
 * `enarx run` and the certificate it printed, the certificate a TLS server
 * presents (read with node:tls, which can show it), and a test CA made here
 * with the X.509 library (nothing is committed; keys live in memory).
 */
import * as tls from "node:tls";
import * as x509 from "../../runtime/x509.ts";
import { ROOT } from "./helpers.ts";

/** A running `enarx run` whose stderr is read until its listening or connected line. */
export interface KeepProcess {
  /** The process. */
  child: Deno.ChildProcess;
  /** The port of the line (listening or connected to). */
  port: number;
  /** The SHA-256 printed with it, when the socket presents the keep's certificate. */
  fingerprint?: string;
  /** Waits for the exit: status, stdout and all of stderr. */
  done(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** A running `enarx` command whose stderr was read until a line matched. */
export interface EnarxProcess {
  /** The process. */
  child: Deno.ChildProcess;
  /** The match of the line waited for. */
  match: RegExpExecArray;
  /** Waits for the exit: status, stdout and all of stderr. */
  done(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * Starts `enarx ARGS` and waits until its standard error matches `line`;
 * throws with what it printed when it exits first. The rest of its standard
 * error is read on, for {@link EnarxProcess.done}.
 */
export async function startEnarx(
  args: string[],
  line: RegExp,
  env?: Record<string, string>,
): Promise<EnarxProcess> {
  const child = new Deno.Command(`${ROOT}enarx`, {
    args,
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let match: RegExpExecArray | null = null;
  while (match === null) {
    const { value, done } = await reader.read();
    if (done) {
      const status = await child.status;
      throw new Error(`enarx ${args[0]} exited (${status.code}) before the line ${line}: ${seen}`);
    }
    seen += value;
    match = line.exec(seen);
  }
  const rest = (async () => {
    let text = seen;
    while (true) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += value;
    }
  })();
  return {
    child,
    match,
    async done() {
      const status = await child.status;
      return { code: status.code, stdout: await stdout, stderr: await rest };
    },
  };
}

/** Starts `enarx run ARGS` and waits for a socket line matching `line` (default: listening). */
export async function startKeep(
  args: string[],
  options: { line?: RegExp; env?: Record<string, string> } = {},
): Promise<KeepProcess> {
  const line = options.line ?? /listening on [^\n]*:(\d+) \(tls[^\n]*\n/;
  const { child, match, done } = await startEnarx(["run", ...args], line, options.env);
  const printed = /certificate sha256 ([0-9a-f]{64})/.exec(match[0]);
  return { child, port: Number(match[1]), fingerprint: printed?.[1], done };
}

/** The certificate (PEM) that the TLS server at 127.0.0.1:`port` presents, unverified. */
export function presentedCertificate(port: number, servername = "localhost"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false });
    socket.once("secureConnect", () => {
      const raw = socket.getPeerCertificate(false).raw;
      socket.destroy();
      resolve(new x509.X509Certificate(new Uint8Array(raw)).toString("pem"));
    });
    socket.once("error", reject);
  });
}

/** SHA-256 of the first certificate of `pem`, lower-case hex. */
export async function pemFingerprint(pem: string): Promise<string> {
  return await x509.sha256Fingerprint(x509.pemBlocks(pem)[0]);
}

const SIGNING = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

async function p256(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const lines = der.toBase64().match(/.{1,64}/g) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join("\n")}\n-----END PRIVATE KEY-----\n`;
}

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toHex();
}

/** A test CA: its certificate (PEM) and a way to issue server certificates. */
export interface TestCa {
  /** The CA's certificate, PEM. */
  certPem: string;
  /**
   * Issues a certificate for `dns` (and 127.0.0.1): the chain and its key,
   * PEM; for a TLS server, or with `use = "client"` a TLS client.
   */
  issue(dns: string, use?: "server" | "client"): Promise<{ certPem: string; keyPem: string }>;
}

/** Makes a CA named `name` with a fresh P-256 key (in memory). */
export async function makeTestCa(name: string): Promise<TestCa> {
  const keys = await p256();
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    ],
  }, crypto);
  return {
    certPem: ca.toString("pem"),
    async issue(dns, use = "server") {
      const leaf = await p256();
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${dns}`,
        issuer: ca.subject,
        notBefore: new Date(now - 3_600_000),
        notAfter: new Date(now + 86_400_000),
        signingAlgorithm: SIGNING,
        publicKey: leaf.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.SubjectAlternativeNameExtension([
            { type: "dns", value: dns },
            { type: "ip", value: "127.0.0.1" },
          ]),
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.ExtendedKeyUsageExtension([
            use === "client" ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth,
          ]),
          await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
        ],
      }, crypto);
      return { certPem: cert.toString("pem") + ca.toString("pem"), keyPem: await keyPem(leaf) };
    },
  };
}
