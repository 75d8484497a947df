import type { DeviceRecord } from "./device-store.ts";

export interface AccountRecord {
  id: number;
  handle: string;
  createdAtMs: number;
}

export interface AccountStore {
  // Creates the account and its first device (device id 1) in one transaction. Returns undefined if the handle is
  // taken. Handles are compared byte for byte: normalising them is the caller's business.
  create(
    handle: string,
    publicKey: Uint8Array,
    nowMs: number,
  ): Promise<{ account: AccountRecord; device: DeviceRecord } | undefined>;
  byId(id: number): Promise<AccountRecord | undefined>;
  byHandle(handle: string): Promise<AccountRecord | undefined>;
  // Accounts with id > afterId in id order, at most `limit` (none when limit <= 0): a page of a bounded walk.
  list(options: { limit: number; afterId?: number }): Promise<AccountRecord[]>;
  // Removes the account, its devices, their queue rows (and shared payload refs) and its link codes. Returns false
  // if absent. Messages the account sent that wait in other accounts' queues stay: they belong to their recipients.
  remove(id: number): Promise<boolean>;
  count(): Promise<number>;
}
