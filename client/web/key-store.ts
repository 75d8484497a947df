// The web chat's device identity in the browser: a WebCrypto Ed25519 key pair whose private key is NOT extractable,
// stored as the CryptoKey object itself in IndexedDB (CryptoKey is structured-cloneable: the browser keeps the key
// material, page scripts can sign with it but never read it). Where IndexedDB is missing or refuses to store a
// CryptoKey, the key lives in the tab only and the page says so. Every IndexedDB wait is bounded.

import type { DeviceKeyPair } from "../keys.ts";
import { generateKeyPair } from "../keys.ts";
import { requestResult, transactionDone, withTimeout } from "./indexed-db.ts";

const databaseName = "switchboard-web-chat";
const databaseVersion = 1;
const storeName = "identity";
const recordKey = "device";

export interface StoredIdentity {
  readonly account: number;
  readonly device: number;
  readonly handle: string | null;
  readonly keyPair: DeviceKeyPair;
  /** Next client id to use (the welcome raises it past the server's mark anyway). */
  readonly nextClientId: number;
}

/** What the browser offers for device keys. */
export type KeySupport =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "insecureContext" | "noEd25519"; readonly detail: string };

/** Whether this page can make and use a non-extractable Ed25519 key (tries one). */
export async function checkKeySupport(): Promise<KeySupport> {
  if (!globalThis.isSecureContext || globalThis.crypto?.subtle === undefined) {
    return {
      ok: false,
      reason: "insecureContext",
      detail: "the page is not in a secure context (open it over https, or on localhost), so WebCrypto is off",
    };
  }
  try {
    await generateKeyPair({ extractable: false });
    return { ok: true };
  } catch (error) {
    return {
      ok: false,
      reason: "noEd25519",
      detail: `this browser has no Ed25519 in WebCrypto (Chrome/Edge 137+, Firefox 129+, Safari 17+): ${String(error)}`,
    };
  }
}

function isIdentity(value: unknown): value is StoredIdentity {
  const record = value as Partial<StoredIdentity> | null;
  const isId = (id: unknown) => typeof id === "number" && Number.isInteger(id) && id > 0;
  return (
    typeof record === "object" &&
    record !== null &&
    isId(record.account) &&
    isId(record.device) &&
    isId(record.nextClientId) &&
    (record.handle === null || typeof record.handle === "string") &&
    typeof record.keyPair === "object" &&
    record.keyPair !== null &&
    record.keyPair.privateKey instanceof CryptoKey &&
    record.keyPair.publicKey instanceof Uint8Array &&
    record.keyPair.publicKey.length === 32
  );
}

/** The identity store: IndexedDB when it works, else memory (`persistent` false, `problem` says why). */
export class KeyStore {
  private memory: StoredIdentity | null = null;

  private constructor(
    private readonly database: IDBDatabase | null,
    private failure: string | null,
  ) {}

  /** Why the key cannot be kept across visits, or null. */
  get problem(): string | null {
    return this.failure;
  }

  get persistent(): boolean {
    return this.database !== null && this.failure === null;
  }

  static async open(): Promise<KeyStore> {
    if (globalThis.indexedDB === undefined) return new KeyStore(null, "this browser offers no IndexedDB");
    try {
      const request = indexedDB.open(databaseName, databaseVersion);
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName);
      };
      const database = await withTimeout(requestResult(request), "opening the key store");
      return new KeyStore(database, null);
    } catch (error) {
      return new KeyStore(null, `IndexedDB cannot be opened: ${(error as Error).message}`);
    }
  }

  async load(): Promise<StoredIdentity | null> {
    if (!this.persistent) return this.memory;
    const transaction = this.database!.transaction(storeName, "readonly");
    const value = await withTimeout(
      requestResult(transaction.objectStore(storeName).get(recordKey)),
      "reading the key",
    );
    return isIdentity(value) ? value : null;
  }

  /**
   * Keeps the identity. Returns null when it is in IndexedDB, else why it is kept in this tab only (the store
   * switches to memory for good: a browser that refuses a CryptoKey once refuses it again).
   */
  async save(identity: StoredIdentity): Promise<string | null> {
    this.memory = identity;
    if (!this.persistent) return this.failure;
    try {
      const transaction = this.database!.transaction(storeName, "readwrite");
      transaction.objectStore(storeName).put(identity, recordKey);
      await withTimeout(transactionDone(transaction), "storing the key");
      return null;
    } catch (error) {
      this.failure = `IndexedDB refused the key (${(error as Error).message})`;
      return this.failure;
    }
  }

  async clear(): Promise<void> {
    this.memory = null;
    if (!this.persistent) return;
    const transaction = this.database!.transaction(storeName, "readwrite");
    transaction.objectStore(storeName).delete(recordKey);
    await withTimeout(transactionDone(transaction), "deleting the key");
  }
}
