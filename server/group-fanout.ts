// The member side of a group send or membership change (PROTOCOL.md section 18): the worker that owns some member
// accounts' partitions is handed, by the group's owner (group-owner.ts, over the mesh when it is another worker),
// the devices of those accounts, and queues one entry for each: a group message (the shared payload, stored once
// per partition, and the device's own part) or a membership event. It answers once every entry it queued is durable
// (committed, or acknowledged by its device first), or with the code of a refusal (a full queue) before it queued
// anything.
//
// Order: work is taken one item at a time, in the order it arrives (one chain per worker), and a group's owner hands
// out a group's items in the order it decided them, over one mesh link that keeps order: so every device of a
// member gets a group's events and messages in the owner's order.
//
// Retries: a resent send or change (same actor device and client id, after a worker died before the actor's ack) is
// recognised per partition by the same client-id windows as a 1:1 send (client-id-pairs.ts): the rows of one item in
// one partition commit in one transaction, so the window of the partition's lowest member account tells whether all
// of them are there; a partition that has it gets nothing twice, and the answer waits for the commit that holds it.
// (One window per partition rather than per member: a 1,024-member send writes 64 window rows, not 1,023.) A resend
// after a membership change that removed that lowest member is recognised by the next one's window, which never saw
// the item: its partition would store it again. The SDK drops such a duplicate (same sender device and client id).

import { ErrorCode, type GroupPart } from "../protocol/index.ts";
import { groupFanoutDevicesPerTurn, groupFanoutOpenRowsMax } from "../protocol/limits.ts";
import type { ClientIdPair } from "./client-id-pairs.ts";
import { clientIdStatus, markStored } from "./client-id-window.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery, LiveEntry } from "./delivery.ts";
import type { DeviceState } from "./device-state.ts";
import type { PendingMessage, PendingRecipient } from "./group-commit.ts";
import { type GroupEventFields, groupEventLiveEntry, groupMessageLiveEntry } from "./group-entries.ts";
import { nextTurn } from "./next-turn.ts";
import type { Session } from "./session.ts";

/** The devices of one member account that get an entry (the sending device is never among them). */
export interface FanoutTarget {
  readonly account: number;
  readonly devices: readonly number[];
}

export interface GroupMessageWork {
  readonly kind: "message";
  readonly groupId: number;
  readonly senderAccount: number;
  readonly senderDevice: number;
  readonly clientId: number;
  readonly createdAtMs: number;
  readonly payload: Uint8Array;
  readonly targets: readonly FanoutTarget[];
  /** The parts for devices among the targets. */
  readonly parts: readonly GroupPart[];
}

export interface GroupEventWork {
  readonly kind: "event";
  /** The actor's client id of the change (its retries are recognised by it). */
  readonly clientId: number;
  readonly event: GroupEventFields;
  readonly targets: readonly FanoutTarget[];
}

export type FanoutWork = GroupMessageWork | GroupEventWork;

/** 0: durable; otherwise the error code of a refusal (nothing of this work was queued). */
export interface FanoutResult {
  readonly code: number;
  readonly message: string | null;
}

/** Attempts to take every target's states in one turn before the work is refused as busy (as Delivery.send). */
const stateTakeAttemptsMax = 4;

