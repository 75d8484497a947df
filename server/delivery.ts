// The delivery pipeline (ARCHITECTURE.md): validate a send, recognise retries, give each recipient device the next
// sequence of its queue, add the rows to the group commit, push to online devices within their window at once, and
// server-ack the sender once the message is durable (or acknowledged by every recipient before its commit).
// Cumulative acks delete rows and send `delivered` receipts back to every device of the sender through the same
// queues; a device that logs in drains its queue in order and gets queueEmpty at the end.
//
// Handlers may await the store (a device's state is loaded on first use). A session's stanzas are handled one at a
// time, in order (see connection.ts), and every mutation of shared state happens after the last await of a handler,
// on states looked up again at that point, so an eviction during the await can never fork a device's sequence.

import {
  ErrorCode,
  errorCodeName,
  ReceiptType,
  type ReceiptTypeValue,
  type SendStanza,
  type Stanza,
} from "../protocol/index.ts";
import { commitSettleStatesPerTurn } from "../protocol/limits.ts";
import { clientIdBytes } from "../storage/client-id-list.ts";
import type { QueueBatch, QueueEntry } from "../storage/index.ts";
import { type ClientIdPair, ClientIdPairs } from "./client-id-pairs.ts";
import { clientIdStatus, markStored } from "./client-id-window.ts";
import type { ServerContext } from "./context.ts";
import { type DeviceState, deviceKey, type InFlightEntry, type PendingEntry } from "./device-state.ts";
import { DeviceStates } from "./device-states.ts";
import {
  type CommitStats,
  GroupCommit,
  type OpenBatch,
  type PendingMessage,
  type PendingRecipient,
} from "./group-commit.ts";
import { groupEventLiveEntry, groupMessageLiveEntry, groupReceiptLiveEntry } from "./group-entries.ts";
import type { GroupDelivered } from "./group-receipts.ts";
import { frameForSession, receiptRowFrame } from "./keys-identity-event.ts";
import { emptyReadWindow, markDelivered, markRead, readStatus } from "./read-receipt-window.ts";
import type { ReceiptIntent } from "./routing.ts";
import { type Session, SessionState, sameSession } from "./session.ts";
import { TurnBudget } from "./turn-budget.ts";

/**
 * Times a handler loads the states it is about to change and takes them again in the turn of the change
 * (DeviceStates.statesNow) before it answers busy: a state may be released between the two, rarely twice.
 */
const stateTakeAttemptsMax = 4;

export class Delivery {
  readonly devices: DeviceStates;
  readonly pairs: ClientIdPairs;
  readonly commit: GroupCommit;
  /** The work every session and background slice may do together in one turn (turnWorkMsMax). */
  readonly turn: TurnBudget;

  constructor(private readonly context: ServerContext) {
    this.devices = new DeviceStates(context);
    this.turn = new TurnBudget(() => context.limits.turnWorkMsMax);
    this.pairs = new ClientIdPairs(context.storage, context.now, () => context.limits.deviceStateIdleReleaseMs);
    this.commit = new GroupCommit(
      context.storage.queues,
      context.limits.commitBatchRowsMax,
      context.limits.commitDelayMs,
      context.limits.seqReservationBlock,
      (batch, stats) => this.committed(batch, stats),
      (error) => this.commitFailed(error),
      context.now,
    );
  }

  get deviceStates(): number {
    return this.devices.size;
  }

  /** Gives back the state of an idle online device (see DeviceStates.releaseIfIdle). */
  releaseIfIdle(session: Session): void {
    this.devices.releaseIfIdle(session);
  }

  /** Re-reads queue depths after the retention sweep (see DeviceStates.resyncCounters). */
  resyncCounters(devices: ReadonlyArray<{ account: number; device: number }>): Promise<void> {
    return this.devices.resyncCounters(devices);
  }

  // ---- device states -------------------------------------------------------------------------------------------

  // ---- sessions ------------------------------------------------------------------------------------------------

  /** Binds a logged-in session to its device and starts the drain. Undefined when the device is gone. */
  async attach(session: Session): Promise<DeviceState | undefined> {
    let state: DeviceState | undefined;
    for (let attempt = 0; attempt < stateTakeAttemptsMax && state === undefined; attempt++) {
      const loaded = await this.devices.statesOf(session.account, [session.device]);
      if (loaded === undefined || loaded.length === 0) return undefined;
      // Taken again in this turn (see DeviceStates.statesNow).
      state = this.devices.statesNow(session.account, [session.device])?.[0];
    }
    if (state === undefined || session.state !== SessionState.ready) return undefined;
    const previous = state.session;
    if (previous !== null && !sameSession(previous, session)) this.detach(previous);
    state.session = session;
    state.deliveredSeq = state.ackedSeq;
    state.inFlight = null;
    session.deviceState = state;
    return state;
  }

