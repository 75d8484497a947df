// Invite codes for closed registration: issued by the operator, each usable once before it expires.

export interface InviteRecord {
  code: string;
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
}
