import { type Kysely, type Migration, type MigrationProvider, Migrator } from "kysely";
import * as initial from "./0001-initial.ts";
import * as hashedCodes from "./0002-hashed-codes.ts";
import * as readReceiptWindows from "./0003-read-receipt-windows.ts";
import * as clientIdWindows from "./0004-client-id-windows.ts";
import * as prekeys from "./0005-prekeys.ts";
import * as groups from "./0006-groups.ts";
import * as groupQueue from "./0007-group-queue.ts";
import { MigrationError, migrationNames, migrationTableName } from "./names.ts";

export { MigrationError, migrationTableName };

// Every migration, by name. A static record rather than Kysely's FileMigrationProvider, so migrations work the same
// from a bundled or compiled server where there is no migrations folder to glob. Names sort in the order they apply.
export const migrations: Readonly<Record<string, Migration>> = Object.freeze({
  "0001-initial": initial,
  "0002-hashed-codes": hashedCodes,
  "0003-read-receipt-windows": readReceiptWindows,
  "0004-client-id-windows": clientIdWindows,
  "0005-prekeys": prekeys,
  "0006-groups": groups,
  "0007-group-queue": groupQueue,
});

// names.ts lists them for the files that need no migration (read without loading Kysely): both must agree.
if (Object.keys(migrations).join() !== migrationNames.join()) {
  throw new Error("storage/migrations/names.ts does not list exactly the migrations of index.ts");
}

export const staticMigrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};

// Applies every migration not yet recorded in the database; applying them again does nothing. Throws MigrationError.
// The caller decides the transaction: Kysely runs SQLite migrations without one (its SQLite adapter reports no
// transactional DDL), so openSqliteStorage wraps this call in one.
export async function migrateToLatest<Schema>(database: Kysely<Schema>): Promise<void> {
  const migrator = new Migrator({ db: database, provider: staticMigrationProvider, migrationTableName });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((result) => result.status === "Error");
    throw new MigrationError(failed?.migrationName, error);
  }
}
