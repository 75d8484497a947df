import type { AccountStore } from "./account-store.ts";
import type { DeviceStore } from "./device-store.ts";
import type { GroupStore } from "./group-store.ts";
import type { InviteStore } from "./invite-store.ts";
import type { KeyStore } from "./key-store.ts";
import type { LinkCodeStore } from "./link-code-store.ts";
import type { QueueStore } from "./queue-store.ts";

// The durable store of the server: one object per open database, holding every store over it.
export interface Storage {
  readonly accounts: AccountStore;
  readonly devices: DeviceStore;
  readonly queues: QueueStore;
  readonly invites: InviteStore;
  readonly linkCodes: LinkCodeStore;
  // The key directory (public keys of devices), in each device's partition.
  readonly keys: KeyStore;
  // Groups (membership, name blob, change log), in each group's partition (PROTOCOL.md section 18).
  readonly groups: GroupStore;
  // Closes the database; calling it again does nothing. No store may be used afterwards.
  close(): Promise<void>;
}
