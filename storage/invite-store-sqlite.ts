import type { Kysely } from "kysely";
import type { InviteRecord, InviteStore } from "./invite-store.ts";
import type { StorageSchema } from "./schema.ts";

// Invites are cold: every query goes through Kysely, each a single statement.

// The most invites list() returns. Invites are issued by an operator by hand, so this is far above real use.
export const inviteListRowsMax = 10_000;

export class SqliteInviteStore implements InviteStore {
  readonly #kysely: Kysely<StorageSchema>;

  constructor(kysely: Kysely<StorageSchema>) {
    this.#kysely = kysely;
  }

  async issue(code: string, nowMs: number, expiresAtMs: number): Promise<void> {
    await this.#kysely
      .insertInto("invites")
      .values({ code, created_at: nowMs, expires_at: expiresAtMs, used_at: null, used_by: null })
      .execute();
  }

  async consume(code: string, nowMs: number, usedBy?: number): Promise<boolean> {
    // One conditional update, so two registrations racing for the same code cannot both win.
    const result = await this.#kysely
      .updateTable("invites")
      .set({ used_at: nowMs, used_by: usedBy ?? null })
      .where("code", "=", code)
      .where("used_at", "is", null)
      .where("expires_at", ">", nowMs)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async list(): Promise<InviteRecord[]> {
    const rows = await this.#kysely
      .selectFrom("invites")
      .select(["code", "created_at", "expires_at", "used_at"])
      .orderBy("created_at")
      .orderBy("code")
      .limit(inviteListRowsMax)
      .execute();
    return rows.map((row) => ({
      code: row.code,
      createdAtMs: row.created_at,
      expiresAtMs: row.expires_at,
      usedAtMs: row.used_at,
    }));
  }
}
