/**
 * A deployed workload's `listen` and `connect` sockets, as wasmldr handles
 * them, in nil, kvm and sev keeps: every `listen` socket is opened with a
 * port the system chooses on the keep's 127.0.0.1 (a nil keep never binds the
 * host's public interfaces) or, in a VM keep, on the guest's interface, which
 * only QEMU's forwards from the host's 127.0.0.1 reach
 * (runtime/backends/vm/user_net.ts); and reported to keepmgr in one
 * `services` frame, which forwards a host port to each (spec/protocol.md,
 * "services").
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import type { ServicesFrame, ServiceSocket } from "../protocol/messages.ts";
import type { EnarxConfig } from "../wasm/config.ts";
import type { GuestSocket } from "../wasm/sockets.ts";

/** The backends whose keeps may have sockets. */
export const SOCKET_BACKENDS: readonly string[] = ["nil", "kvm", "sev"];

/** Whether `config` has `listen` or `connect` sockets. */
export function hasSockets(config: EnarxConfig | undefined): boolean {
  return (config?.files ?? []).some((f) => f.kind === "listen" || f.kind === "connect");
}

/**
 * Refuses sockets in a keep on a backend not in {@link SOCKET_BACKENDS}:
 * EnarxError `sockets-unsupported-backend` (exit 69).
 */
export function checkSocketBackend(config: EnarxConfig | undefined, backend: string): void {
  if (!hasSockets(config) || SOCKET_BACKENDS.includes(backend)) return;
  const socket = config!.files.find((f) => f.kind === "listen" || f.kind === "connect")!;
  throw new EnarxError(
    "sockets-unsupported-backend",
    `[[files]] "${socket.name}" (kind "${socket.kind}") needs a ${
      SOCKET_BACKENDS.join(", ")
    } keep; a ${backend} keep cannot serve or open sockets yet: deploy with --backend nil`,
    { exit: "unavailable" },
  );
}

/**
 * Refuses two `listen` sockets of the same name: keepmgr names each
 * endpoint by its socket. EnarxError `config-invalid` (exit 65, as other config errors).
 */
export function checkListenNames(config: EnarxConfig | undefined): void {
  const seen = new Set<string>();
  for (const f of config?.files ?? []) {
    if (f.kind !== "listen") continue;
    const name = f.name ?? "";
    if (seen.has(name)) {
      throw new EnarxError(
        "config-invalid",
        `Two [[files]] listen entries are named "${name}"; give each a name of its own`,
        { exit: "dataError" },
      );
    }
    seen.add(name);
  }
}

/** What wasmldr checks of a deployed config's sockets: {@link checkSocketBackend}, {@link checkListenNames}. */
export function checkDeployedSockets(config: EnarxConfig | undefined, backend: string): void {
  checkSocketBackend(config, backend);
  checkListenNames(config);
}

/**
 * `config` with every `listen` socket moved to `options.host` (default
 * 127.0.0.1; a VM keep's wasmldr gives the guest's interface, where it serves
 * its own HTTPS) and a port the system chooses, and the ports those entries
 * asked for, by name.
 */
export function keepLocalListens(
  config: EnarxConfig,
  options: { host?: string } = {},
): { config: EnarxConfig; asked: Map<string, number> } {
  const asked = new Map<string, number>();
  const addr = options.host ?? "127.0.0.1";
  const files = config.files.map((f) => {
    if (f.kind !== "listen") return f;
    asked.set(f.name ?? "", f.port ?? 0);
    return { ...f, addr, port: 0 };
  });
  return { config: { ...config, files }, asked };
}

/**
 * Collects the opened `listen` sockets (RunOptions.onSocket) and calls
 * `send` with the `services` frame once all `asked` have opened.
 */
export function servicesReporter(
  asked: Map<string, number>,
  send: (frame: ServicesFrame) => void,
): (socket: GuestSocket) => void {
  const services: ServiceSocket[] = [];
  return (socket) => {
    if (socket.kind !== "listen") return;
    services.push({
      name: socket.name,
      prot: socket.tls === undefined ? "tcp" : "tls",
      port: socket.port,
      asked: asked.get(socket.name) ?? 0,
    });
    if (services.length === asked.size) send({ t: "services", services });
  };
}
