// The checker itself: each kind of failure planted by hand is counted, and a clean history counts nothing.

import { describe, expect, test } from "bun:test";
import { deviceKey, Ledger, messageKey } from "./ledger.ts";

function twoDevices(): { ledger: Ledger; sender: string } {
  const ledger = new Ledger();
  ledger.addDevice(1, 1);
  ledger.addDevice(2, 1);
  ledger.addDevice(2, 2);
  return { ledger, sender: deviceKey(1, 1) };
}

function deliver(ledger: Ledger, device: string, seq: number, clientId: number, token: string): void {
  const store = ledger.store(device);
  store.sawSeq(seq, `${clientId} ${token}`);
  const key = messageKey(1, 1, clientId);
  if (!store.handed(key)) store.store(key, token);
}

describe("ledger", () => {
  test("a clean history: every acked message at every device of the recipient, in order", () => {
    const { ledger, sender } = twoDevices();
    for (const [index, token] of ["a", "b", "c"].entries()) {
      ledger.sent(token, sender, 2);
      ledger.acked(token, index + 1);
      deliver(ledger, deviceKey(2, 1), index + 1, index + 1, token);
      deliver(ledger, deviceKey(2, 2), index + 1, index + 1, token);
    }
    // A redelivery of the same entry is ignored by the application (not a duplicate).
    deliver(ledger, deviceKey(2, 1), 1, 1, "a");
    const counts = ledger.counts();
    expect(counts).toMatchObject({ acked: 3, expectedDeliveries: 6, lost: 0, duplicates: 0, order: 0, seqReused: 0 });
    expect(counts.redeliveries).toBe(1);
    expect(ledger.complete()).toBe(true);
  });

  test("lost, duplicate, out of order and reused seq are each counted", () => {
    const { ledger, sender } = twoDevices();
    for (const [index, token] of ["a", "b", "c"].entries()) {
      ledger.sent(token, sender, 2);
      ledger.acked(token, index + 1);
    }
    const first = deviceKey(2, 1);
    const second = deviceKey(2, 2);
    // Device 2:1 gets c before b (order), and b again under another client id (duplicate).
    deliver(ledger, first, 1, 1, "a");
    deliver(ledger, first, 2, 3, "c");
    deliver(ledger, first, 3, 2, "b");
    deliver(ledger, first, 4, 9, "b");
    // Device 2:2 never gets c (lost), and its seq 1 meant two different entries (reused).
    deliver(ledger, second, 1, 1, "a");
    deliver(ledger, second, 2, 2, "b");
    ledger.store(second).sawSeq(1, "something else");
    const counts = ledger.counts();
    expect(counts.lost).toBe(1);
    expect(counts.duplicates).toBe(1);
    expect(counts.order).toBe(1);
    expect(counts.seqReused).toBe(1);
    expect(ledger.complete()).toBe(false);
  });

  test("an unacked send is not expected anywhere but counts as unsettled; a refused one does not", () => {
    const { ledger, sender } = twoDevices();
    ledger.sent("pending", sender, 2);
    ledger.sent("refused", sender, 2);
    ledger.refused("refused", "queueFull");
    const counts = ledger.counts();
    expect(counts).toMatchObject({ acked: 0, unsettled: 1, refused: 1, lost: 0 });
  });

  test("a message to one's own account is expected at the other devices only", () => {
    const ledger = new Ledger();
    ledger.addDevice(5, 1);
    ledger.addDevice(5, 2);
    ledger.sent("self", deviceKey(5, 1), 5);
    ledger.acked("self", 1);
    expect(ledger.counts().expectedDeliveries).toBe(1);
  });
});