  detach(session: Session): void {
    const state = session.deviceState;
    session.deviceState = null;
    session.stateReleased = false;
    if (state === null || !sameSession(state.session, session)) return;
    state.session = null;
    state.inFlight = null;
    state.deliveredSeq = state.ackedSeq;
    this.devices.dropIfIdle(state);
  }

  // ---- send ----------------------------------------------------------------------------------------------------

  async send(session: Session, stanza: SendStanza): Promise<void> {
    const { io, limits, directory } = this.context;
    const refuse = (code: number, message: string, lists?: { missing: number[]; extra: number[] }) => {
      this.context.metrics.errors.incLabel(errorCodeName(code));
      io.send(session, {
        kind: "error",
        code,
        clientId: stanza.clientId,
        message,
        ...(lists === undefined ? {} : { missingDevices: lists.missing, extraDevices: lists.extra }),
      });
    };

    // Retries are recognised per (recipient account, sender device), where the message is stored.
    let pair = await this.pairs.load(stanza.to, session.account, session.device);
    const status = clientIdStatus(pair.marks, stanza.clientId);
    if (status === "stored") return this.recognisedRetry(session, pair, stanza.clientId);
    if (status === "tooOld") {
      return refuse(
        ErrorCode.clientIdReused,
        `client id ${stanza.clientId} is older than the retry window; use a new id`,
      );
    }

    const devices = await directory.load(stanza.to);
    if (devices === undefined) return refuse(ErrorCode.unknownAccount, `no account ${stanza.to}`);
    const targets = stanza.to === session.account ? devices.filter((device) => device !== session.device) : devices;
    if (targets.length === 0) return refuse(ErrorCode.badRequest, "the recipient has no other device");

    const payloads =
      stanza.payload instanceof Uint8Array ? [stanza.payload] : stanza.payload.map((entry) => entry.payload);
    if (payloads.some((payload) => payload.length > limits.payloadBytesMax)) {
      return refuse(ErrorCode.payloadTooLarge, `payload over ${limits.payloadBytesMax} bytes`);
    }

    // One payload for all devices, or exactly one per device of the recipient (client-side fan-out).
    const payloadByDevice = new Map<number, Uint8Array>();
    if (stanza.payload instanceof Uint8Array) {
      for (const device of targets) payloadByDevice.set(device, stanza.payload);
    } else {
      for (const entry of stanza.payload) {
        if (payloadByDevice.has(entry.device)) return refuse(ErrorCode.badRequest, `device ${entry.device} twice`);
        payloadByDevice.set(entry.device, entry.payload);
      }
      const missing = targets.filter((device) => !payloadByDevice.has(device));
      const extra = [...payloadByDevice.keys()].filter((device) => !targets.includes(device));
      if (missing.length > 0 || extra.length > 0) {
        return refuse(ErrorCode.deviceMismatch, "payloads do not match the recipient's devices", { missing, extra });
      }
    }

    let states = await this.devices.statesOf(stanza.to, targets);
    if (states === undefined) return refuse(ErrorCode.busy, "server busy; retry");
    // Fair share: one peer may fill at most queueSenderSharePercent of a device's queue. Counted only for queues
    // deeper than the share (a read of that queue), after the commit of what is open, so the store has every row.
    // (Only a queue past the share can hold one peer's entries past it.)
    const deep = states.filter((state) =>
      this.pastShare(state.queueRows, state.queueBytes, payloadByDevice.get(state.device)!.length),
    );
    if (deep.length > 0) {
      const unknown = deep.filter((state) => state.peerDepths?.has(session.account) !== true);
      if (unknown.length > 0) {
        await this.commit.flush();
        const read = new Map<number, { rows: number; bytes: number }>();
        for (const state of unknown) {
          read.set(state.device, await this.context.storage.queues.peerDepth(state, session.account));
        }
        states = await this.devices.statesOf(stanza.to, targets);
        if (states === undefined) return refuse(ErrorCode.busy, "server busy; retry");
        // Kept exact from here on by enqueue and ack, past the state too (DeviceStates.peerDepthsOf). A depth read
        // while another handler counted entries in would be stale: the one already there wins.
        for (const state of states) {
          const depth = read.get(state.device);
          if (depth === undefined) continue;
          const depths = this.devices.peerDepthsOf(state);
          if (!depths.has(session.account)) depths.set(session.account, depth);
        }
      }
      for (const state of states) {
        const depth = state.peerDepths?.get(session.account);
        if (depth !== undefined && this.pastShare(depth.rows, depth.bytes, payloadByDevice.get(state.device)!.length)) {
          return refuse(
            ErrorCode.queueFull,
            `your share (${limits.queueSenderSharePercent} %) of the queue of device ${state.device} is full; retry later`,
          );
        }
      }
    }
    // Taken again in this turn (see DeviceStates.statesNow); loaded once more if one went meanwhile.
    const recipientDevices = states.map((state) => state.device);
    let current = this.devices.statesNow(stanza.to, recipientDevices);
    for (let attempt = 0; current === undefined && attempt < stateTakeAttemptsMax; attempt++) {
      if ((await this.devices.statesOf(stanza.to, recipientDevices)) === undefined) break;
      current = this.devices.statesNow(stanza.to, recipientDevices);
    }
    if (current === undefined) return refuse(ErrorCode.busy, "server busy; retry");
    states = current;
    if (session.state !== SessionState.ready) return;
    pair = this.pairs.current(pair);
    // A retry of this very send may have been accepted while we waited.
    if (clientIdStatus(pair.marks, stanza.clientId) === "stored") {
      return this.recognisedRetry(session, pair, stanza.clientId);
    }
    for (const state of states) {
      const bytes = payloadByDevice.get(state.device)?.length ?? 0;
      if (state.queueRows + 1 > limits.queueMessagesMax || state.queueBytes + bytes > limits.queueBytesMax) {
        return refuse(ErrorCode.queueFull, `queue of device ${state.device} is full; retry later`);
      }
    }

    // Accepted: from here on nothing awaits until the commit.
    const batch = this.commit.batch;
    pair.marks = markStored(pair.marks, stanza.clientId);
    if (!batch.pairs.has(pair)) {
      batch.pairs.add(pair);
      pair.writes++;
    }
    // The sender's own high-water mark, told in welcome (the store raises it with the commit as well).
    const senderState = session.deviceState;
    if (senderState !== null && stanza.clientId > senderState.lastClientId) senderState.lastClientId = stanza.clientId;
    const message: PendingMessage = {
      sender: session,
      senderAccount: session.account,
      senderDevice: session.device,
      clientId: stanza.clientId,
      createdAtMs: this.context.now(),
      recipients: [],
      liveRecipients: states.length,
      serverAcked: false,
      pair,
      resentBy: null,
    };
    pair.unackedSends ??= new Map();
    pair.unackedSends.set(stanza.clientId, message);
    const onCancel = () => {
      message.liveRecipients--;
      if (message.liveRecipients === 0) this.serverAck(message);
    };
    for (const state of states) {
      const payload = payloadByDevice.get(state.device)!;
      const entry = this.enqueue(batch, state, payload.length, session.account, onCancel);
      const recipient: PendingRecipient = { state, entry, payload };
      message.recipients.push(recipient);
    }
    batch.messages.push(message);
    batch.rows += states.length;
    this.context.metrics.messagesAccepted.inc();
    for (const recipient of message.recipients) {
      this.pushLive(recipient.state, recipient.entry.seq, {
        seq: recipient.entry.seq,
        senderAccount: message.senderAccount,
        senderDevice: message.senderDevice,
        clientId: message.clientId,
        bytes: recipient.payload.length,
        peerAccount: message.senderAccount,
        frame: () => ({
          kind: "deliver",
          seq: recipient.entry.seq,
          from: message.senderAccount,
          fromDevice: message.senderDevice,
          clientId: message.clientId,
          timeSeconds: Math.floor(message.createdAtMs / 1000),
          payload: recipient.payload,
        }),
      });
    }
    this.commit.schedule();
  }