export class GroupFanout {
  private chain: Promise<void> = Promise.resolve();
  /** Work items taken and not yet durable (a gauge for metrics and tests). */
  pending = 0;

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
    /** The partition of an account (server/partitions.ts); one for a store without partitions. */
    private readonly partitionOf: (account: number) => number,
  ) {}

  /** Queues the work after every item submitted before it; resolves once it is durable or refused. */
  submit(work: FanoutWork): Promise<FanoutResult> {
    this.pending++;
    return new Promise<FanoutResult>((resolve) => {
      const done = (result: FanoutResult) => {
        this.pending--;
        resolve(result);
      };
      // One item per turn at most: a burst of large-group sends leaves the loop to other sessions in between.
      this.chain = this.chain
        .then(() => nextTurn())
        .then(() => this.take(work, done))
        .catch((error: unknown) => {
          this.context.log.error("group_fanout_failed", { group: groupOf(work), error: String(error) });
          done({ code: ErrorCode.internalError, message: "group fan-out failed" });
        });
    });
  }

  private async take(work: FanoutWork, done: (result: FanoutResult) => void): Promise<void> {
    // The states loaded over several turns are held until the entries are queued (or the work refused).
    const releases: Array<() => void> = [];
    try {
      await this.takeHeld(work, done, releases);
    } finally {
      for (const release of releases) release();
    }
  }

  private async takeHeld(
    work: FanoutWork,
    done: (result: FanoutResult) => void,
    releases: Array<() => void>,
  ): Promise<void> {
    const { delivery } = this;
    const actor =
      work.kind === "message"
        ? { account: work.senderAccount, device: work.senderDevice }
        : { account: work.event.actorAccount, device: work.event.actorDevice };

    // Which partitions still need it (a resend finds those that have it already), and the member devices' states,
    // taken again in the turn of the change (as Delivery.send does); loaded once more if one went meanwhile.
    // A partition's rows of one item commit in one transaction, so one client-id window per partition says whether
    // the item is there: the window of the partition's lowest member account here (its pair with the actor device).
    const shares = this.byPartition(work.targets);
    let pairs: ClientIdPair[] = [];
    let states: DeviceState[][] | undefined;
    for (let attempt = 0; attempt < stateTakeAttemptsMax && states === undefined; attempt++) {
      const loadedPairs: ClientIdPair[] = [];
      for (let index = 0; index < shares.length; index++) {
        const share = shares[index]!;
        loadedPairs.push(await delivery.pairs.load(share.representative, actor.account, actor.device));
        // A store that answers at once resolves in the same turn: give the loop to others between slices.
        if ((index + 1) % groupFanoutDevicesPerTurn === 0) await nextTurn();
      }
      // Room in the open batch first (GroupCommit.room): a burst's sends go into successive commits of bounded size.
      await delivery.commit.room(groupFanoutOpenRowsMax);
      const existing = await this.loadStates(work.targets, releases);
      if (existing === undefined) break;
      // Synchronous from here to the end of takeHeld().
      states = this.statesNow(work.targets, existing);
      pairs = loadedPairs.map((pair) => delivery.pairs.current(pair));
    }
    if (states === undefined) return done({ code: ErrorCode.busy, message: "server busy; retry" });
    const fresh: Array<{ states: DeviceState[] }> = [];
    const freshPairs: ClientIdPair[] = [];
    for (let index = 0; index < shares.length; index++) {
      // An id older than the window was stored or refused long ago: never stored a second time.
      if (clientIdStatus(pairs[index]!.marks, work.clientId) !== "new") continue;
      freshPairs.push(pairs[index]!);
      for (const target of shares[index]!.targets) fresh.push({ states: states[target]! });
    }
    // (A part adds a little to one device's bytes; the quota's byte limit is far above a payload.)
    const bytes = work.kind === "message" ? work.payload.byteLength : 0;
    const { limits } = this.context;
    for (const target of fresh) {
      for (const state of target.states) {
        if (state.queueRows + 1 > limits.queueMessagesMax || state.queueBytes + bytes > limits.queueBytesMax) {
          return done({
            code: ErrorCode.queueFull,
            message: `queue of device ${state.account}/${state.device} is full`,
          });
        }
      }
    }
    const batch = delivery.commit.batch;
    if (fresh.length === 0) {
      // Every account has it already: answer once what holds it is durable.
      batch.afterCommit.push(() => done({ code: 0, message: null }));
      delivery.commit.schedule();
      return;
    }
    for (const pair of freshPairs) {
      pair.marks = markStored(pair.marks, work.clientId);
      if (!batch.pairs.has(pair)) {
        batch.pairs.add(pair);
        pair.writes++;
      }
    }
    const pushes: Array<{ state: DeviceState; seq: number; entry: LiveEntry }> = [];
    if (work.kind === "message") this.queueMessage(work, fresh, pushes, done);
    else this.queueEvent(work, fresh, pushes, done);
    delivery.commit.schedule();
    // The pushes start in the next turn: this one queued up to 1,023 entries already.
    setImmediate(() => this.pushInSteps(pushes, 0));
  }

  private queueMessage(
    work: GroupMessageWork,
    fresh: ReadonlyArray<{ states: DeviceState[] }>,
    pushes: Array<{ state: DeviceState; seq: number; entry: LiveEntry }>,
    done: (result: FanoutResult) => void,
  ): void {
    const { delivery } = this;
    const batch = delivery.commit.batch;
    const parts = new Map<string, Uint8Array>();
    for (const part of work.parts) parts.set(`${part.account}/${part.device}`, part.part);
    let live = 0;
    for (const target of fresh) live += target.states.length;
    const message: PendingMessage = {
      // Not a session: the group's owner answers the sender (onDurable).
      sender: null as unknown as Session,
      senderAccount: work.senderAccount,
      senderDevice: work.senderDevice,
      clientId: work.clientId,
      createdAtMs: work.createdAtMs,
      recipients: [],
      liveRecipients: live,
      serverAcked: false,
      pair: null,
      resentBy: null,
      groupId: work.groupId,
      onDurable: () => done({ code: 0, message: null }),
    };
    const onCancel = () => {
      message.liveRecipients--;
      if (message.liveRecipients === 0) delivery.groupDurable(message);
    };
    for (const target of fresh) {
      for (const state of target.states) {
        const part = parts.get(`${state.account}/${state.device}`) ?? null;
        const entry = delivery.enqueue(
          batch,
          state,
          work.payload.byteLength + (part?.byteLength ?? 0),
          work.senderAccount,
          onCancel,
        );
        const recipient: PendingRecipient = { state, entry, payload: work.payload, part };
        message.recipients.push(recipient);
        pushes.push({
          state,
          seq: entry.seq,
          entry: groupMessageLiveEntry(
            entry.seq,
            work.groupId,
            work.senderAccount,
            work.senderDevice,
            work.clientId,
            work.createdAtMs,
            work.payload,
            part,
          ),
        });
      }
    }
    batch.messages.push(message);
    batch.rows += message.recipients.length;
    this.context.metrics.messagesAccepted.inc();
  }

  private queueEvent(
    work: GroupEventWork,
    fresh: ReadonlyArray<{ states: DeviceState[] }>,
    pushes: Array<{ state: DeviceState; seq: number; entry: LiveEntry }>,
    done: (result: FanoutResult) => void,
  ): void {
    const batch = this.delivery.commit.batch;
    const { event } = work;
    for (const target of fresh) {
      for (const state of target.states) {
        const live = groupEventLiveEntry(0, event);
        const entry = this.delivery.enqueue(batch, state, live.bytes, event.actorAccount, null);
        batch.groupEvents.push({
          state,
          entry,
          groupId: event.groupId,
          version: event.version,
          op: event.op,
          actorAccount: event.actorAccount,
          actorDevice: event.actorDevice,
          accounts: event.accounts,
          name: event.name,
          createdAtMs: event.createdAtMs,
        });
        batch.rows++;
        pushes.push({ state, seq: entry.seq, entry: groupEventLiveEntry(entry.seq, event) });
      }
    }
    batch.afterCommit.push(() => done({ code: 0, message: null }));
  }

  /**
   * Pushes the fresh entries to online devices, groupFanoutDevicesPerTurn per event-loop turn, so a send to a large
   * group never holds the loop for long. An entry not pushed now (its device's window moved meanwhile) is drained
   * after its commit as any other.
   */
  private pushInSteps(
    pushes: ReadonlyArray<{ state: DeviceState; seq: number; entry: LiveEntry }>,
    from: number,
  ): void {
    let end = Math.min(pushes.length, from + groupFanoutDevicesPerTurn);
    for (let index = from; index < end; index++) {
      // The turn's shared budget spent: the rest waits for the next turn.
      if (this.delivery.turn.spent()) {
        end = index;
        break;
      }
      const push = pushes[index]!;
      if (!push.state.removed) this.delivery.pushLive(push.state, push.seq, push.entry);
    }
    if (end < pushes.length) setImmediate(() => this.pushInSteps(pushes, end));
  }

  /** The targets by partition (indexes into `targets`), each with its lowest member account (the window's holder). */
  private byPartition(targets: readonly FanoutTarget[]): Array<{ representative: number; targets: number[] }> {
    const shares = new Map<number, { representative: number; targets: number[] }>();
    for (let index = 0; index < targets.length; index++) {
      const account = targets[index]!.account;
      const partition = this.partitionOf(account);
      const share = shares.get(partition);
      if (share === undefined) shares.set(partition, { representative: account, targets: [index] });
      else {
        share.targets.push(index);
        if (account < share.representative) share.representative = account;
      }
    }
    return [...shares.values()];
  }

  /**
   * Loads the states of every target's devices: the devices that exist, by target; undefined when busy. A slice of
   * groupFanoutDevicesPerTurn accounts per turn (a state not in memory is a store read each); every state loaded is
   * held (DeviceStates.hold, released through `releases` by the caller) so that none is dropped before the turn that
   * takes them all.
   */
  private async loadStates(
    targets: readonly FanoutTarget[],
    releases: Array<() => void>,
  ): Promise<number[][] | undefined> {
    const { devices } = this.delivery;
    const existing: number[][] = [];
    for (let index = 0; index < targets.length; index++) {
      if (index > 0 && (index % groupFanoutDevicesPerTurn === 0 || this.delivery.turn.spent())) await nextTurn();
      const target = targets[index]!;
      const states = await devices.statesOf(target.account, target.devices);
      if (states === undefined) return undefined;
      releases.push(devices.hold(states));
      // Devices that no longer exist were left out: only these are taken from here on.
      existing.push(states.map((state) => state.device));
    }
    return existing;
  }

  private statesNow(targets: readonly FanoutTarget[], existing: readonly number[][]): DeviceState[][] | undefined {
    const all: DeviceState[][] = [];
    for (let index = 0; index < targets.length; index++) {
      const states = this.delivery.devices.statesNow(targets[index]!.account, existing[index]!);
      if (states === undefined) return undefined;
      all.push(states);
    }
    return all;
  }
}

function groupOf(work: FanoutWork): number {
  return work.kind === "message" ? work.groupId : work.event.groupId;
}
