/**
 * keepmgr's create queue (runtime/keepmgr/api/create_queue.ts) on its own: creates
 * are started in the order they came, never more than `maxCreating` at once,
 * each waiting one knows how many are ahead, a full queue refuses with 503
 * `queue-full`, tickets nobody polls are given up (a keep created for one is
 * handed back), and closing ends the waiting ones with `shutting-down`.
 */
import assert from "node:assert/strict";
import { CreateQueue, type Ticket } from "../../runtime/keepmgr/api/create_queue.ts";
import { RetryLaterError } from "../../runtime/keepmgr/api/limits.ts";
import { KeepError } from "../../runtime/keepmgr/keep_table.ts";

/** A create the test ends by hand. */
interface Pending {
  name: string;
  finish(value: string): void;
  fail(error: Error): void;
}

function harness(maxCreating: number, maxQueued: number) {
  const queue = new CreateQueue<string>({ maxCreating, maxQueued, abandonMs: 1_000 });
  const started: Pending[] = [];
  const abandoned: string[] = [];
  const enter = (name: string): Ticket<string> =>
    queue.enter(
      () =>
        new Promise<string>((resolve, reject) => {
          started.push({ name, finish: resolve, fail: reject });
        }),
      (value) => abandoned.push(value),
    );
  return { queue, started, abandoned, enter };
}

Deno.test("create queue: at most maxCreating run, the rest start in arrival order with their place", async () => {
  const { queue, started, enter } = harness(2, 10);
  const tickets = ["a", "b", "c", "d", "e"].map(enter);
  assert.deepEqual(started.map((p) => p.name), ["a", "b"]);
  assert.equal(queue.creating, 2);
  assert.equal(queue.queued, 3);
  assert.deepEqual(tickets.map((t) => t.state), [
    "creating",
    "creating",
    "queued",
    "queued",
    "queued",
  ]);
  assert.deepEqual(tickets.map((t) => queue.ahead(t)), [0, 0, 0, 1, 2]);

  started[1].finish("keep-b");
  await tickets[1].ended;
  assert.deepEqual(tickets[1].outcome, { value: "keep-b" });
  assert.deepEqual(started.map((p) => p.name), ["a", "b", "c"]);
  assert.deepEqual(tickets.slice(3).map((t) => queue.ahead(t)), [0, 1]);

  started[0].fail(new Error("keep failed"));
  await tickets[0].ended;
  assert.ok(tickets[0].outcome !== undefined && "error" in tickets[0].outcome);
  assert.deepEqual(started.map((p) => p.name), ["a", "b", "c", "d"]);
  for (const p of started.slice(2)) p.finish(`keep-${p.name}`);
  await Promise.all(tickets.slice(2, 4).map((t) => t.ended));
  assert.deepEqual(started.map((p) => p.name), ["a", "b", "c", "d", "e"]);
  started[4].finish("keep-e");
  await tickets[4].ended;
  assert.equal(queue.creating, 0);
  assert.equal(queue.queued, 0);
  queue.close();
});

Deno.test("create queue: past maxQueued waiting a create is refused with 503 queue-full", () => {
  const { queue, enter } = harness(1, 2);
  enter("a"); // creating
  enter("b");
  enter("c");
  assert.throws(
    () => enter("d"),
    (e: unknown) =>
      e instanceof RetryLaterError && e.code === "queue-full" && e.httpStatus === 503 &&
      e.retryAfter > 0 && /--max-queued 2/.test(e.message),
  );
  assert.equal(queue.queued, 2);
  queue.close();
});

Deno.test("create queue: tickets are found by id until collected; unknown ones are 404 ticket-unknown", async () => {
  const { queue, started, enter } = harness(1, 4);
  const ticket = enter("a");
  assert.equal(queue.get(ticket.id), ticket);
  started[0].finish("keep-a");
  await ticket.ended;
  queue.collect(ticket);
  assert.throws(
    () => queue.get(ticket.id),
    (e: unknown) => e instanceof KeepError && e.code === "ticket-unknown" && e.httpStatus === 404,
  );
  queue.close();
});

Deno.test("create queue: a ticket nobody polls is dropped, and a keep made for it handed back", async () => {
  const { queue, started, abandoned, enter } = harness(1, 4);
  const a = enter("a");
  const b = enter("b");
  const c = enter("c");
  c.holders = 1; // a client is waiting on c right now
  started[0].finish("keep-a");
  await a.ended;
  // b is being created now; nothing was polled for longer than abandonMs.
  queue.sweep(performance.now() + 60_000);
  assert.deepEqual(abandoned, ["keep-a"], "a's keep was made but never collected");
  assert.throws(() => queue.get(a.id));
  assert.equal(queue.get(b.id), b, "a create in progress is never dropped");
  assert.equal(queue.get(c.id), c, "a held ticket is never dropped");
  c.holders = 0;
  queue.sweep(performance.now() + 60_000);
  assert.throws(() => queue.get(c.id), "c waited unpolled: dropped");
  assert.equal(queue.queued, 0);
  started[1].finish("keep-b");
  await b.ended;
  assert.deepEqual(started.map((p) => p.name), ["a", "b"], "c never started");
  queue.close();
});

Deno.test("create queue: close ends waiting creates with shutting-down", async () => {
  const { queue, enter } = harness(1, 4);
  enter("a");
  const b = enter("b");
  queue.close();
  await b.ended;
  assert.equal(b.state, "done");
  const outcome = b.outcome;
  assert.ok(outcome !== undefined && "error" in outcome);
  assert.ok(outcome.error instanceof KeepError && outcome.error.code === "shutting-down");
});
