// The data directory belongs to one server process and to its owner alone:
// - prepareDataDirectory creates it 0700 (and tightens an existing one), whatever the umask; the files in it are
//   created 0600 by their writers (storage/database-sqlite.ts, storage/code-hasher.ts, the lock below);
// - lockDataDirectory takes an exclusive flock(2) on `server.lock` in it for as long as the server runs, so a second
//   server on the same directory refuses to start instead of sharing the database and the port (SO_REUSEPORT).
//
// Why flock through bun:ffi: the kernel releases the lock when its holder dies in any way (kill -9 included), so a
// stale lock can never block a restart. A PID file checked with kill(pid, 0) was rejected: a crashed holder's PID
// may be reused by an unrelated process, and check-then-create races. A held SQLite lock would also be released by
// the kernel, but POSIX record locks drop as soon as any descriptor of the file closes in the holder. Store commands
// (invite, account) do not take this lock: they are short and rely on SQLite's own locking.

import { dlopen, FFIType, read } from "bun:ffi";
import { chmodSync, closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";

export const dataDirectoryMode = 0o700;
export const lockFileMode = 0o600;
export const lockFileName = "server.lock";
// How long a refused start waits for the holder to write its PID into the lock file (it does right after locking).
const holderPidWaitMs = 200;

export class DataDirectoryLockedError extends Error {
  override readonly name = "DataDirectoryLockedError";
  readonly holderPid: number | undefined;

  constructor(directory: string, holderPid: number | undefined) {
    const holder = holderPid === undefined ? "another process" : `process ${holderPid}`;
    super(`data directory ${directory} is in use by ${holder} (lock ${join(directory, lockFileName)}); not starting`);
    this.holderPid = holderPid;
  }
}

/** Creates the data directory with mode 0700, or sets 0700 on an existing one. */
export function prepareDataDirectory(directory: string): void {
  mkdirSync(directory, { recursive: true, mode: dataDirectoryMode });
  chmodSync(directory, dataDirectoryMode);
}

export interface DataDirectoryLock {
  readonly path: string;
  /** Unlocks and closes the lock file; calling it again does nothing. The file stays: only the lock means anything. */
  release(): void;
}

/**
 * Takes the exclusive lock on `directory` (which must exist) without waiting, and writes this process's PID into the
 * lock file. Throws DataDirectoryLockedError, naming the holder's PID, if another process holds it.
 */
export function lockDataDirectory(directory: string): DataDirectoryLock {
  return lockFile(join(directory, lockFileName), (holderPid) => new DataDirectoryLockedError(directory, holderPid));
}

export class PartitionLockedError extends Error {
  override readonly name = "PartitionLockedError";

  constructor(path: string, holderPid: number | undefined) {
    const holder = holderPid === undefined ? "another process" : `process ${holderPid}`;
    super(`partition ${path} is owned by ${holder}; not opening it`);
  }
}

/**
 * The lock of one partition (server/partitions.ts): exactly one worker writes a partition, and a second one that was
 * told to own it (a bug, or two supervisors) fails instead of writing alongside.
 */
export function lockPartitionFile(lockPath: string): DataDirectoryLock {
  return lockFile(lockPath, (holderPid) => new PartitionLockedError(lockPath, holderPid));
}

/** An exclusive, non-waiting flock on `path` (created 0600), with this process's PID written into the file. */
function lockFile(path: string, held: (holderPid: number | undefined) => Error): DataDirectoryLock {
  const descriptor = openSync(path, constants.O_RDWR | constants.O_CREAT, lockFileMode);
  try {
    chmodSync(path, lockFileMode);
    if (!tryExclusiveLock(descriptor)) throw held(readHolderPid(path));
    ftruncateSync(descriptor, 0);
    writeSync(descriptor, `${process.pid}\n`, 0);
  } catch (error) {
    closeSync(descriptor);
    throw error;
  }
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      // Emptied first, so the file never names a process that no longer holds it; closing drops the lock.
      ftruncateSync(descriptor, 0);
      closeSync(descriptor);
    },
  };
}

function readHolderPid(path: string): number | undefined {
  // The holder empties the file and writes its PID right after it locks; give it that moment.
  const deadline = Date.now() + holderPidWaitMs;
  for (;;) {
    const text = readFileSync(path, "utf8").trim();
    const pid = Number(text);
    if (text !== "" && Number.isInteger(pid) && pid > 0) return pid;
    if (Date.now() >= deadline) return undefined;
    Bun.sleepSync(10);
  }
}

const lockExclusive = 2;
const lockNonBlocking = 4;

const errnoInterrupted = 4; // EINTR, on Linux and macOS alike

// flock(descriptor, LOCK_EX | LOCK_NB) through libc: true if taken, false if another open file holds it. libc is
// opened for the call and closed after it: the lock is taken once per start. Linux and macOS only, as the rest of the
// server (SO_REUSEPORT, systemd). errno is read right after the call, on the same thread.
function tryExclusiveLock(descriptor: number): boolean {
  const darwin = process.platform === "darwin";
  const errnoSymbol = darwin ? "__error" : "__errno_location";
  const wouldBlock = darwin ? 35 : 11; // EWOULDBLOCK
  const library = dlopen(darwin ? "libc.dylib" : "libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    [errnoSymbol]: { args: [], returns: FFIType.ptr },
  });
  try {
    const flock = library.symbols.flock!;
    const errnoLocation = library.symbols[errnoSymbol]!;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (flock(descriptor, lockExclusive | lockNonBlocking) === 0) return true;
      const errno = read.i32(errnoLocation() as NonNullable<ReturnType<typeof errnoLocation>>, 0);
      if (errno === wouldBlock) return false;
      // A signal arrived during the call: try again, a bounded number of times.
      if (errno !== errnoInterrupted) throw new Error(`flock on the data directory lock failed with errno ${errno}`);
    }
    throw new Error("flock on the data directory lock was interrupted repeatedly");
  } finally {
    library.close();
  }
}