  /** Whether one more entry of `bytes` takes a queue depth (a whole queue's, or one peer's in it) past the share. */
  private pastShare(rows: number, queuedBytes: number, bytes: number): boolean {
    const { queueMessagesMax, queueBytesMax, queueSenderSharePercent } = this.context.limits;
    if (queueSenderSharePercent >= 100) return false;
    return (
      rows + 1 > Math.floor((queueMessagesMax * queueSenderSharePercent) / 100) ||
      queuedBytes + bytes > Math.floor((queueBytesMax * queueSenderSharePercent) / 100)
    );
  }

  /** A send whose client id the server already has: server-ack it once that send is durable. */
  private recognisedRetry(session: Session, pair: ClientIdPair, clientId: number): void {
    // Still waiting for its own server-ack: the resend is answered with it, in the order the messages were stored.
    const original = pair.unackedSends?.get(clientId);
    if (original !== undefined && !original.serverAcked) {
      original.resentBy ??= [];
      original.resentBy.push(session);
      return;
    }
    if (original !== undefined || clientIdStatus(pair.committed, clientId) === "stored") {
      this.context.io.send(session, { kind: "serverAck", clientId });
      return;
    }
    this.commit.batch.afterCommit.push(() => this.context.io.send(session, { kind: "serverAck", clientId }));
    this.commit.schedule();
  }

  /** A group message whose every recipient here acknowledged it before its commit (group-fanout.ts). */
  groupDurable(message: PendingMessage): void {
    this.serverAck(message);
  }

  private serverAck(message: PendingMessage): void {
    if (message.serverAcked) return;
    message.serverAcked = true;
    if (message.onDurable !== undefined) {
      message.onDurable();
      return;
    }
    this.context.io.send(message.sender, { kind: "serverAck", clientId: message.clientId });
    // Every send gets its answer, a resend on the same connection too.
    for (const session of message.resentBy ?? [])
      this.context.io.send(session, { kind: "serverAck", clientId: message.clientId });
  }

