import type { CodeHasher } from "./code-hasher.ts";
import type { LazyKysely } from "./kysely-lazy.ts";
import type { LinkCodeStore } from "./link-code-store.ts";

// Link codes are cold: every query goes through Kysely, each a single statement. Codes are looked up by their keyed
// hash, so the database never holds a code (see code-hasher.ts).

// How many expired codes one issue() deletes. More than one, so expired codes are deleted faster than codes are
// issued and the table stays near the number of live codes; few enough that issue() stays cheap.
export const linkCodePurgeRowsMax = 16;

export class SqliteLinkCodeStore implements LinkCodeStore {
  readonly #kysely: LazyKysely;
  readonly #hasher: CodeHasher;

  constructor(kysely: LazyKysely, hasher: CodeHasher) {
    this.#kysely = kysely;
    this.#hasher = hasher;
  }

  async issue(account: number, code: string, nowMs: number, expiresAtMs: number): Promise<void> {
    await (await this.#kysely())
      .deleteFrom("link_codes")
      .where("code_hash", "in", (query) =>
        query.selectFrom("link_codes").select("code_hash").where("expires_at", "<=", nowMs).limit(linkCodePurgeRowsMax),
      )
      .execute();
    await (await this.#kysely())
      .insertInto("link_codes")
      .values({ code_hash: this.#hasher.hash(code), account_id: account, created_at: nowMs, expires_at: expiresAtMs })
      .execute();
  }

  async consume(code: string, nowMs: number): Promise<number | undefined> {
    // Deleting whatever the code's state makes it single use even when two devices race for it; an expired code is
    // deleted too, as it is of no further use.
    const row = await (await this.#kysely())
      .deleteFrom("link_codes")
      .where("code_hash", "=", this.#hasher.hash(code))
      .returning(["account_id", "expires_at"])
      .executeTakeFirst();
    return row !== undefined && row.expires_at > nowMs ? row.account_id : undefined;
  }
}
