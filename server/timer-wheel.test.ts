import { describe, expect, test } from "bun:test";
import { TimerWheel } from "./timer-wheel.ts";

/** Entries are numbers (session slots); the test names them by index. */
const names: string[] = [];
function entry(name: string): number {
  names.push(name);
  return names.length - 1;
}
const entriesMax = 1024;

function wheelWithClock(tickMs = 10, slots = 16) {
  let now = 1_000_003;
  const fired: Array<{ name: string; at: number }> = [];
  const wheel = new TimerWheel(
    tickMs,
    (index) => fired.push({ name: names[index]!, at: now }),
    () => now,
    slots,
    16,
  );
  wheel.ensureCapacity(entriesMax);
  return {
    wheel,
    fired,
    advanceTo(ms: number, stepMs = 1) {
      while (now < ms) {
        now = Math.min(ms, now + stepMs);
        wheel.advance();
      }
    },
    get now() {
      return now;
    },
  };
}

describe("timer wheel", () => {
  test("every entry fires at or after its due time and within one tick of it", () => {
    const clock = wheelWithClock();
    const start = clock.now;
    const entries = Array.from({ length: 200 }, (_, index) => entry(`e${index}`));
    const dues = new Map<string, number>();
    for (const [index, each] of entries.entries()) {
      clock.wheel.schedule(each, start + 1 + ((index * 37) % 400));
      expect(clock.wheel.dueMs(each)).toBe(start + 1 + ((index * 37) % 400));
      dues.set(names[each]!, clock.wheel.dueMs(each));
    }
    clock.advanceTo(start + 1000, 3);
    expect(clock.fired).toHaveLength(200);
    for (const { name, at } of clock.fired) {
      const due = dues.get(name)!;
      expect(at).toBeGreaterThanOrEqual(due);
      expect(at - due).toBeLessThanOrEqual(10 + 3);
    }
    expect(clock.wheel.count).toBe(0);
  });

  test("deadlines past one revolution wait for their due time", () => {
    const clock = wheelWithClock(10, 8); // one revolution = 80 ms
    const start = clock.now;
    const far = entry("far");
    clock.wheel.schedule(far, start + 250);
    clock.advanceTo(start + 249);
    expect(clock.fired).toHaveLength(0);
    clock.advanceTo(start + 270);
    expect(clock.fired.map((entry) => entry.name)).toEqual(["far"]);
  });

  test("cancel and reschedule move entries without firing them early", () => {
    const clock = wheelWithClock();
    const start = clock.now;
    const a = entry("a");
    const b = entry("b");
    clock.wheel.schedule(a, start + 20);
    clock.wheel.schedule(b, start + 20);
    clock.wheel.cancel(a);
    clock.wheel.schedule(b, start + 60);
    clock.advanceTo(start + 50);
    expect(clock.fired).toHaveLength(0);
    clock.advanceTo(start + 80);
    expect(clock.fired.map((entry) => entry.name)).toEqual(["b"]);
    expect(clock.wheel.isScheduled(a)).toBe(false);
  });

  test("a due time already in the past fires on the next advance", () => {
    const clock = wheelWithClock();
    clock.advanceTo(clock.now + 100);
    const late = entry("late");
    clock.wheel.schedule(late, clock.now - 50);
    clock.advanceTo(clock.now + 10);
    expect(clock.fired.map((entry) => entry.name)).toEqual(["late"]);
  });
});
