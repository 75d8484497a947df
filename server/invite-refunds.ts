// Invites given back after a registration used one and then failed. The invite is checked before the handle (so
// that nobody without an invite learns which handles are taken), and the store can only check an invite by using
// it (InviteStore.consume, atomic, so two registrations never both get one code). A registration that used a code and
// then found its handle taken gives the code back here, and the next registration with that code takes it from
// here when the store says "used". Kept in memory by the Auth of one server generation: a restart or reload forgets
// them (that invite is then used up). A read-only InviteStore check would let the invite stay unused in the store
// instead; the store interface has none yet. Codes are kept as SHA-256 digests, as the store keeps only hashes: a
// heap dump shows no usable code. A refund lapses inviteTtlMs after it was given (the store does not say when the
// code itself would have expired, so a refund may outlive it by up to that long).

import { createHash } from "node:crypto";

function digest(code: string): string {
  return createHash("sha256").update(code).digest("base64");
}

export class InviteRefunds {
  /** Digest of a code -> when the refund lapses (ms); in insertion order, so the first entry is the oldest. */
  private readonly entries = new Map<string, number>();

  constructor(private readonly entriesMax: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** Gives `code` back until `expiresAtMs`; past entriesMax the oldest refund is dropped. */
  give(code: string, expiresAtMs: number): void {
    const key = digest(code);
    this.entries.delete(key);
    this.entries.set(key, expiresAtMs);
    while (this.entries.size > this.entriesMax) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  /** Takes the refund of `code` if there is one that has not lapsed: synchronous, so only one taker wins. */
  take(code: string, nowMs: number): boolean {
    const key = digest(code);
    const expiresAtMs = this.entries.get(key);
    if (expiresAtMs === undefined) return false;
    this.entries.delete(key);
    return nowMs < expiresAtMs;
  }
}