  /** The message is durable: a resend of it is answered from the committed client ids from now on. */
  private forgetUnacked(message: PendingMessage): void {
    if (message.pair === null) return;
    const unacked = message.pair.unackedSends;
    if (unacked?.get(message.clientId) === message) unacked.delete(message.clientId);
    if (unacked?.size === 0) message.pair.unackedSends = null;
  }

  /** Gives `state` its next sequence for an entry of `bytes`, in the open batch. (Also used by group-fanout.ts.) */
  enqueue(
    batch: OpenBatch,
    state: DeviceState,
    bytes: number,
    peerAccount: number,
    onCancel: (() => void) | null,
  ): PendingEntry {
    const entry: PendingEntry = { seq: ++state.lastSeq, bytes, cancelled: false, onCancel };
    const depth = state.peerDepths?.get(peerAccount);
    if (depth !== undefined) {
      depth.rows++;
      depth.bytes += bytes;
    }
    if (state.pending === null) state.pending = [];
    state.pending.push(entry);
    state.queueRows++;
    state.queueBytes += bytes;
    batch.touched.add(state);
    return entry;
  }

  // ---- pushing to online devices -------------------------------------------------------------------------------

  /**
   * Pushes a fresh entry at once when it is next in line, within the stored reservation (so that it can never be
   * handed out again after a crash), and the window and socket have room. Otherwise the drain pushes it after its
   * commit. (Also used by group-fanout.ts.)
   */
  pushLive(state: DeviceState, seq: number, entry: LiveEntry): void {
    const session = state.session;
    if (session === null || state.reading || seq !== state.deliveredSeq + 1 || seq > state.reservedSeq) return;
    if (state.inFlightCount >= this.context.limits.deliveryWindowMessages || !this.context.io.canPush(session)) return;
    this.push(state, session, entry);
  }

  private push(state: DeviceState, session: Session, entry: LiveEntry): void {
    state.deliveredSeq = entry.seq;
    if (state.inFlight === null) state.inFlight = [];
    state.inFlight.push({
      seq: entry.seq,
      ...(entry.groupId === undefined ? {} : { groupId: entry.groupId }),
      senderAccount: entry.senderAccount,
      senderDevice: entry.senderDevice,
      clientId: entry.clientId,
      bytes: entry.bytes,
      peerAccount: entry.peerAccount,
    });
    this.context.io.send(session, frameForSession(session, entry.frame()));
  }

  /**
   * Moves the drain forward: reads committed entries past the cursor from the store while the window and the
   * socket have room; sends queueEmpty once everything assigned so far has been pushed.
   */
  pump(state: DeviceState): void {
    const session = state.session;
    if (session === null || session.state !== SessionState.ready || state.reading) return;
    const room = this.context.limits.deliveryWindowMessages - state.inFlightCount;
    if (state.deliveredSeq < state.committedSeq) {
      if (room > 0 && this.context.io.canPush(session)) void this.drain(state, session, room);
      return;
    }
    if (state.deliveredSeq >= state.lastSeq && !session.queueEmptySent) {
      session.queueEmptySent = true;
      this.context.io.send(session, { kind: "queueEmpty" });
    }
  }

  private async drain(state: DeviceState, session: Session, room: number): Promise<void> {
    const limit = Math.min(room, this.context.limits.drainBatchEntries);
    const committedAtRead = state.committedSeq;
    state.reading = true;
    let entries: QueueEntry[];
    try {
      entries = await this.context.storage.queues.read(state, state.deliveredSeq, limit);
    } catch (error) {
      state.reading = false;
      this.context.log.error("drain_read_failed", {
        account: state.account,
        device: state.device,
        error: String(error),
      });
      this.context.io.close(session, ErrorCode.internalError, "queue read failed");
      return;
    } finally {
      state.reading = false;
    }
    if (!sameSession(state.session, session) || session.state !== SessionState.ready) {
      this.devices.dropIfIdle(state);
      return;
    }
    let pushedAll = true;
    for (const entry of entries) {
      if (entry.seq <= state.deliveredSeq || entry.seq <= state.ackedSeq) continue;
      // The socket may fill up part way: what is not pushed now is read again when it drains.
      if (state.inFlightCount >= this.context.limits.deliveryWindowMessages || !this.context.io.canPush(session)) {
        pushedAll = false;
        break;
      }
      this.push(state, session, liveEntryOf(entry));
    }
    // A short read saw every committed row past the cursor: the rest up to the commit mark were acknowledged.
    if (pushedAll && entries.length < limit && state.deliveredSeq < committedAtRead)
      state.deliveredSeq = committedAtRead;
    this.pump(state);
    this.devices.releaseIfIdle(session);
  }

