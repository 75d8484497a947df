// Files that hold a device's secrets or whom it talks to (the key file, the end-to-end store, the known server keys),
// for the terminal chat and tools (Bun/Node only: the SDK core does not import it). Written with mode 0600 whatever
// the umask, through a fresh temporary file (created exclusively, so a file or link planted at that name is never
// written through), flushed to disk and renamed: a crash leaves the old file or the new one, never half of one.
// Reading one tightens a looser mode to 0600, as ssh insists on.

import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";

export const privateFileMode = 0o600;

let temporaries = 0;

/** Replaces `path` with `text` atomically, mode 0600. */
export function writePrivateFile(path: string, text: string): void {
  // Unique per process and write, so two writes of one process never share a temporary file.
  const temporary = `${path}.${process.pid}.${++temporaries}.tmp`;
  // A leftover of a crashed run with this process id is removed; O_EXCL then refuses anything that appears meanwhile.
  try {
    unlinkSync(temporary);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const descriptor = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, privateFileMode);
  try {
    chmodSync(temporary, privateFileMode);
    writeSync(descriptor, text);
    fsyncSync(descriptor);
  } catch (error) {
    closeSync(descriptor);
    unlinkSync(temporary);
    throw error;
  }
  closeSync(descriptor);
  renameSync(temporary, path);
}

/** Tightens a looser mode of an existing private file to 0600; false when there is no file. */
export function tightenPrivateFile(path: string): boolean {
  if (!existsSync(path)) return false;
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, privateFileMode);
  return true;
}
