// Where media bytes live on disk, under `<dataDir>/media/`:
//   blobs/<first two hex digits>/<sha-256 hex>   a stored blob, complete and verified (read-only, 0600)
//   partial/<sha-256 hex>-<account>              an upload in progress (appended to, resumable)
// A blob appears only by rename(2) of its verified partial file, after an fsync, so a reader (any worker) sees a
// whole blob or none. Bytes are only ever streamed through (a chunk at a time), never held whole in memory.

import { mkdirSync, rmSync, statSync } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";

export const mediaDirectoryName = "media";
const fileMode = 0o600;
/** The buffer a resumed upload's bytes on disk are hashed through. */
const hashReadBytes = 1024 * 1024;

export class MediaBlobFiles {
  readonly blobsDirectory: string;
  readonly partialDirectory: string;

  constructor(readonly root: string) {
    this.blobsDirectory = join(root, "blobs");
    this.partialDirectory = join(root, "partial");
    mkdirSync(this.blobsDirectory, { recursive: true, mode: 0o700 });
    mkdirSync(this.partialDirectory, { recursive: true, mode: 0o700 });
  }

  blobPath(hex: string): string {
    return join(this.blobsDirectory, hex.slice(0, 2), hex);
  }

  partialPath(hex: string, account: number): string {
    return join(this.partialDirectory, `${hex}-${account}`);
  }

  /** Size of a file, or -1 when there is none. */
  size(path: string): number {
    try {
      return statSync(path).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return -1;
      throw error;
    }
  }

  /** Opens a partial file for appending (created empty when missing). */
  async openPartial(hex: string, account: number): Promise<import("node:fs/promises").FileHandle> {
    return open(this.partialPath(hex, account), "a", fileMode);
  }

  /**
   * Feeds the first `length` bytes of `path` to `update` (a resumed upload's hash state), through one buffer of
   * hashReadBytes: a file stream would read ahead as fast as the disk goes and leave every chunk to the collector.
   */
  async hashPrefix(path: string, length: number, update: (chunk: Uint8Array) => void): Promise<void> {
    if (length === 0) return;
    const handle = await open(path, "r");
    try {
      const buffer = new Uint8Array(hashReadBytes);
      let position = 0;
      while (position < length) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
        if (bytesRead === 0) throw new Error(`${path} is shorter than ${length} bytes`);
        update(buffer.subarray(0, bytesRead));
        position += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }

  /** Makes a verified partial file the blob of `hex`: fsync, then an atomic rename. */
  async commit(hex: string, account: number, handle: import("node:fs/promises").FileHandle): Promise<void> {
    await handle.sync();
    const target = this.blobPath(hex);
    mkdirSync(join(this.blobsDirectory, hex.slice(0, 2)), { recursive: true, mode: 0o700 });
    await rename(this.partialPath(hex, account), target);
  }

  async removePartial(hex: string, account: number): Promise<void> {
    await unlinkQuietly(this.partialPath(hex, account));
  }

  async removeBlob(hex: string): Promise<void> {
    await unlinkQuietly(this.blobPath(hex));
  }

  /** Every file under media/ (tests: "no file left behind"). */
  static removeAll(root: string): void {
    rmSync(root, { recursive: true, force: true });
  }
}

async function unlinkQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
