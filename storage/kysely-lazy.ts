// Kysely, loaded on the first cold query or migration rather than at start. Its ~200 modules were about half of the
// CPU a worker spent loading its code (BENCHMARKS.md, million: starting 56 workers on 2 cores), while a worker that
// only logs devices in and delivers messages runs prepared statements alone and never needs it. The first cold query
// of a process (a device list, an invite, a migration) pays the load once instead; every later one finds it loaded.

import type { Database } from "bun:sqlite";
import type { Kysely } from "kysely";
import type { StorageSchema } from "./schema.ts";

/** The connection's Kysely, created on the first call (which loads the modules); every call resolves to the same. */
export type LazyKysely = () => Promise<Kysely<StorageSchema>>;

export interface LazyKyselyHandle {
  readonly kysely: LazyKysely;
  /** Destroys the Kysely instance if one was made (closing the connection again does nothing). */
  destroy(): Promise<void>;
}

export function lazyKysely(database: Database): LazyKyselyHandle {
  let made: Promise<Kysely<StorageSchema>> | null = null;
  const kysely: LazyKysely = () => {
    made ??= (async () => {
      const [{ Kysely }, { BunSqliteDialect }] = await Promise.all([import("kysely"), import("kysely-bun-sqlite")]);
      return new Kysely<StorageSchema>({ dialect: new BunSqliteDialect({ database }) });
    })();
    return made;
  };
  return {
    kysely,
    async destroy() {
      if (made !== null) await (await made).destroy();
    },
  };
}
