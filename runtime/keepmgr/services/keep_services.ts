/**
 * The services of one keep: a {@link ServiceForward} from a host port of
 * {@link ServicePorts} to each `listen` socket the keep reported in its
 * `services` frame, and the endpoints they make. All or nothing: when one
 * service gets no port, the ports already taken are given back.
 *
 * @module
 */
import type { Endpoint, ServicesFrame } from "../../protocol/messages.ts";
import type { ServicePorts } from "./port_range.ts";
import { ServiceForward } from "./service_forward.ts";

/** The forwards of one keep's services. */
export class KeepServices {
  readonly #ports: ServicePorts;
  readonly #host: string;
  #forwards: { name: string; prot: string; forward: ServiceForward }[] = [];

  /** Services whose ports come from `ports`, reached at `host`. */
  constructor(ports: ServicePorts, host: string) {
    this.#ports = ports;
    this.#host = host;
  }

  /**
   * Opens a forward for each service of `frame`; returns the endpoints.
   * Throws KeepError `no-free-port` (after closing what it opened).
   */
  open(frame: ServicesFrame, keepId: string): Endpoint[] {
    try {
      for (const service of frame.services) {
        const listener = this.#ports.listen(
          service.asked,
          `service "${service.name}" of keep "${keepId}"`,
        );
        const forward = new ServiceForward(listener, service.port);
        this.#forwards.push({ name: service.name, prot: service.prot, forward });
      }
    } catch (error) {
      this.close();
      throw error;
    }
    return this.endpoints;
  }

  /** Where each service is reached now. */
  get endpoints(): Endpoint[] {
    return this.#forwards.map(({ name, prot, forward }) => ({
      name,
      prot,
      host: this.#host,
      port: forward.port,
    }));
  }

  /** Closes every forward and gives its port back. */
  async close(): Promise<void> {
    const forwards = this.#forwards;
    this.#forwards = [];
    await Promise.all(forwards.map(async ({ forward }) => {
      const port = forward.port;
      await forward.close();
      this.#ports.release(port);
    }));
  }
}
