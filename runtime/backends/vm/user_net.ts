/**
 * The `listen` sockets of a VM keep (kvm, and sev: the same image and the
 * same network), made reachable from the host. Inside the VM wasmldr opens
 * each on the guest's interface with a port the guest chooses and reports
 * them in its `services` frame (runtime/keep/deployed_sockets.ts); keepldr,
 * on the host, asks QEMU for a user-mode network forward from a free port
 * of the host's 127.0.0.1 to each guest port (`hostfwd_add`, through QEMU's
 * machine protocol, QMP, on a unix socket in the keep's work directory) and
 * passes the frame on with each port replaced by its host port, so that
 * keepmgr's forward (runtime/keepmgr/services/) relays to it as it does for
 * a nil keep. Nothing listens on the host's other interfaces: only keepmgr
 * decides that.
 *
 * Outbound (`connect`) needs nothing here: QEMU's user-mode network (slirp)
 * carries the guest's TCP connections out as the host's, and answers DNS at
 * 10.0.2.3, which the image's /etc/resolv.conf names (../kvm_image.ts).
 *
 * @module
 */
import { EnarxError } from "../../errors.ts";
import type { ServicesFrame } from "../../protocol/messages.ts";
import { QmpClient } from "./qmp.ts";

/** The id of the keep's user-mode network in QEMU (`hostfwd_add` names it). */
export const USER_NET_ID = "net0";

/** The file name of the QMP socket in the keep's work directory. */
export const QMP_SOCKET_NAME = "qmp.sock";

/** How many free host ports are tried for one forward (another process may take one first). */
export const FORWARD_ATTEMPTS = 5;

/**
 * QEMU's arguments for a VM keep's network: user-mode networking on a
 * virtio NIC with the forward from `hostPort` on the host's 127.0.0.1 to
 * wasmldr's `guestPort`, and the QMP socket through which further forwards
 * are added while the keep runs.
 */
export function vmNetworkArgs(
  forward: { hostPort: number; guestPort: number },
  qmpSocket: string,
): string[] {
  return [
    "-nic",
    `user,id=${USER_NET_ID},model=virtio-net-pci,` +
    `hostfwd=tcp:127.0.0.1:${forward.hostPort}-:${forward.guestPort}`,
    "-qmp",
    `unix:${qmpSocket},server=on,wait=off`,
  ];
}

/** The human-monitor command that forwards `hostPort` on 127.0.0.1 to the guest's `guestPort`. */
export function hostfwdCommand(hostPort: number, guestPort: number): string {
  return `hostfwd_add ${USER_NET_ID} tcp:127.0.0.1:${hostPort}-:${guestPort}`;
}

/**
 * `frame` with each service's port replaced by the host port that reaches
 * it (`hostPorts`, in the frame's order); everything else unchanged.
 */
export function servicesOnHost(frame: ServicesFrame, hostPorts: readonly number[]): ServicesFrame {
  if (hostPorts.length !== frame.services.length) {
    throw new RangeError(
      `${hostPorts.length} host ports for ${frame.services.length} services`,
    );
  }
  return {
    t: "services",
    services: frame.services.map((s, i) => ({ ...s, port: hostPorts[i] })),
  };
}

/** Forwards host ports to guest ports, in order; returns the host ports. */
export type GuestPortForwarder = (guestPorts: number[]) => Promise<number[]>;

/**
 * The frame keepmgr gets for a VM keep's `services` frame: every guest port
 * forwarded from the host ({@link servicesOnHost}). Throws EnarxError
 * `service-forward` (exit 69) when QEMU refuses or does not answer.
 */
export async function forwardVmServices(
  frame: ServicesFrame,
  forward: GuestPortForwarder,
): Promise<ServicesFrame> {
  let hostPorts: number[];
  try {
    hostPorts = await forward(frame.services.map((s) => s.port));
  } catch (error) {
    const names = frame.services.map((s) => `"${s.name}"`).join(", ");
    throw new EnarxError(
      "service-forward",
      `Cannot forward host ports to the VM keep's services ${names}: ${
        error instanceof Error ? error.message : error
      }`,
      { exit: "unavailable", cause: error },
    );
  }
  return servicesOnHost(frame, hostPorts);
}

/** A port of 127.0.0.1 free now (the kernel's choice). */
export function freeLoopbackPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/**
 * Adds a forward from a free port of the host's 127.0.0.1 to the guest's
 * `guestPort`; returns that host port. A port taken between choosing and
 * binding it is retried with another, {@link FORWARD_ATTEMPTS} times.
 */
export async function addHostForward(
  qmp: QmpClient,
  guestPort: number,
  options: { freePort?: () => number } = {},
): Promise<number> {
  const freePort = options.freePort ?? freeLoopbackPort;
  let said = "";
  for (let attempt = 0; attempt < FORWARD_ATTEMPTS; attempt++) {
    const hostPort = freePort();
    said = await qmp.human(hostfwdCommand(hostPort, guestPort));
    // hostfwd_add prints nothing when it worked, and why when it did not.
    if (said === "") return hostPort;
  }
  throw new Error(`QEMU could not forward to guest port ${guestPort}: ${said}`);
}

/** A {@link GuestPortForwarder} through the QMP socket at `qmpSocket` (one connection per call). */
export function qmpForwarder(qmpSocket: string): GuestPortForwarder {
  return async (guestPorts) => {
    const qmp = await QmpClient.connect(qmpSocket);
    try {
      const hostPorts: number[] = [];
      for (const port of guestPorts) hostPorts.push(await addHostForward(qmp, port));
      return hostPorts;
    } finally {
      qmp.close();
    }
  };
}
