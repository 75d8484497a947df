// The device -> slot index against a Map as the model: random attaches, replacements and detaches of thousands of
// devices (enough to grow the table several times and to make long probe runs), every lookup checked after each step.

import { describe, expect, test } from "bun:test";
import { seededRandom } from "../bench/seeded-random.ts";
import { routerIndexInitial } from "../protocol/limits.ts";
import { LocalRouter } from "./router-local.ts";
import { type Session, sameSession, sessionAt } from "./session.ts";
import { SessionSlots, TransportKind } from "./session-slots.ts";

describe("local router", () => {
  test("matches a Map through attaches, replacements, detaches and growth", () => {
    const slots = new SessionSlots(1024, () => 0);
    const router = new LocalRouter(slots);
    const model = new Map<string, Session>();
    const random = seededRandom(11);
    const devices = 3 * routerIndexInitial;
    const open = (account: number, device: number): Session => {
      const session = sessionAt(slots, slots.allocate({}, TransportKind.object, 0, 1));
      session.account = account;
      session.device = device;
      return session;
    };
    for (let step = 0; step < 40_000; step++) {
      const account = 1 + Math.floor(random() * (devices / 2));
      const device = 1 + Math.floor(random() * 2);
      const key = `${account}/${device}`;
      const current = model.get(key);
      if (current !== undefined && random() < 0.5) {
        router.detach(account, device, current);
        model.delete(key);
        slots.release(current.slot);
      } else {
        const session = open(account, device);
        const replaced = router.attach(account, device, session);
        expect(sameSession(replaced, current)).toBe(current !== undefined);
        if (current !== undefined) slots.release(current.slot);
        model.set(key, session);
      }
      if (step % 1000 === 0) {
        expect(router.size).toBe(model.size);
        for (const [each, session] of model) {
          const [a, d] = each.split("/").map(Number);
          expect(sameSession(router.find(a!, d!), session)).toBe(true);
        }
      }
    }
    expect(router.size).toBe(model.size);
    for (const [each, session] of model) {
      const [a, d] = each.split("/").map(Number);
      expect(sameSession(router.find(a!, d!), session)).toBe(true);
    }
    expect(router.find(devices, 3)).toBeUndefined();
  });

  test("detach of a session that was replaced leaves the newer one", () => {
    const slots = new SessionSlots(8, () => 0);
    const router = new LocalRouter(slots);
    const older = sessionAt(slots, slots.allocate({}, TransportKind.object, 0, 1));
    const newer = sessionAt(slots, slots.allocate({}, TransportKind.object, 0, 1));
    for (const session of [older, newer]) {
      session.account = 5;
      session.device = 1;
    }
    expect(router.attach(5, 1, older)).toBeUndefined();
    expect(sameSession(router.attach(5, 1, newer), older)).toBe(true);
    router.detach(5, 1, older);
    expect(sameSession(router.find(5, 1), newer)).toBe(true);
    router.detach(5, 1, newer);
    expect(router.find(5, 1)).toBeUndefined();
  });
});
