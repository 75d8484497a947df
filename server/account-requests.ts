// Requests of a logged-in device about accounts and devices: look up an account by handle (with its device list,
// for client-side fan-out), create a link code for a new device, list and remove its account's devices.

import {
  type DeviceRemoveStanza,
  type DevicesStanza,
  ErrorCode,
  type LinkCreateStanza,
  type LookupStanza,
} from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import { type Session, SessionState } from "./session.ts";

/** Random bytes in a link code: 80 bits, written as 16 base32 characters, so codes cannot be guessed in 10 minutes. */
const linkCodeRandomBytes = 10;
const base32Alphabet = "abcdefghijkmnpqrstuvwxyz23456789";
/**
 * Removals remembered so that a resent deviceRemove is answered with serverAck again (its first answer may have been
 * lost with its connection). In memory, oldest first out: a few tens of bytes each. A removal forgotten (by this bound, a
 * restart or a reload) makes a resend get unknownDevice, which PROTOCOL.md tells clients to read as "already gone":
 * device ids are never reused. Persisting removals would need a store change for a case the client can settle alone.
 */
const removedDevicesRememberedMax = 10_000;
/** Device ids stay below 2^21 (storage), so account * 2^21 + device is an exact key (below 2^53). */
const deviceIdsPerAccount = 2 ** 21;

export function randomCode(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  let code = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of random) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      code += base32Alphabet[(buffer >> bits) & 31];
    }
  }
  if (bits > 0) code += base32Alphabet[(buffer << (5 - bits)) & 31];
  return code;
}

export class AccountRequests {
  /** Keys (account * 2^21 + device) of devices removed by a deviceRemove, in removal order. */
  private readonly removedDevices = new Set<number>();

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
  ) {}

  async lookup(session: Session, stanza: LookupStanza): Promise<void> {
    const account = await this.context.storage.accounts.byHandle(stanza.handle);
    const devices = account === undefined ? undefined : await this.context.directory.load(account.id);
    this.context.io.send(session, {
      kind: "lookupResult",
      clientId: stanza.clientId,
      account: account === undefined ? null : account.id,
      devices: devices ?? [],
    });
  }

  async linkCreate(session: Session, stanza: LinkCreateStanza): Promise<void> {
    const now = this.context.now();
    const code = randomCode(linkCodeRandomBytes);
    const expiresAtMs = now + this.context.limits.linkCodeTtlMs;
    await this.context.storage.linkCodes.issue(session.account, code, now, expiresAtMs);
    this.context.io.send(session, {
      kind: "linkCode",
      clientId: stanza.clientId,
      code,
      expiresAtSeconds: Math.floor(expiresAtMs / 1000),
    });
  }

  async devices(session: Session, stanza: DevicesStanza): Promise<void> {
    const records = await this.context.storage.devices.list(session.account);
    this.context.io.send(
      session,
      {
        kind: "deviceList",
        clientId: stanza.clientId,
        devices: records.map((record) => ({
          device: record.device,
          createdAtSeconds: Math.floor(record.createdAtMs / 1000),
          lastSeenAtSeconds: Math.floor(record.lastSeenAtMs / 1000),
        })),
      },
      { compress: true },
    );
  }

  async deviceRemove(session: Session, stanza: DeviceRemoveStanza): Promise<void> {
    const { storage, directory, io, router } = this.context;
    const account = session.account;
    const devices = await directory.load(account);
    const key = account * deviceIdsPerAccount + stanza.device;
    if (devices === undefined || !devices.includes(stanza.device)) {
      // A resend of a removal that was done (its serverAck may have been lost): the same answer again.
      if (this.removedDevices.has(key)) {
        if (session.state === SessionState.ready) io.send(session, { kind: "serverAck", clientId: stanza.clientId });
        return;
      }
      io.send(session, {
        kind: "error",
        code: ErrorCode.unknownDevice,
        clientId: stanza.clientId,
        message: "no such device",
      });
      return;
    }
    if (devices.length === 1) {
      io.send(session, {
        kind: "error",
        code: ErrorCode.notAllowed,
        clientId: stanza.clientId,
        message: "an account keeps at least one device",
      });
      return;
    }
    const removedSession = router.find(account, stanza.device);
    await this.delivery.forgetDevice(account, stanza.device);
    await storage.devices.remove({ account, device: stanza.device });
    directory.invalidate(account);
    this.rememberRemoved(key);
    this.context.log.info("device_removed", { account, device: stanza.device, by: session.device });
    if (removedSession !== undefined) {
      router.detach(account, stanza.device, removedSession);
      io.close(removedSession, ErrorCode.deviceRemoved, "this device was removed from its account");
    }
    if (session.state === SessionState.ready) io.send(session, { kind: "serverAck", clientId: stanza.clientId });
  }

  private rememberRemoved(key: number): void {
    this.removedDevices.add(key);
    if (this.removedDevices.size > removedDevicesRememberedMax) {
      this.removedDevices.delete(this.removedDevices.values().next().value!);
    }
  }
}
