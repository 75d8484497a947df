// Where the end-to-end layer keeps its secrets and sessions: a small key-value interface (string keys, string values)
// with three implementations: this in-memory one (tests, throwaway devices), a JSON file for Bun
// (e2e-store-file.ts, the terminal chat) and IndexedDB in the web page. signal-store.ts lays Signal's store out on
// top of it. Values are strings so every implementation stores them as they are (bytes are base64 inside).

export interface E2eStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

export class MemoryE2eStore implements E2eStore {
  readonly entries = new Map<string, string>();

  async get(key: string): Promise<string | undefined> {
    return this.entries.get(key);
  }

  async set(key: string, value: string): Promise<void> {
    this.entries.set(key, value);
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }
}
