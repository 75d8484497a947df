// Invite and link codes are stored only as a keyed hash (HMAC-SHA-256), under a secret key that lives in its own file
// beside the database, never in it. A copy of the database alone then holds nothing that registers or links a device:
// the hashes cannot be turned back into codes, nor can a guessed code be checked against them, without the key.
//
// A fast keyed hash is enough because the codes are random and long (96 bits for an invite, 80 for a link code): a
// slow password hash guards low-entropy secrets against offline guessing, which a 2^80 search space already rules
// out. The key does not protect against a copy of the whole data directory (database and key file): with both, a
// thief can check guesses offline, but still has no code to use, since the codes themselves are never written down.
// The HMAC runs in the store, so callers keep passing and receiving plaintext codes.

import { createHmac, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";

export const codeKeyBytes = 32;
export const codeHashBytes = 32;
// The key file's name in the data directory. Deliberately not `switchboard.sqlite.*`, so that copying the database
// files by their common prefix does not take the key along.
export const codeKeyFileName = "code-hash.key";
// Owner read and write only, whatever the umask; the data directory's files all have it.
export const privateFileMode = 0o600;

export class CodeKeyError extends Error {
  override readonly name = "CodeKeyError";
}

export class CodeHasher {
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length !== codeKeyBytes) throw new CodeKeyError(`a code key is ${codeKeyBytes} bytes, not ${key.length}`);
    this.#key = new Uint8Array(key);
  }

  // A key that lives only as long as this process: for an in-memory store, whose codes die with it anyway.
  static ephemeral(): CodeHasher {
    return new CodeHasher(new Uint8Array(randomBytes(codeKeyBytes)));
  }

  // The 32-byte HMAC-SHA-256 of the code's UTF-8 bytes: what the stores keep and look codes up by.
  hash(code: string): Uint8Array {
    return new Uint8Array(createHmac("sha256", this.#key).update(code, "utf8").digest());
  }
}

// Reads the key at `path`, or creates it there (random, mode 0600) if there is none. Several processes may race to
// create it (the server starting while an operator issues the first invites): each writes its candidate to a file of
// its own and links it into place, which fails for all but the first, and everyone then reads the winner's key.
// A key file of the wrong size is refused rather than replaced: replacing it would silently void every outstanding
// code; deleting it by hand does the same, knowingly.
export function loadOrCreateCodeKey(path: string): Uint8Array {
  const existing = readCodeKey(path);
  if (existing !== undefined) return existing;
  const candidate = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const descriptor = openSync(candidate, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, privateFileMode);
  try {
    chmodSync(candidate, privateFileMode);
    writeSync(descriptor, randomBytes(codeKeyBytes));
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
  try {
    linkSync(candidate, path);
    syncDirectory(dirname(path));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    unlinkSync(candidate);
  }
  const created = readCodeKey(path);
  if (created === undefined) throw new CodeKeyError(`code key ${path} vanished while it was created`);
  return created;
}

function readCodeKey(path: string): Uint8Array | undefined {
  let descriptor: number;
  try {
    descriptor = openSync(path, constants.O_RDONLY);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const stat = fstatSync(descriptor);
    if (!stat.isFile() || stat.size !== codeKeyBytes) {
      throw new CodeKeyError(
        `code key ${path} is not a ${codeKeyBytes}-byte file; remove it to start with a new key (this voids every ` +
          "unused invite and link code)",
      );
    }
    // A key file from a copy or a restore may carry looser permissions: tighten them.
    if ((stat.mode & 0o777) !== privateFileMode) chmodSync(path, privateFileMode);
    return new Uint8Array(readFileSync(descriptor));
  } finally {
    closeSync(descriptor);
  }
}

// Makes the new directory entry durable, so that a power loss cannot lose the key of codes already handed out.
function syncDirectory(path: string): void {
  const descriptor = openSync(path, constants.O_RDONLY);
  try {
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}