  // ---- acks and receipts ---------------------------------------------------------------------------------------

  /** A cumulative ack: everything up to `seq` (at most what was pushed in this session) is received. */
  async ack(session: Session, seq: number): Promise<void> {
    const state = session.deviceState;
    if (state === null) return;
    const upto = Math.min(seq, state.deliveredSeq);
    if (upto <= state.ackedSeq) return;

    // Delivered receipts go to every device of each sender: load those device lists and states first.
    const senders = new Map<number, Map<number, number[]>>(); // account -> sender device -> client ids
    // The same for 1:1 messages only: a group message's receipt is gathered with the other members' instead.
    const receiptSenders = new Map<number, Map<number, number[]>>();
    const groupDelivered: GroupDelivered[] = [];
    for (const entry of state.inFlight ?? []) {
      if (entry.seq > upto) break;
      if (entry.senderAccount === 0) continue;
      for (const map of entry.groupId === undefined ? [senders, receiptSenders] : [senders]) {
        const byDevice = map.get(entry.senderAccount) ?? new Map<number, number[]>();
        map.set(entry.senderAccount, byDevice);
        const clientIds = byDevice.get(entry.senderDevice) ?? [];
        byDevice.set(entry.senderDevice, clientIds);
        clientIds.push(entry.clientId);
      }
      if (entry.groupId !== undefined) {
        const { groupId, senderAccount, senderDevice, clientId } = entry;
        groupDelivered.push({ type: ReceiptType.delivered, groupId, senderAccount, senderDevice, clientId });
      }
    }
    const receiptTargets: Array<{ account: number; devices: readonly number[] }> = [];
    const routing = this.context.routing;
    for (const account of receiptSenders.keys()) {
      // Another worker owns that account's queues: its receipts go there (below).
      if (routing !== null && !routing.owns(account)) continue;
      const devices = await this.context.directory.load(account);
      if (devices !== undefined) receiptTargets.push({ account, devices });
    }
    const targetStates = new Map<number, DeviceState[]>();
    for (const target of receiptTargets) {
      const states = await this.devices.statesOf(target.account, target.devices);
      if (states !== undefined) targetStates.set(target.account, states);
    }
    // The reader's read-receipt windows for these senders: acked messages become readable (read-receipt-window.ts).
    const senderDevices: Array<{ account: number; device: number }> = [];
    for (const [account, byDevice] of senders)
      for (const device of byDevice.keys()) senderDevices.push({ account, device });
    await this.devices.loadReadWindows(state, senderDevices);
    if (session.deviceState !== state || !sameSession(state.session, session) || upto <= state.ackedSeq) return;
    if (this.devices.get(state.account, state.device) !== state) return;
    // A sender's state may have been released or dropped while we awaited others (its own session went idle in
    // between): its receipts are then queued once it is loaded again (queueReceipts), not dropped. Dropping them
    // lost 1-2 % of delivered receipts under load, most with workers, where a proxy's state is released after every
    // forwarded stanza (the throughput bench and server/workers.test.ts found it).
    const reloading = new Set<number>();
    for (const [account, states] of targetStates) {
      for (let index = 0; index < states.length; index++) {
        const current = this.devices.get(states[index]!.account, states[index]!.device);
        if (current === undefined) reloading.add(account);
        else states[index] = current;
      }
    }
    for (const account of reloading) targetStates.delete(account);
    // (An account whose states could not be loaded at all, busy, takes the same way.)
    for (const target of receiptTargets) if (!targetStates.has(target.account)) reloading.add(target.account);

    // Synchronous from here.
    const batch = this.commit.batch;
    const inFlight = state.inFlight ?? [];
    let acked = 0;
    while (acked < inFlight.length && inFlight[acked]!.seq <= upto) {
      const entry = inFlight[acked]!;
      // [queue totals hook] The ack deletes this entry from the store (unless cancelled below: never written).
      batch.ackedRows++;
      batch.ackedBytes += entry.bytes;
      // Never below 0: the retention sweep may have deleted (and uncounted) an entry still in the window.
      state.queueRows = Math.max(0, state.queueRows - 1);
      state.queueBytes = Math.max(0, state.queueBytes - entry.bytes);
      const depth = state.peerDepths?.get(entry.peerAccount);
      if (depth !== undefined) {
        depth.rows = Math.max(0, depth.rows - 1);
        depth.bytes = Math.max(0, depth.bytes - entry.bytes);
      }
      acked++;
    }
    inFlight.splice(0, acked);
    state.ackedSeq = upto;
    for (const entry of state.pending ?? []) {
      if (entry.seq > upto) break;
      if (entry.cancelled) continue;
      entry.cancelled = true;
      batch.ackedRows--; // [queue totals hook]
      batch.ackedBytes -= entry.bytes;
      this.context.metrics.entriesCancelled.inc();
      entry.onCancel?.();
    }
    batch.acks.set(state, upto);
    batch.rows++;
    for (const [account, byDevice] of senders) {
      for (const [device, clientIds] of byDevice) {
        const key = deviceKey(account, device);
        let window = state.readWindows?.get(key) ?? emptyReadWindow;
        for (const clientId of clientIds) window = markDelivered(window, clientId);
        state.readWindows ??= new Map();
        state.readWindows.set(key, window);
        batch.writeReadWindow(state, key, { account, device });
      }
    }
    const now = this.context.now();
    if (groupDelivered.length > 0) this.context.groups?.receipts.delivered(state.account, state.device, groupDelivered);
    for (const [account, byDevice] of receiptSenders) {
      if (reloading.has(account)) {
        for (const [senderDevice, clientIds] of byDevice) {
          const intent = { type: ReceiptType.delivered, fromAccount: state.account, fromDevice: state.device };
          void this.queueReceipts(account, { ...intent, senderDevice, clientIds, createdAtMs: now }).catch((error) =>
            this.context.log.error("receipt_failed", { account, error: String(error) }),
          );
        }
        continue;
      }
      if (routing !== null && !routing.owns(account)) {
        for (const [senderDevice, clientIds] of byDevice) {
          routing.receipt(account, {
            type: ReceiptType.delivered,
            fromAccount: state.account,
            fromDevice: state.device,
            senderDevice,
            clientIds,
            createdAtMs: now,
          });
        }
        continue;
      }
      const states = targetStates.get(account);
      if (states === undefined) continue;
      for (const [senderDevice, clientIds] of byDevice) {
        this.receiptToAll(batch, states, ReceiptType.delivered, state, senderDevice, clientIds, now);
      }
    }
    this.commit.schedule();
    this.pump(state);
  }

