// Requests of a logged-in device about accounts and devices: look up an account by handle (with its device list,
// for client-side fan-out), handles by account id (reverse lookup, under the privacy rule of PROTOCOL.md section 8),
// create a link code for a new device, list and remove its account's devices.

import {
  type DeviceRemoveStanza,
  type DevicesStanza,
  ErrorCode,
  type LinkCreateStanza,
  type LookupStanza,
  type ReverseLookupStanza,
} from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import { deviceKey } from "./device-state.ts";
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
  /** Keys (deviceKey) of devices removed by a deviceRemove, in removal order. */
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

  /**
   * Handles of accounts by id, only where this device may learn them (PROTOCOL.md section 8, reverseLookup): its own
   * account, and accounts with a message delivered to this device. Every other id, existing or not, is answered nil.
   * Ids are sequential, so answering any id would hand out every handle. Each id costs one rate token.
   */
  async reverseLookup(session: Session, stanza: ReverseLookupStanza): Promise<void> {
    const { io, metrics, storage } = this.context;
    // admit() took one token for the stanza; the other ids pay here, all or nothing. A request never costs more than
    // a full bucket (a config may set a burst below reverseLookupAccountsMax), or it could never be answered.
    const extraTokens = Math.min(stanza.accounts.length, this.context.limits.rateBurstStanzas) - 1;
    if (session.rateTokens < extraTokens) {
      metrics.errors.incLabel("rateLimited");
      io.send(session, {
        kind: "error",
        code: ErrorCode.rateLimited,
        clientId: stanza.clientId,
        message: `a reverse lookup costs one rate token per id; ${stanza.accounts.length} ids is over the budget now`,
      });
      return;
    }
    session.rateTokens -= extraTokens;
    // A request may name an id twice: each distinct id is checked and read once.
    const answers = new Map<number, string | null>();
    for (const account of stanza.accounts) {
      if (answers.has(account)) continue;
      let handle: string | null = null;
      if (await this.mayLearnHandle(session, account)) handle = (await storage.accounts.byId(account))?.handle ?? null;
      answers.set(account, handle);
    }
    if (session.state !== SessionState.ready) return;
    io.send(session, {
      kind: "reverseLookupResult",
      clientId: stanza.clientId,
      handles: stanza.accounts.map((account) => answers.get(account) ?? null),
    });
  }

  /**
   * True when `account` is the session's own, or has had a message delivered to the session's device: one pushed on
   * this connection and not yet acked (the client may ask before it acks), or one it acked (the read-receipt window of
   * that sender device exists; in memory it may be newer than in the store). Receipts do not count.
   */
  private async mayLearnHandle(session: Session, account: number): Promise<boolean> {
    if (account === session.account) return true;
    const state = session.deviceState;
    if (state?.inFlight?.some((entry) => entry.senderAccount === account)) return true;
    const devices = await this.context.directory.load(account);
    if (devices === undefined || devices.length === 0) return false;
    const unknown: Array<{ account: number; device: number }> = [];
    for (const device of devices) {
      const window = state?.readWindows?.get(deviceKey(account, device));
      if (window === undefined) unknown.push({ account, device });
      else if (window.delivered !== 0n) return true;
    }
    if (unknown.length === 0) return false;
    const reader = { account: session.account, device: session.device };
    const stored = await this.context.storage.queues.readReceiptWindows(reader, unknown);
    return stored.some((window) => window.delivered.some((byte) => byte !== 0));
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
    const key = deviceKey(account, stanza.device);
    if (devices === undefined || !devices.includes(stanza.device)) {
      // A resend of a removal that was done (its serverAck may have been lost): the same answer again.
      if (this.removedDevices.has(key)) {
        if (session.state === SessionState.ready) io.send(session, { kind: "serverAck", clientId: stanza.clientId });
        return;
      }
      this.context.metrics.errors.incLabel("unknownDevice");
      io.send(session, {
        kind: "error",
        code: ErrorCode.unknownDevice,
        clientId: stanza.clientId,
        message: "no such device",
      });
      return;
    }
    if (devices.length === 1) {
      this.context.metrics.errors.incLabel("notAllowed");
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
    // Other workers close the device's session if it is theirs, and its owner deletes its queue (routing.ts).
    this.context.routing?.removed(account, [stanza.device], ErrorCode.deviceRemoved, false);
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
