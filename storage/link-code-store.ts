// Short-lived codes that let a logged-in device of an account link a new device to it.
//
// Implementations keep only a keyed hash of each code (storage/code-hasher.ts), never the code: a copy of the
// database must not hold a code anyone can link a device with. Callers pass plaintext codes; the hashing is the store's.

export interface LinkCodeStore {
  // Throws if the code already exists or the account does not. May also delete a few expired codes, so that codes
  // nobody consumed do not pile up.
  issue(account: number, code: string, nowMs: number, expiresAtMs: number): Promise<void>;
  // Deletes the code and returns its account if it existed and had not expired (a code expires when nowMs reaches
  // expiresAtMs).
  consume(code: string, nowMs: number): Promise<number | undefined>;
}
