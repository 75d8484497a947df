import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { defaultLimits } from "../protocol/index.ts";
import { withReference } from "./config-reference.ts";

test("OPERATIONS.md carries the current config reference (run bun server/config-reference.ts --write)", () => {
  const document = readFileSync(new URL("../OPERATIONS.md", import.meta.url), "utf8");
  expect(withReference(document)).toBe(document);
  for (const key of Object.keys(defaultLimits)) expect(document).toContain(`\`${key}\``);
});
