import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kysely, Migrator } from "kysely";
import { BunSqliteDialect } from "kysely-bun-sqlite";
import { codeKeyFileName } from "./code-hasher.ts";
import { busyTimeoutMs, openSqliteDatabase, openSqliteStorage } from "./database-sqlite.ts";
import * as initial from "./migrations/0001-initial.ts";
import { migrateToLatest, migrations } from "./migrations/index.ts";
import type { StorageSchema } from "./schema.ts";

const directory = mkdtempSync(join(tmpdir(), "switchboard-database-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const tables = [
  "accounts",
  "client_id_windows",
  "device_keys",
  "devices",
  "group_changes",
  "group_members",
  "groups",
  "invites",
  "key_fetchers",
  "link_codes",
  "messages",
  "one_time_prekeys",
  "queue",
  "read_receipt_windows",
];

function pragma(database: Database, name: string): unknown {
  return Object.values(database.query(`pragma ${name}`).get() as Record<string, unknown>)[0];
}

function userTables(database: Database): string[] {
  const rows = database
    .query("select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name")
    .all() as Array<{ name: string }>;
  return rows.map((row) => row.name).filter((name) => !name.startsWith("kysely_"));
}

describe("sqlite database", () => {
  test("a file connection runs in WAL mode with the chosen synchronous level and foreign keys", () => {
    const normal = openSqliteDatabase({ path: join(directory, "normal.sqlite") });
    expect(pragma(normal, "journal_mode")).toBe("wal");
    expect(pragma(normal, "synchronous")).toBe(1);
    expect(pragma(normal, "foreign_keys")).toBe(1);
    expect(pragma(normal, "busy_timeout")).toBe(busyTimeoutMs);
    expect(pragma(normal, "secure_delete")).toBe(1);
    normal.close();
    const full = openSqliteDatabase({ path: join(directory, "full.sqlite"), synchronous: "full" });
    expect(pragma(full, "synchronous")).toBe(2);
    full.close();
  });

  test("migrations run twice leave one schema and one record per migration", async () => {
    const database = new Database(":memory:", { strict: true });
    const kysely = new Kysely<StorageSchema>({ dialect: new BunSqliteDialect({ database }) });
    await migrateToLatest(kysely);
    await migrateToLatest(kysely);
    expect(userTables(database)).toEqual(tables);
    const recorded = database.query("select name from kysely_migration order by name").all() as Array<{ name: string }>;
    expect(recorded.map((row) => row.name)).toEqual(Object.keys(migrations));
    // A migration interrupted before it was recorded runs again without failing.
    for (const migration of Object.values(migrations)) await migration.up(kysely);
    expect(userTables(database)).toEqual(tables);
    await kysely.destroy();
  });

  test("opening an existing file again migrates nothing and keeps its data", async () => {
    const path = join(directory, "reopen.sqlite");
    const first = await openSqliteStorage({ path });
    await first.accounts.create("alice", new Uint8Array(32), 1_000);
    await first.close();
    await first.close();
    const second = await openSqliteStorage({ path });
    expect(await second.accounts.count()).toBe(1);
    await second.close();
    const observer = new Database(path, { readonly: true });
    expect(userTables(observer)).toEqual(tables);
    expect((observer.query("select count(*) as count from kysely_migration").get() as { count: number }).count).toBe(
      Object.keys(migrations).length,
    );
    observer.close();
  });

  test("a file at this build's migrations opens while another connection holds the write lock (workers start at once)", async () => {
    const path = join(directory, "locked.sqlite");
    await (await openSqliteStorage({ path })).close();
    const holder = new Database(path);
    holder.run("begin immediate");
    try {
      const started = performance.now();
      const storage = await openSqliteStorage({ path });
      // Without the lock: well inside busy_timeout, which a migration under the held lock would wait out and fail.
      expect(performance.now() - started).toBeLessThan(busyTimeoutMs / 2);
      expect(await storage.accounts.count()).toBe(0);
      await storage.close();
    } finally {
      holder.run("rollback");
      holder.close();
    }
    // A file missing a migration still migrates under the lock: with the lock held elsewhere it waits and fails.
    const behind = join(directory, "behind.sqlite");
    await (await openSqliteStorage({ path: behind })).close();
    const editor = new Database(behind);
    const last = Object.keys(migrations).at(-1)!;
    editor.run("delete from kysely_migration where name = ?", [last]);
    editor.run("begin immediate");
    try {
      await expect(openSqliteStorage({ path: behind })).rejects.toThrow(/locked/);
    } finally {
      editor.run("rollback");
      editor.close();
    }
  }, 20_000);

  test("a closed store refuses further use", async () => {
    const storage = await openSqliteStorage({ path: ":memory:" });
    await storage.close();
    await expect(storage.devices.get({ account: 1, device: 1 })).rejects.toThrow();
  });

  test("schema checks refuse a public key that is not 32 bytes", async () => {
    const storage = await openSqliteStorage({ path: ":memory:" });
    await expect(storage.accounts.create("alice", new Uint8Array(31), 1_000)).rejects.toThrow();
    expect(await storage.accounts.count()).toBe(0);
    await storage.close();
  });
});

describe("a partition file (server/partitions.ts)", () => {
  test("mirror writes the stand-in rows of a device once, with zero marks and an all-zero key", async () => {
    const storage = await openSqliteStorage({ path: ":memory:" });
    try {
      const key = { account: 4242, device: 3 };
      expect(await storage.devices.get(key)).toBeUndefined();
      await storage.devices.mirror(key, 5000);
      expect(await storage.devices.get(key)).toMatchObject({ lastSeq: 0, lastClientId: 0, queueRows: 0 });
      expect((await storage.devices.get(key))!.publicKey).toEqual(new Uint8Array(32));
      expect(await storage.accounts.byId(4242)).toMatchObject({ handle: "#4242" });
      await storage.queues.commit({
        messages: [],
        receipts: [],
        acks: [],
        sequences: [{ account: 4242, device: 3, lastSeq: 9 }],
        clientIds: [],
      });
      await storage.devices.mirror(key, 6000);
      expect(await storage.devices.get(key)).toMatchObject({ lastSeq: 9 });
    } finally {
      await storage.close();
    }
  });
});

describe("device ids", () => {
  test("stay below 2^21 (the server keys a device by account * 2^21 + device): the next add past it fails", async () => {
    const path = join(directory, "device-ids.sqlite");
    const storage = await openSqliteStorage({ path });
    const created = await storage.accounts.create("alice", new Uint8Array(32).fill(1), 1_000);
    const raw = new Database(path);
    raw.run("update accounts set next_device_id = 2097151 where id = ?", [created!.account.id]);
    raw.close();
    const last = await storage.devices.add(created!.account.id, new Uint8Array(32).fill(2), 1_000);
    expect(last.device).toBe(2097151);
    await expect(storage.devices.add(created!.account.id, new Uint8Array(32).fill(3), 1_000)).rejects.toThrow();
    expect(await storage.devices.list(created!.account.id)).toHaveLength(2);
    await storage.close();
  });
});

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

describe("file modes", () => {
  test("the database, its -wal and -shm, and the code key are 0600 even under umask 000", async () => {
    const data = join(directory, "modes");
    mkdirSync(data);
    const path = join(data, "switchboard.sqlite");
    const previous = process.umask(0);
    try {
      const storage = await openSqliteStorage({ path });
      await storage.invites.issue("some-invite", 1_000, 2_000);
      for (const file of [path, `${path}-wal`, `${path}-shm`, join(data, codeKeyFileName)])
        expect(modeOf(file)).toBe(0o600);
      await storage.close();
    } finally {
      process.umask(previous);
    }
  });

  test("an existing database with looser modes is tightened when opened", async () => {
    const path = join(directory, "loose.sqlite");
    const previous = process.umask(0);
    try {
      const loose = new Database(path, { create: true });
      loose.run("pragma journal_mode = wal");
      loose.run("create table t (x)");
      expect(modeOf(path)).toBe(0o644);
      const storage = await openSqliteStorage({ path });
      expect(modeOf(path)).toBe(0o600);
      expect(modeOf(`${path}-wal`)).toBe(0o600);
      await storage.close();
      loose.close();
    } finally {
      process.umask(previous);
    }
  });
});

describe("migration 0002: hashed codes", () => {
  test("drops unused plaintext codes (any copy made before could hold them), keeps used invites' history", async () => {
    const path = join(directory, "plaintext.sqlite");
    const before = new Database(path, { create: true, strict: true });
    before.run("pragma journal_mode = wal");
    const kysely = new Kysely<unknown>({ dialect: new BunSqliteDialect({ database: before }) });
    const onlyInitial = { getMigrations: async () => ({ "0001-initial": initial }) };
    expect((await new Migrator({ db: kysely, provider: onlyInitial }).migrateToLatest()).error).toBeUndefined();
    before.run("insert into accounts (handle, created_at, next_device_id) values ('alice', 1, 2)");
    before.run("insert into invites values ('plaintext-unused-invite', 1, 9999999999999, null, null)");
    before.run("insert into invites values ('plaintext-used-invite', 1, 9999999999999, 5, 1)");
    before.run("insert into link_codes values ('plaintext-link-code', 1, 1, 9999999999999)");
    await kysely.destroy();

    const storage = await openSqliteStorage({ path });
    expect(await storage.invites.consume("plaintext-unused-invite", 10)).toBe(false);
    expect(await storage.linkCodes.consume("plaintext-link-code", 10)).toBeUndefined();
    const invites = await storage.invites.list();
    expect(invites).toEqual([
      { codeHash: expect.any(String), createdAtMs: 1, expiresAtMs: 9999999999999, usedAtMs: 5 },
    ]);
    // New codes work; the accounts are untouched.
    await storage.invites.issue("fresh", 10, 20);
    expect(await storage.invites.consume("fresh", 11)).toBe(true);
    expect(await storage.accounts.byHandle("alice")).toMatchObject({ handle: "alice" });
    await storage.close();
    // Closing checkpoints the log into the file and removes it; secure_delete zeroed the dropped tables' pages.
    const bytes = readFileSync(path);
    for (const code of ["plaintext-unused-invite", "plaintext-used-invite", "plaintext-link-code"])
      expect(bytes.includes(code)).toBe(false);
  });
});