  /**
   * A read receipt from a reader for messages of `to`/`toDevice`. Only `read`: delivered receipts come from the
   * server when a device acks. Every client id must name a message delivered to this device from that sender
   * device (receiptUnknown otherwise, and nothing is queued); one already receipted, or older than the window, is
   * left out (read-receipt-window.ts).
   */
  async receipt(
    session: Session,
    stanza: {
      type: ReceiptTypeValue;
      to: number;
      toDevice: number;
      clientIds: readonly number[];
      groupId?: number | null;
    },
  ): Promise<void> {
    const refuse = (code: number, message: string) => {
      this.context.metrics.errors.incLabel(errorCodeName(code));
      this.context.io.send(session, { kind: "error", code, clientId: null, message });
    };
    if (stanza.type !== ReceiptType.read) {
      return refuse(ErrorCode.badRequest, "clients send read receipts only; delivered receipts come from the server");
    }
    const reader = session.deviceState ?? (await this.devices.stateOfSession(session));
    if (reader === undefined) return;
    const devices = await this.context.directory.load(stanza.to);
    if (devices === undefined) return refuse(ErrorCode.unknownAccount, `no account ${stanza.to}`);
    const sender = { account: stanza.to, device: stanza.toDevice };
    await this.devices.loadReadWindows(reader, [sender]);
    // The receipts go into the queues of `to`, which another worker may own (routing.ts): then it queues them. A group
    // message's receipt is gathered by the owner of `to` (group-receipts.ts), which loads the states when it queues.
    const routing = this.context.routing;
    const remote = routing !== null && !routing.owns(stanza.to);
    const groups = this.context.groups;
    const groupId = stanza.groupId ?? null;
    const gathered = groupId !== null && groups !== null;
    const loaded = remote || gathered ? [] : await this.devices.statesOf(stanza.to, devices);
    if (loaded === undefined || session.state !== SessionState.ready) return;
    // Taken again in this turn (DeviceStates.statesNow); if one went meanwhile, queueReceipts loads them again.
    const states =
      remote || gathered
        ? []
        : this.devices.statesNow(
            stanza.to,
            loaded.map((state) => state.device),
          );
    // (A state is never released while its session's handler runs, so `reader` is still the session's state.)
    if (session.deviceState !== reader) return;

    const key = deviceKey(sender.account, sender.device);
    let window = reader.readWindows?.get(key) ?? emptyReadWindow;
    const readable: number[] = [];
    for (const clientId of stanza.clientIds) {
      const status = readStatus(window, clientId);
      if (status === "notDelivered") {
        return refuse(
          ErrorCode.receiptUnknown,
          `client id ${clientId} of ${stanza.to}/${stanza.toDevice} was not delivered to this device`,
        );
      }
      if (status === "readable" && !readable.includes(clientId)) readable.push(clientId);
    }
    if (readable.length === 0) return;
    for (const clientId of readable) window = markRead(window, clientId);
    reader.readWindows ??= new Map();
    reader.readWindows.set(key, window);
    const batch = this.commit.batch;
    batch.writeReadWindow(reader, key, sender);
    if (gathered) {
      // Gathered with the other members' read receipts of the same message (group-receipts.ts). The client ids were
      // checked above as delivered to this reader from that sender device; the group id is the reader's word (it only
      // labels the sender's receipt, as the client ids do).
      groups.receipts.delivered(
        reader.account,
        reader.device,
        readable.map((clientId) => ({
          type: ReceiptType.read,
          groupId,
          senderAccount: stanza.to,
          senderDevice: stanza.toDevice,
          clientId,
        })),
      );
    } else if (states === undefined) {
      const intent = { type: stanza.type, fromAccount: reader.account, fromDevice: reader.device };
      void this.queueReceipts(stanza.to, {
        ...intent,
        senderDevice: stanza.toDevice,
        clientIds: readable,
        createdAtMs: this.context.now(),
      }).catch((error) => this.context.log.error("receipt_failed", { account: stanza.to, error: String(error) }));
    } else if (remote) {
      routing!.receipt(stanza.to, {
        type: stanza.type,
        fromAccount: reader.account,
        fromDevice: reader.device,
        senderDevice: stanza.toDevice,
        clientIds: readable,
        createdAtMs: this.context.now(),
      });
    } else {
      this.receiptToAll(batch, states, stanza.type, reader, stanza.toDevice, readable, this.context.now());
    }
    this.commit.schedule();
  }

