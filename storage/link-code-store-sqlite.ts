import type { Kysely } from "kysely";
import type { LinkCodeStore } from "./link-code-store.ts";
import type { StorageSchema } from "./schema.ts";

// Link codes are cold: every query goes through Kysely, each a single statement.

// How many expired codes one issue() deletes. More than one, so expired codes are deleted faster than codes are
// issued and the table stays near the number of live codes; few enough that issue() stays cheap.
export const linkCodePurgeRowsMax = 16;

export class SqliteLinkCodeStore implements LinkCodeStore {
  readonly #kysely: Kysely<StorageSchema>;

  constructor(kysely: Kysely<StorageSchema>) {
    this.#kysely = kysely;
  }

  async issue(account: number, code: string, nowMs: number, expiresAtMs: number): Promise<void> {
    await this.#kysely
      .deleteFrom("link_codes")
      .where("code", "in", (query) =>
        query.selectFrom("link_codes").select("code").where("expires_at", "<=", nowMs).limit(linkCodePurgeRowsMax),
      )
      .execute();
    await this.#kysely
      .insertInto("link_codes")
      .values({ code, account_id: account, created_at: nowMs, expires_at: expiresAtMs })
      .execute();
  }

  async consume(code: string, nowMs: number): Promise<number | undefined> {
    // Deleting whatever the code's state makes it single use even when two devices race for it; an expired code is
    // deleted too, as it is of no further use.
    const row = await this.#kysely
      .deleteFrom("link_codes")
      .where("code", "=", code)
      .returning(["account_id", "expires_at"])
      .executeTakeFirst();
    return row !== undefined && row.expires_at > nowMs ? row.account_id : undefined;
  }
}
