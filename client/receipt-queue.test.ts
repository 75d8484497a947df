import { describe, expect, test } from "bun:test";
import type { ReceiptStanza } from "../protocol/index.ts";
import { waitFor } from "../server/test-kit.ts";
import { ReceiptQueue } from "./receipt-queue.ts";

/** A queue whose session is up while `connected` is true; what it writes lands in `written`. */
function queue(pendingMax = 1024, burst = 4, intervalMs = 20) {
  const written: ReceiptStanza[] = [];
  const session = { connected: false };
  const receipts = new ReceiptQueue(
    128,
    pendingMax,
    () => {},
    (stanza) => {
      if (!session.connected) return false;
      written.push(stanza);
      return true;
    },
    burst,
    intervalMs,
  );
  return { receipts, written, session };
}

/** One read receipt for each of `count` sender devices (one stanza each: they do not merge). */
function readEach(receipts: ReceiptQueue, count: number): void {
  for (let device = 1; device <= count; device++) receipts.add(2, 7, device, [device]);
  receipts.flush();
}

describe("receipt queue", () => {
  test("receipts that waited offline go out paced after a reconnect, in order, all of them", async () => {
    const { receipts, written, session } = queue();
    readEach(receipts, 10);
    expect(written).toHaveLength(0);
    session.connected = true;
    receipts.resume();
    // The burst at once, not the whole backlog: with the outbox's window it must stay within the server's rate burst.
    expect(written).toHaveLength(4);
    await waitFor(() => written.length === 10, 2000, "every waiting receipt");
    expect(written.map((stanza) => stanza.toDevice)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test("a disconnect during a paced resume keeps the rest for the next session", async () => {
    const { receipts, written, session } = queue();
    readEach(receipts, 10);
    session.connected = true;
    receipts.resume();
    expect(written).toHaveLength(4);
    session.connected = false;
    await Bun.sleep(60);
    expect(written).toHaveLength(4);
    session.connected = true;
    receipts.resume();
    await waitFor(() => written.length === 10, 2000, "the rest after the next resume");
    expect(new Set(written.map((stanza) => stanza.toDevice)).size).toBe(10);
  });

  test("past receiptsPendingMax the oldest waiting receipts are dropped", () => {
    const { receipts, written, session } = queue(5, 100);
    readEach(receipts, 8);
    session.connected = true;
    receipts.resume();
    expect(written.map((stanza) => stanza.toDevice)).toEqual([4, 5, 6, 7, 8]);
  });

  test("clear stops a paced resume", async () => {
    const { receipts, written, session } = queue();
    readEach(receipts, 10);
    session.connected = true;
    receipts.resume();
    receipts.clear();
    await Bun.sleep(60);
    expect(written).toHaveLength(4);
  });
});
