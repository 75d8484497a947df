// The end-to-end store in one JSON file (Bun/Node only: the SDK core does not import it), for the terminal chat.
// It holds the device's Signal identity and prekey private keys and its sessions, so it is written like the key
// file (private-file.ts): mode 0600, through a fresh temporary file flushed and renamed, so a crash leaves the old
// file or the new one, never half of one. Writes are chained: one at a time, each with everything set before it.

import { readFileSync } from "node:fs";
import type { E2eStore } from "./e2e-store.ts";
import { tightenPrivateFile, writePrivateFile } from "./private-file.ts";

export class FileE2eStore implements E2eStore {
  private readonly entries: Map<string, string>;
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    entries: Map<string, string>,
  ) {
    this.entries = entries;
  }

  /** Opens the file, or starts an empty store that creates it on the first write. */
  static open(path: string): FileE2eStore {
    if (!tightenPrivateFile(path)) return new FileE2eStore(path, new Map());
    const parsed = JSON.parse(readFileSync(path, "utf8")) as { version: number; entries: Record<string, string> };
    if (parsed.version !== 1 || typeof parsed.entries !== "object") throw new Error(`${path} is not an E2E store`);
    return new FileE2eStore(path, new Map(Object.entries(parsed.entries)));
  }

  async get(key: string): Promise<string | undefined> {
    return this.entries.get(key);
  }

  async set(key: string, value: string): Promise<void> {
    this.entries.set(key, value);
    await this.persist();
  }

  async delete(key: string): Promise<void> {
    if (this.entries.delete(key)) await this.persist();
  }

  /** Resolves once everything set so far is on disk. */
  private persist(): Promise<void> {
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  private write(): void {
    writePrivateFile(this.path, JSON.stringify({ version: 1, entries: Object.fromEntries(this.entries) }));
  }
}
