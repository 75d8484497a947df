// The names of this build's migrations and the table they are recorded in, without Kysely: a server that opens files
// already at these migrations (every worker start after the first) reads them to know it need not load Kysely at all
// (storage/kysely-lazy.ts). index.ts checks at load that its migrations are exactly these.

/** Every migration's name, in the order they apply. */
export const migrationNames: readonly string[] = Object.freeze([
  "0001-initial",
  "0002-hashed-codes",
  "0003-read-receipt-windows",
  "0004-client-id-windows",
  "0005-prekeys",
  "0006-groups",
  "0007-group-queue",
]);

/** Where Kysely's Migrator records applied migrations: its default name, passed to it so database-sqlite.ts reads it. */
export const migrationTableName = "kysely_migration";

export class MigrationError extends Error {
  override readonly name = "MigrationError";
  readonly migrationName: string | undefined;

  constructor(migrationName: string | undefined, cause: unknown) {
    super(`migration ${migrationName ?? "(setup)"} failed`, { cause });
    this.migrationName = migrationName;
  }
}