  /** Receipts produced on another worker for the devices of `account`, which this worker owns (routing.ts). */
  async queueReceipts(account: number, intent: ReceiptIntent): Promise<void> {
    const devices = await this.context.directory.load(account);
    if (devices === undefined) return;
    let states: DeviceState[] | undefined;
    for (let attempt = 0; attempt < stateTakeAttemptsMax && states === undefined; attempt++) {
      const loaded = await this.devices.statesOf(account, devices);
      if (loaded === undefined) continue;
      // Taken again in this turn (see DeviceStates.statesNow).
      states = this.devices.statesNow(
        account,
        loaded.map((state) => state.device),
      );
    }
    if (states === undefined) {
      this.context.log.warn("receipt_dropped", { account, reason: "busy" });
      return;
    }
    const from = { account: intent.fromAccount, device: intent.fromDevice };
    const batch = this.commit.batch;
    this.receiptToAll(batch, states, intent.type, from, intent.senderDevice, intent.clientIds, intent.createdAtMs);
    this.commit.schedule();
  }

  /** Sender high-water marks (welcome's lastClientId) of devices this worker owns, from another worker's commit. */
  noteClientIdMarks(entries: QueueBatch["clientIds"]): void {
    this.commit.batch.clientIdMarks.push(...entries);
    this.commit.schedule();
  }

  /** Queues one receipt entry on each of `states`, skipping devices whose queue is full (receipts are not acked). */
  private receiptToAll(
    batch: OpenBatch,
    states: readonly DeviceState[],
    type: number,
    from: { readonly account: number; readonly device: number },
    senderDevice: number,
    clientIds: readonly number[],
    createdAtMs: number,
  ): void {
    const { limits } = this.context;
    // An identity-change event (keys-identity-event.ts) names no client id: one entry with none.
    for (let start = 0; start < Math.max(clientIds.length, 1); start += limits.receiptClientIdsMax) {
      const chunk = clientIds.slice(start, start + limits.receiptClientIdsMax);
      const bytes = chunk.length * clientIdBytes;
      for (const state of states) {
        // The device that produced the receipt never needs it (a message between two devices of one account).
        if (
          (state.account === from.account && state.device === from.device) ||
          state.removed ||
          state.queueRows + 1 > limits.queueMessagesMax ||
          state.queueBytes + bytes > limits.queueBytesMax
        ) {
          continue;
        }
        const entry = this.enqueue(batch, state, bytes, from.account, null);
        batch.receipts.push({
          state,
          entry,
          receiptType: type,
          peerAccount: from.account,
          peerDevice: from.device,
          senderDevice,
          clientIds: chunk,
          createdAtMs,
        });
        batch.rows++;
        this.pushLive(state, entry.seq, {
          seq: entry.seq,
          senderAccount: 0,
          senderDevice: 0,
          clientId: 0,
          bytes,
          peerAccount: from.account,
          frame: () => receiptRowFrame(entry.seq, type, from.account, from.device, senderDevice, chunk, createdAtMs),
        });
      }
    }
  }

  // ---- devices -------------------------------------------------------------------------------------------------

  /** Stops queueing for a removed device and drops its state; the caller removes it from the store afterwards. */
  async forgetDevice(account: number, device: number): Promise<void> {
    this.devices.forgetPeerDepths(account, device);
    const state = this.devices.get(account, device);
    if (state !== undefined) {
      state.removed = true;
      for (const entry of state.pending ?? []) entry.cancelled = true;
      if (state.session !== null) this.detach(state.session);
      this.devices.delete(state);
    }
    // Rows of this device already handed to the store commit before its removal does.
    await this.commit.flush();
    // [queue totals hook] The removal deletes the device's queue outside the commit path: read the totals again.
    this.context.metrics.queueTotals.markStale();
  }

