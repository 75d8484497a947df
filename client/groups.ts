// The SDK's side of groups (PROTOCOL.md section 18): the shapes the app sees, and the device-list hash a group send
// may carry instead of the whole list. WhatsApp's sender-key shape: one shared ciphertext for the whole group plus,
// for devices that do not hold the sender's key yet, small per-device parts (the sender-key distribution messages).
// The SDK carries both as opaque bytes; encrypting them is the app's (or the end-to-end layer's) business.

import {
  type GroupDevice,
  type GroupPart,
  groupDevicesHashBytes,
  packDevices,
  sortDevices,
} from "../protocol/index.ts";

export type { GroupDevice, GroupPart };

/** A group as its owner answered (groupInfo): after create, a change or a fetch. */
export interface GroupInfo {
  readonly groupId: number;
  readonly version: number;
  /** The name blob (end-to-end encrypted by the members; the demo chats use UTF-8 plaintext). */
  readonly name: Uint8Array;
  readonly members: readonly number[];
  readonly admins: readonly number[];
  /** Every member device, in canonical order (what a send encrypts for, minus the sending device). */
  readonly devices: readonly GroupDevice[];
}

export interface GroupSendOptions {
  /**
   * The member devices the payload was encrypted for (this device excluded). Default: the devices of `view`
   * (the last GroupInfo), sent as their 8-byte hash rather than the list.
   */
  readonly devices?: readonly GroupDevice[];
  /** Send the whole list instead of its hash (a deviceMismatch then names exactly what differs). */
  readonly listDevices?: boolean;
  /** Per-device parts (sender-key distribution messages), at most groupPartsPerSendMax. */
  readonly parts?: readonly GroupPart[];
  /** Send under this client id (from reserveClientId), so that a resend after the app's restart is recognised. */
  readonly clientId?: number;
}

/** The first 8 bytes of SHA-256 over the packed device list: what the server compares (PROTOCOL.md section 18). */
export async function groupDevicesHash(devices: readonly GroupDevice[]): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest("SHA-256", packDevices(sortDevices(devices)) as Uint8Array<ArrayBuffer>);
  return new Uint8Array(digest).slice(0, groupDevicesHashBytes);
}

/** The devices a send from `account`/`device` goes to: every member device but the sending one. */
export function recipientDevices(info: GroupInfo, account: number, device: number): GroupDevice[] {
  return info.devices.filter((entry) => !(entry.account === account && entry.device === device));
}

/**
 * The last membership version seen per group (PROTOCOL.md section 18: a group's events carry strictly growing
 * versions, in order). Bounded: past `groupsMax` groups the least recently seen is forgotten, and an event of that
 * group resent later would be shown again, as a message past the duplicate filter's window would.
 */
export class GroupVersions {
  private readonly versions = new Map<number, number>();

  constructor(private readonly groupsMax: number) {}

  /** True for a version not seen before (and records it); false for a resend. */
  admit(groupId: number, version: number): boolean {
    const seen = this.versions.get(groupId);
    if (seen !== undefined && version <= seen) return false;
    this.versions.delete(groupId);
    this.versions.set(groupId, version);
    if (this.versions.size > this.groupsMax) {
      const oldest = this.versions.keys().next().value;
      if (oldest !== undefined) this.versions.delete(oldest);
    }
    return true;
  }
}
