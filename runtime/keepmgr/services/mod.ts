/**
 * keepmgr's forwards to the services of the keeps it runs (their `listen`
 * sockets), the host ports they use, and detached workloads' output.
 *
 * @module
 */
export { KeepServices } from "./keep_services.ts";
export { OUTPUT_LOG_LIMIT, OutputLog } from "./output_log.ts";
export {
  DEFAULT_SERVICE_PORTS,
  parsePortRange,
  type PortRange,
  ServicePorts,
} from "./port_range.ts";
export { MAX_SERVICE_CONNECTIONS, ServiceForward } from "./service_forward.ts";
