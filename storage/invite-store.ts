// Invite codes for closed registration: issued by the operator, each usable once before it expires.
//
// Implementations keep only a keyed hash of each code (storage/code-hasher.ts), never the code: a copy of the
// database must not hold a code anyone can register with. Callers pass plaintext codes; the hashing is the store's.

export interface InviteRecord {
  // The stored keyed hash of the code, in hex: tells invites apart; the code itself cannot be recovered from it.
  codeHash: string;
  createdAtMs: number;
  expiresAtMs: number;
  usedAtMs: number | null;
}

export interface InviteStore {
  // Throws if the code already exists.
  issue(code: string, nowMs: number, expiresAtMs: number): Promise<void>;
  // Atomically marks an unused, unexpired code used (a code expires when nowMs reaches expiresAtMs); returns false
  // otherwise.
  consume(code: string, nowMs: number, usedBy?: number): Promise<boolean>;
  // Oldest first, at most inviteListRowsMax (see invite-store-sqlite.ts): invites are issued by hand, so more is a
  // sign of a bug elsewhere rather than a page to fetch.
  list(): Promise<InviteRecord[]>;
  // Deletes an unused invite, named by its code or by the codeHash list() shows; returns false when there is no such
  // unused invite. A used invite stays (it is the history of a registration), so revoking it changes nothing.
  revoke(target: { code: string } | { codeHash: string }): Promise<boolean>;
}
