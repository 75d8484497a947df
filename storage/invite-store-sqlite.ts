import { type CodeHasher, codeHashBytes } from "./code-hasher.ts";
import type { InviteRecord, InviteStore } from "./invite-store.ts";
import type { LazyKysely } from "./kysely-lazy.ts";

// Invites are cold: every query goes through Kysely, each a single statement. Codes are looked up by their keyed
// hash, so the database never holds a code (see code-hasher.ts).

// The most invites list() returns. Invites are issued by an operator by hand, so this is far above real use.
export const inviteListRowsMax = 10_000;

export class SqliteInviteStore implements InviteStore {
  readonly #kysely: LazyKysely;
  readonly #hasher: CodeHasher;

  constructor(kysely: LazyKysely, hasher: CodeHasher) {
    this.#kysely = kysely;
    this.#hasher = hasher;
  }

  async issue(code: string, nowMs: number, expiresAtMs: number): Promise<void> {
    await (await this.#kysely())
      .insertInto("invites")
      .values({
        code_hash: this.#hasher.hash(code),
        created_at: nowMs,
        expires_at: expiresAtMs,
        used_at: null,
        used_by: null,
      })
      .execute();
  }

  async consume(code: string, nowMs: number, usedBy?: number): Promise<boolean> {
    // One conditional update, so two registrations racing for the same code cannot both win.
    const result = await (await this.#kysely())
      .updateTable("invites")
      .set({ used_at: nowMs, used_by: usedBy ?? null })
      .where("code_hash", "=", this.#hasher.hash(code))
      .where("used_at", "is", null)
      .where("expires_at", ">", nowMs)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async revoke(target: { code: string } | { codeHash: string }): Promise<boolean> {
    const hash = "code" in target ? this.#hasher.hash(target.code) : hexBytes(target.codeHash);
    if (hash === undefined) return false;
    const result = await (await this.#kysely())
      .deleteFrom("invites")
      .where("code_hash", "=", hash)
      .where("used_at", "is", null)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  async list(): Promise<InviteRecord[]> {
    const rows = await (await this.#kysely())
      .selectFrom("invites")
      .select(["code_hash", "created_at", "expires_at", "used_at"])
      .orderBy("created_at")
      .orderBy("code_hash")
      .limit(inviteListRowsMax)
      .execute();
    return rows.map((row) => ({
      codeHash: Buffer.from(row.code_hash).toString("hex"),
      createdAtMs: row.created_at,
      expiresAtMs: row.expires_at,
      usedAtMs: row.used_at,
    }));
  }
}

/** A code hash written in hex as list() writes it: two digits per byte. */
const codeHashHex = new RegExp(`^[0-9a-f]{${codeHashBytes * 2}}$`);

/** The bytes of a hash written in hex as list() writes it, or undefined when it is not codeHashBytes of hex. */
function hexBytes(hex: string): Uint8Array | undefined {
  if (!codeHashHex.test(hex)) return undefined;
  return new Uint8Array(Buffer.from(hex, "hex"));
}
