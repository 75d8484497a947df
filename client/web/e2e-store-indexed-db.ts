// The web page's end-to-end store (client/e2e-store.ts) in IndexedDB: the device's Signal identity and prekey
// private keys and its sessions, in a database of their own beside the device key's. Everything is read once when
// the page opens it (a few hundred small strings) and then kept in memory; each change is written through, and a
// write that IndexedDB refuses is reported (the page says the keys are kept in this tab only). Without IndexedDB the
// store is memory only from the start.

import type { E2eStore } from "../e2e-store.ts";
import { requestResult, transactionDone, withTimeout } from "./indexed-db.ts";

const databaseName = "switchboard-web-e2e";
const databaseVersion = 1;
const storeName = "entries";

export class IndexedDbE2eStore implements E2eStore {
  private constructor(
    private readonly database: IDBDatabase | null,
    private readonly entries: Map<string, string>,
    private failure: string | null,
  ) {}

  /** Why the keys are not kept across visits, or null. */
  get problem(): string | null {
    return this.failure;
  }

  static async open(): Promise<IndexedDbE2eStore> {
    if (globalThis.indexedDB === undefined) return new IndexedDbE2eStore(null, new Map(), "no IndexedDB");
    try {
      const request = indexedDB.open(databaseName, databaseVersion);
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName);
      };
      const database = await withTimeout(requestResult(request), "opening the end-to-end store");
      const store = database.transaction(storeName, "readonly").objectStore(storeName);
      const [keys, values] = await withTimeout(
        Promise.all([requestResult(store.getAllKeys()), requestResult(store.getAll())]),
        "reading the end-to-end store",
      );
      const entries = new Map<string, string>();
      keys.forEach((key, index) => {
        if (typeof key === "string" && typeof values[index] === "string") entries.set(key, values[index]);
      });
      return new IndexedDbE2eStore(database, entries, null);
    } catch (error) {
      return new IndexedDbE2eStore(null, new Map(), `IndexedDB cannot be opened: ${(error as Error).message}`);
    }
  }

  async get(key: string): Promise<string | undefined> {
    return this.entries.get(key);
  }

  async set(key: string, value: string): Promise<void> {
    this.entries.set(key, value);
    await this.write((store) => store.put(value, key));
  }

  async delete(key: string): Promise<void> {
    if (this.entries.delete(key)) await this.write((store) => store.delete(key));
  }

  /** Deletes everything (the page forgets its device). */
  async clear(): Promise<void> {
    this.entries.clear();
    await this.write((store) => store.clear());
  }

  private async write(change: (store: IDBObjectStore) => void): Promise<void> {
    if (this.database === null || this.failure !== null) return;
    try {
      const transaction = this.database.transaction(storeName, "readwrite");
      change(transaction.objectStore(storeName));
      await withTimeout(transactionDone(transaction), "writing the end-to-end store");
    } catch (error) {
      this.failure = `IndexedDB refused a write (${(error as Error).message})`;
    }
  }
}