  // ---- commits -------------------------------------------------------------------------------------------------

  private committed(batch: OpenBatch, stats: CommitStats): void {
    const { metrics } = this.context;
    metrics.queueTotals.add(stats.queueRowsDelta, stats.queueBytesDelta); // [queue totals hook]
    metrics.commitRows.observe(stats.rows);
    metrics.commitSeconds.observe(stats.durationMs / 1000);
    for (const [state, marks] of batch.marks) {
      if (marks.lastSeq > state.committedSeq) state.committedSeq = marks.lastSeq;
      if (marks.reservedSeq > state.reservedSeq) state.reservedSeq = marks.reservedSeq;
    }
    // Batches commit one at a time, in order: each one's captured marks are the newest the store has.
    for (const [pair, marks] of batch.pairMarks) {
      pair.committed = marks;
      pair.writes--;
    }
    for (const reader of batch.readWindows.keys()) {
      reader.readWindowWrites--;
      batch.touched.add(reader);
    }
    // Acknowledged rows are gone from the store now: a state may be dropped or released again (see ackUncommitted).
    for (const [state, uptoSeq] of batch.acks) {
      if (uptoSeq > state.committedAckSeq) state.committedAckSeq = uptoSeq;
      batch.touched.add(state);
    }
    for (const message of batch.messages) {
      this.serverAck(message);
      this.forgetUnacked(message);
    }
    for (const callback of batch.afterCommit) callback();
    this.pairs.settled();
    this.settleTouched([...batch.touched], 0);
  }

  /**
   * After a commit: drains what each touched online device now may get, and lets idle states go. A drain reads the
   * store, synchronously for SQLite, so a batch that touched thousands of devices (a send to a large group) is
   * settled commitSettleStatesPerTurn devices per event-loop turn, not all in one.
   */
  private settleTouched(states: readonly DeviceState[], from: number): void {
    let end = Math.min(states.length, from + commitSettleStatesPerTurn);
    for (let index = from; index < end; index++) {
      // The turn's shared budget spent (by sessions or other slices): the rest waits for the next turn.
      if (this.turn.spent()) {
        end = index;
        break;
      }
      const state = states[index]!;
      const session = state.session;
      if (session === null) this.devices.dropIfIdle(state);
      else {
        this.pump(state);
        this.devices.releaseIfIdle(session);
      }
    }
    if (end < states.length) setImmediate(() => this.settleTouched(states, end));
  }

  private commitFailed(error: unknown): void {
    // Nothing of the failed batch was acknowledged to a sender, but memory and store now disagree on sequences.
    // Crash loudly: the supervisor restarts the process, which reloads the truth from the store.
    this.context.log.error("commit_failed", { error: String(error) });
    process.exit(70);
  }
}

/** What is needed to push one queue entry and to remember it in the window. */
export interface LiveEntry extends InFlightEntry {
  frame(): Stanza;
}

function liveEntryOf(entry: QueueEntry): LiveEntry {
  if (entry.kind === "message" && entry.groupId !== undefined) {
    return groupMessageLiveEntry(
      entry.seq,
      entry.groupId,
      entry.senderAccount,
      entry.senderDevice,
      entry.clientId,
      entry.createdAtMs,
      entry.payload,
      entry.part ?? null,
    );
  }
  if (entry.kind === "groupReceipt") {
    return groupReceiptLiveEntry(entry.seq, entry);
  }
  if (entry.kind === "groupEvent") {
    return groupEventLiveEntry(entry.seq, {
      groupId: entry.groupId,
      version: entry.version,
      op: entry.op,
      actorAccount: entry.peerAccount,
      actorDevice: entry.peerDevice,
      accounts: entry.accounts,
      name: entry.name,
      createdAtMs: entry.createdAtMs,
    });
  }
  if (entry.kind === "message") {
    return {
      seq: entry.seq,
      senderAccount: entry.senderAccount,
      senderDevice: entry.senderDevice,
      clientId: entry.clientId,
      bytes: entry.payload.length,
      peerAccount: entry.senderAccount,
      frame: () => ({
        kind: "deliver",
        seq: entry.seq,
        from: entry.senderAccount,
        fromDevice: entry.senderDevice,
        clientId: entry.clientId,
        timeSeconds: Math.floor(entry.createdAtMs / 1000),
        payload: entry.payload,
      }),
    };
  }
  return {
    seq: entry.seq,
    senderAccount: 0,
    senderDevice: 0,
    clientId: 0,
    bytes: entry.clientIds.length * clientIdBytes,
    peerAccount: entry.peerAccount,
    frame: () =>
      receiptRowFrame(
        entry.seq,
        entry.receiptType,
        entry.peerAccount,
        entry.peerDevice,
        entry.senderDevice,
        entry.clientIds,
        entry.createdAtMs,
      ),
  };
}
