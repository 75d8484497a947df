// The SDK's handle cache: batches of batchMax, one question per id however often it is asked meanwhile, known
// handles kept (bounded, least recently used dropped), nulls asked again, a failed batch rejects and is forgotten.

import { describe, expect, test } from "bun:test";
import { HandleCache } from "./handle-cache.ts";

function server(directory: Record<number, string>) {
  const asked: number[][] = [];
  let fail = false;
  const ask = async (accounts: readonly number[]) => {
    asked.push([...accounts]);
    await Bun.sleep(1);
    if (fail) throw new Error("connection lost");
    return accounts.map((account) => directory[account] ?? null);
  };
  return {
    asked,
    ask,
    failNext(value: boolean) {
      fail = value;
    },
  };
}

describe("HandleCache", () => {
  test("asks in batches of batchMax, answers in order, keeps known handles but not nulls", async () => {
    const fake = server({ 1: "alice", 2: "bob", 3: "carol" });
    const cache = new HandleCache(fake.ask, 2);
    const first = await cache.resolve([3, 1, 9, 1, 2]);
    expect([...first]).toEqual([
      [3, "carol"],
      [1, "alice"],
      [9, null],
      [2, "bob"],
    ]);
    expect(fake.asked).toEqual([
      [3, 1],
      [9, 2],
    ]);
    await cache.resolve([1, 2, 3, 9]);
    expect(fake.asked.at(-1)).toEqual([9]); // only the null is asked again
    expect(cache.peek(2)).toBe("bob");
  });

  test("an id asked while its question is out joins it", async () => {
    const fake = server({ 5: "eve" });
    const cache = new HandleCache(fake.ask, 4);
    const results = await Promise.all(Array.from({ length: 50 }, () => cache.resolve([5])));
    expect(results.every((result) => result.get(5) === "eve")).toBe(true);
    expect(fake.asked).toEqual([[5]]);
  });

  test("bounded: the least recently used handle goes first", async () => {
    const cache = new HandleCache(server({}).ask, 4, 3);
    cache.remember(1, "a");
    cache.remember(2, "b");
    cache.remember(3, "c");
    expect(cache.peek(1)).toBe("a"); // 1 is now the most recent
    cache.remember(4, "d");
    expect(cache.size).toBe(3);
    expect(cache.peek(2)).toBeUndefined();
    expect([cache.peek(1), cache.peek(3), cache.peek(4)]).toEqual(["a", "c", "d"]);
  });

  test("a failed question rejects, and the next call asks again", async () => {
    const fake = server({ 1: "alice" });
    const cache = new HandleCache(fake.ask, 4);
    fake.failNext(true);
    await expect(cache.resolve([1])).rejects.toThrow("connection lost");
    fake.failNext(false);
    expect((await cache.resolve([1])).get(1)).toBe("alice");
    expect(fake.asked).toEqual([[1], [1]]);
  });
});
