// The public face of storage/: the store interfaces and the SQLite implementation. Other folders import only this.

export type { AccountRecord, AccountStore } from "./account-store.ts";
export { migrateSqliteFile, openSqliteStorage, type SqliteStorageOptions } from "./database-sqlite.ts";
export type { DeviceKey, DeviceRecord, DeviceStore, LastSeenEntry } from "./device-store.ts";
export type { GroupChange, GroupDelta, GroupMember, GroupRecord, GroupStore } from "./group-store.ts";
export type { InviteRecord, InviteStore } from "./invite-store.ts";
export type {
  KeyStore,
  PublishedKeys,
  PublishResult,
  StoredPreKey,
  StoredSignedPreKey,
  TakenBundle,
} from "./key-store.ts";
export type { LinkCodeStore } from "./link-code-store.ts";
export { MigrationError } from "./migrations/names.ts";
export {
  type ClientIdWindow,
  type GroupEventRow,
  type GroupReceiptRow,
  groupEventBytes,
  groupReceiptBytes,
  type QueueBatch,
  type QueueEntry,
  type QueueStore,
  type ReadReceiptWindow,
} from "./queue-store.ts";
export type { Storage } from "./storage.ts";
export { type DelayOptions, delayedStorage } from "./storage-delayed.ts";
export { AccountNotFoundError } from "./storage-errors.ts";
