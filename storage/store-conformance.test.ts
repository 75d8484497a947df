import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "../protocol/fuzz.ts";
import { openSqliteStorage, type SqliteStorageOptions } from "./database-sqlite.ts";
import type { Storage } from "./storage.ts";
import { delayedStorage } from "./storage-delayed.ts";
import { type ConformanceOptions, describeStorageConformance } from "./store-conformance.ts";

const directory = mkdtempSync(join(tmpdir(), "switchboard-storage-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

let files = 0;

// A fresh file for each test, remembered per store so the durability test can open the same file again.
function sqliteFiles(synchronous: SqliteStorageOptions["synchronous"]): [() => Promise<Storage>, ConformanceOptions] {
  const paths = new Map<Storage, string>();
  const open = async (): Promise<Storage> => {
    files += 1;
    const path = join(directory, `store-${files}.sqlite`);
    const storage = await openSqliteStorage({ path, synchronous });
    paths.set(storage, path);
    return storage;
  };
  const reopen = async (previous: Storage): Promise<Storage> => {
    const path = paths.get(previous);
    if (path === undefined) throw new Error("reopen of a store this suite did not open");
    return openSqliteStorage({ path, synchronous });
  };
  return [open, { reopen }];
}

describeStorageConformance("sqlite file", ...sqliteFiles("normal"));
describeStorageConformance("sqlite file, synchronous full", ...sqliteFiles("full"));
describeStorageConformance("sqlite :memory:", () => openSqliteStorage({ path: ":memory:" }));
// The same behaviour when every call resolves late (the shape of a network database).
describeStorageConformance("sqlite :memory: behind random delays", async () =>
  delayedStorage(await openSqliteStorage({ path: ":memory:" }), { random: mulberry32(7), delayMsMax: 2 }),
);
