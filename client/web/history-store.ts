// The web chat's history across reloads: one ChatSnapshot per device (chat-state.ts bounds it: 50 conversations of
// at most 200 messages) in IndexedDB, in a database of its own so that the key store's schema stays as it is.
// Written whole, a moment after the last change (the page writes it at most once per saveDelayMs); every wait is
// bounded. Where IndexedDB is missing or fails, history lives in the tab only, as the device key does then.
// Messages are kept as plain text, like the device's other data in this origin: a real app encrypts them at rest.

import type { ChatSnapshot } from "./chat-state.ts";
import { requestResult, transactionDone, withTimeout } from "./indexed-db.ts";

const databaseName = "switchboard-web-history";
const databaseVersion = 1;
const storeName = "snapshots";

function isSnapshot(value: unknown): value is ChatSnapshot {
  const record = value as Partial<ChatSnapshot> | null;
  return (
    typeof record === "object" &&
    record !== null &&
    record.version === 1 &&
    Array.isArray(record.conversations) &&
    Array.isArray(record.labels)
  );
}

export class HistoryStore {
  private readonly memory = new Map<string, ChatSnapshot>();

  private constructor(private database: IDBDatabase | null) {}

  static async open(): Promise<HistoryStore> {
    if (globalThis.indexedDB === undefined) return new HistoryStore(null);
    try {
      const request = indexedDB.open(databaseName, databaseVersion);
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName);
      };
      return new HistoryStore(await withTimeout(requestResult(request), "opening the history"));
    } catch {
      return new HistoryStore(null);
    }
  }

  /** Whether history survives a reload. */
  get persistent(): boolean {
    return this.database !== null;
  }

  async load(account: number, device: number): Promise<ChatSnapshot | null> {
    const key = `${account}:${device}`;
    if (this.database === null) return this.memory.get(key) ?? null;
    const transaction = this.database.transaction(storeName, "readonly");
    const value = await withTimeout(requestResult(transaction.objectStore(storeName).get(key)), "reading the history");
    return isSnapshot(value) ? value : null;
  }

  async save(snapshot: ChatSnapshot): Promise<void> {
    const key = `${snapshot.account}:${snapshot.device}`;
    this.memory.set(key, snapshot);
    if (this.database === null) return;
    try {
      const transaction = this.database.transaction(storeName, "readwrite");
      transaction.objectStore(storeName).put(snapshot, key);
      await withTimeout(transactionDone(transaction), "writing the history");
    } catch {
      this.database = null; // keep it in the tab from now on
    }
  }

  /** Forgets every device's history (with "Forget this device"). */
  async clear(): Promise<void> {
    this.memory.clear();
    if (this.database === null) return;
    const transaction = this.database.transaction(storeName, "readwrite");
    transaction.objectStore(storeName).clear();
    await withTimeout(transactionDone(transaction), "deleting the history");
  }
}
