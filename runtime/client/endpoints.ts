/**
 * Learning where a deployed workload's `listen` sockets are reached: the
 * keep reports its sockets to keepmgr once the workload has opened them,
 * a moment after the upload was accepted, so the client asks keepmgr (GET
 * /v1/keeps/{id}) until every endpoint is there or the keep has ended.
 *
 * @module
 */
import type { Endpoint, ShowKeepResponse } from "../protocol/messages.ts";

/** How often keepmgr is asked while endpoints are awaited. */
const POLL_MS = 50;

/** How the wait ended: every endpoint known, the keep ended, or stopped. */
export type EndpointOutcome =
  | { kind: "ready"; endpoints: Endpoint[] }
  | { kind: "ended"; keep: ShowKeepResponse }
  | { kind: "stopped" };

/** A wait for endpoints under way. */
export interface EndpointWatch {
  /** The endpoints known so far. */
  readonly endpoints: Endpoint[];
  /** Settles when the wait ends. */
  readonly done: Promise<EndpointOutcome>;
  /** Stops asking. */
  stop(): void;
}

/**
 * Asks `show` for keep `keepId` until it lists `count` endpoints (each is
 * handed to `onEndpoint` once) or has ended; with `count` 0 it settles at
 * once. A failing `show` ends the wait as stopped.
 */
export function watchEndpoints(
  show: (keepId: string) => Promise<ShowKeepResponse>,
  keepId: string,
  options: { count: number; onEndpoint?: (endpoint: Endpoint) => void },
): EndpointWatch {
  const endpoints: Endpoint[] = [];
  let stopped = options.count === 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | undefined;
  const done = (async (): Promise<EndpointOutcome> => {
    while (!stopped) {
      let shown: ShowKeepResponse;
      try {
        shown = await show(keepId);
      } catch {
        return { kind: "stopped" };
      }
      for (const endpoint of shown.endpoints ?? []) {
        if (endpoints.some((e) => e.name === endpoint.name)) continue;
        endpoints.push(endpoint);
        options.onEndpoint?.(endpoint);
      }
      if (endpoints.length >= options.count) return { kind: "ready", endpoints };
      if (shown.state === "exited" || shown.state === "failed") {
        return { kind: "ended", keep: shown };
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, POLL_MS);
      });
    }
    return options.count === 0 ? { kind: "ready", endpoints } : { kind: "stopped" };
  })();
  return {
    endpoints,
    done,
    stop() {
      stopped = true;
      // Only when set: even reading Deno's global clearTimeout loads
      // node:timers (~5 ms of CPU), which a deploy without services skips.
      if (timer !== undefined) clearTimeout(timer);
      wake?.();
    },
  };
}
