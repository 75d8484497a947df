import { expect, test } from "bun:test";
import { TurnBudget } from "./turn-budget.ts";

test("a turn's budget: never spent at its first call, spent past the budget, new again in the next turn", async () => {
  let nowMs = 1_000;
  const budget = new TurnBudget(
    () => 10,
    () => nowMs,
  );
  expect(budget.spent()).toBe(false); // starts this turn's clock
  nowMs += 9;
  expect(budget.spent()).toBe(false);
  nowMs += 1;
  expect(budget.spent()).toBe(true);
  nowMs += 100;
  expect(budget.spent()).toBe(true); // still this turn
  await new Promise((resolve) => setImmediate(resolve));
  expect(budget.spent()).toBe(false); // the next turn starts a new clock
  nowMs += 10;
  expect(budget.spent()).toBe(true);
});
