// The owner of a group (PROTOCOL.md section 18): the worker that owns the partition a group's id hashes to decides,
// one at a time and in order, everything about that group: membership changes (stored in the group's partition with
// their log entry) and sends (checked against the members' current devices). It then hands each decision to the
// workers that own the members' partitions (group-fanout.ts; itself for its own), which queue an entry for every
// member device, and answers the actor (serverAck, groupInfo) once every worker's part is durable.
//
// A group's stanzas run in the group's own chain, so a change and a send never interleave, and the hand-offs leave
// in the chain's order over links that keep order: every member device gets a group's events and messages in the
// order the owner decided them. A part lost with a worker that died closes the actor's session with a goaway (as a
// send to a dead owner does, routing-mesh.ts): the client reconnects and resends, and the retry is recognised per
// member account (group-fanout.ts) and per change (the group's log, groupChangesKept), so no device gets one twice.

import { createHash } from "node:crypto";
import {
  ErrorCode,
  errorCodeName,
  type GroupCreateStanza,
  type GroupDevice,
  GroupOp,
  type GroupSendStanza,
  type GroupUpdateStanza,
  groupDevicesHashBytes,
  groupMembersMax,
  packDevices,
  sortDevices,
} from "../protocol/index.ts";
import {
  groupChangesKept,
  groupFanoutDevicesPerTurn,
  groupSendsPendingMax,
  groupsCachedMax,
  ownerGoneRetryAfterMsMax,
} from "../protocol/limits.ts";
import type { GroupChange, GroupDelta, GroupRecord } from "../storage/index.ts";
import type { ServerContext } from "./context.ts";
import type { FanoutResult, FanoutTarget, FanoutWork, GroupFanout } from "./group-fanout.ts";
import { nextTurn } from "./next-turn.ts";
import { type Session, SessionState } from "./session.ts";

/** Hands a fan-out to the worker that owns `account`'s partition; "lost" when that worker died before answering. */
export interface GroupDispatch {
  /** The worker index that owns an account's partition (0 with one process). */
  ownerOf(account: number): number;
  readonly self: number;
  send(worker: number, work: FanoutWork): Promise<FanoutResult | "lost">;
}

/** A group as its owner holds it: the stored record, and its chain of decisions. */
interface GroupEntry {
  record: GroupRecord;
  admins: Set<number>;
  members: Set<number>;
  /** Decisions handed out and not yet durable everywhere (bounded by groupSendsPendingMax). */
  pending: number;
}

/** A group id from the creator's device and client id: a resent create names the same group. */
export function groupIdOf(account: number, device: number, clientId: number, salt = 0): number {
  const digest = createHash("sha256");
  const fields = new DataView(new ArrayBuffer(16));
  fields.setUint32(0, account);
  fields.setUint32(4, device);
  fields.setUint32(8, clientId);
  fields.setUint32(12, salt);
  digest.update(new Uint8Array(fields.buffer));
  const id = new DataView(digest.digest().buffer).getUint32(0);
  return id === 0 ? 1 : id;
}

/** The first groupDevicesHashBytes of SHA-256 over the packed, sorted device list (PROTOCOL.md section 18). */
export function groupDevicesHash(devices: readonly GroupDevice[]): Uint8Array {
  const packed = packDevices(sortDevices(devices));
  return new Uint8Array(createHash("sha256").update(packed).digest()).subarray(0, groupDevicesHashBytes);
}

export class GroupOwner {
  private readonly groups = new Map<number, GroupEntry>();
  /** Each group's chain of stanzas (only while one runs or waits). */
  private readonly chains = new Map<number, Promise<void>>();

  constructor(
    private readonly context: ServerContext,
    private readonly fanout: GroupFanout,
    private readonly dispatch: GroupDispatch,
  ) {}

  /** Runs `work` after every earlier stanza of the group (the group's order). */
  private inOrder(groupId: number, work: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(groupId) ?? Promise.resolve();
    const next = previous.then(work).catch((error: unknown) => {
      this.context.log.error("group_handler_failed", { group: groupId, error: String(error) });
    });
    this.chains.set(groupId, next);
    // A chain that ran dry is dropped: the map holds only groups with stanzas waiting.
    void next.then(() => {
      if (this.chains.get(groupId) === next) this.chains.delete(groupId);
    });
    return next;
  }

  private async entry(groupId: number): Promise<GroupEntry | undefined> {
    const cached = this.groups.get(groupId);
    if (cached !== undefined) {
      this.groups.delete(groupId);
      this.groups.set(groupId, cached);
      return cached;
    }
    const record = await this.context.storage.groups.get(groupId);
    if (record === undefined) return undefined;
    return this.remember(record);
  }

  private remember(record: GroupRecord): GroupEntry {
    const entry: GroupEntry = {
      record,
      admins: new Set(record.members.filter((member) => member.admin).map((member) => member.account)),
      members: new Set(record.members.map((member) => member.account)),
      pending: 0,
    };
    this.groups.set(record.id, entry);
    // Bounded: the least recently used group with nothing in flight goes (it is read again on need).
    if (this.groups.size > groupsCachedMax) {
      for (const [id, old] of this.groups) {
        if (old.pending === 0 && id !== record.id) {
          this.groups.delete(id);
          break;
        }
      }
    }
    return entry;
  }

  // ---- stanzas ---------------------------------------------------------------------------------------------------

  create(session: Session, stanza: GroupCreateStanza & { groupId: number }): Promise<void> {
    return this.inOrder(stanza.groupId, () => this.createNow(session, stanza));
  }

  update(session: Session, stanza: GroupUpdateStanza): Promise<void> {
    return this.inOrder(stanza.groupId, () => this.updateNow(session, stanza));
  }

  fetch(session: Session, clientId: number, groupId: number): Promise<void> {
    return this.inOrder(groupId, async () => {
      const entry = await this.entry(groupId);
      if (entry === undefined) return this.refuse(session, clientId, ErrorCode.unknownGroup, `no group ${groupId}`);
      if (!entry.members.has(session.account)) {
        return this.refuse(session, clientId, ErrorCode.notGroupMember, "not a member of this group");
      }
      await this.answerInfo(session, clientId, entry);
    });
  }

  send(session: Session, stanza: GroupSendStanza): Promise<void> {
    return this.inOrder(stanza.groupId, () => this.sendNow(session, stanza));
  }

  private async createNow(session: Session, stanza: GroupCreateStanza & { groupId: number }): Promise<void> {
    const { clientId, groupId } = stanza;
    const existing = await this.entry(groupId);
    if (existing !== undefined) {
      // A resend of this very create (the group's log has it): queue its event again where missing, answer.
      const logged = await this.context.storage.groups.changeBy(groupId, session.account, session.device, clientId);
      if (logged === undefined || logged.op !== GroupOp.create) {
        return this.refuse(
          session,
          clientId,
          ErrorCode.clientIdReused,
          "group id taken; create it with a new client id",
        );
      }
      return this.handOut(session, existing, logged, () => this.answerInfo(session, clientId, existing));
    }
    const members = [...new Set([session.account, ...stanza.members])].sort((a, b) => a - b);
    if (members.length > groupMembersMax) {
      return this.refuse(session, clientId, ErrorCode.groupFull, `a group has at most ${groupMembersMax} members`);
    }
    for (const account of members) {
      if ((await this.context.directory.load(account)) === undefined) {
        return this.refuse(session, clientId, ErrorCode.unknownAccount, `no account ${account}`);
      }
    }
    if (session.state !== SessionState.ready) return;
    const now = this.context.now();
    const record: GroupRecord = {
      id: groupId,
      name: stanza.name.slice(),
      version: 1,
      members: members.map((account) => ({ account, admin: account === session.account })),
    };
    const change: GroupChange = {
      groupId,
      version: 1,
      op: GroupOp.create,
      actorAccount: session.account,
      actorDevice: session.device,
      clientId,
      accounts: members,
      recipients: members,
      name: record.name,
      createdAtMs: now,
    };
    if (!(await this.context.storage.groups.create(record, change))) {
      return this.refuse(session, clientId, ErrorCode.clientIdReused, "group id taken; create it with a new client id");
    }
    const entry = this.remember(record);
    this.context.log.info("group_created", { group: groupId, members: members.length });
    return this.handOut(session, entry, change, () => this.answerInfo(session, clientId, entry));
  }

  private async updateNow(session: Session, stanza: GroupUpdateStanza): Promise<void> {
    const { clientId, groupId, op } = stanza;
    const entry = await this.entry(groupId);
    if (entry === undefined) return this.refuse(session, clientId, ErrorCode.unknownGroup, `no group ${groupId}`);
    const logged = await this.context.storage.groups.changeBy(groupId, session.account, session.device, clientId);
    if (logged !== undefined)
      return this.handOut(session, entry, logged, () => this.answerInfo(session, clientId, entry));
    if (!entry.members.has(session.account)) {
      return this.refuse(session, clientId, ErrorCode.notGroupMember, "not a member of this group");
    }
    const adminOnly = op === GroupOp.add || op === GroupOp.remove || op === GroupOp.promote || op === GroupOp.demote;
    if (adminOnly && !entry.admins.has(session.account)) {
      return this.refuse(session, clientId, ErrorCode.notGroupAdmin, "only an admin may do this");
    }
    const accounts = [...new Set(stanza.accounts)];
    const delta: GroupDelta = { upsert: [], remove: [], name: null };
    switch (op) {
      case GroupOp.add: {
        const added = accounts.filter((account) => !entry.members.has(account));
        if (added.length === 0) return this.refuse(session, clientId, ErrorCode.badRequest, "already members");
        if (entry.members.size + added.length > groupMembersMax) {
          return this.refuse(session, clientId, ErrorCode.groupFull, `a group has at most ${groupMembersMax} members`);
        }
        for (const account of added) {
          if ((await this.context.directory.load(account)) === undefined) {
            return this.refuse(session, clientId, ErrorCode.unknownAccount, `no account ${account}`);
          }
          delta.upsert.push({ account, admin: false });
        }
        break;
      }
      case GroupOp.remove:
      case GroupOp.promote:
      case GroupOp.demote: {
        const stranger = accounts.find((account) => !entry.members.has(account));
        if (stranger !== undefined) {
          return this.refuse(session, clientId, ErrorCode.badRequest, `${stranger} is not a member`);
        }
        if (op === GroupOp.remove) delta.remove.push(...accounts);
        else for (const account of accounts) delta.upsert.push({ account, admin: op === GroupOp.promote });
        break;
      }
      case GroupOp.leave:
        // A group keeps an admin while it has members: the last admin promotes someone first.
        if (entry.admins.size === 1 && entry.admins.has(session.account) && entry.members.size > 1) {
          return this.refuse(session, clientId, ErrorCode.notAllowed, "the last admin must promote a member first");
        }
        delta.remove.push(session.account);
        break;
      case GroupOp.rename:
        delta.name = stanza.name!.slice();
        break;
      default:
        return this.refuse(session, clientId, ErrorCode.badRequest, "not a change");
    }
    if (session.state !== SessionState.ready) return;
    // Recipients: the members after the change, and those it removed (they learn they are out).
    const after = new Set(entry.members);
    for (const account of delta.remove) after.delete(account);
    for (const member of delta.upsert) after.add(member.account);
    const recipients = [...new Set([...after, ...delta.remove])];
    const change: GroupChange = {
      groupId,
      version: entry.record.version + 1,
      op,
      actorAccount: session.account,
      actorDevice: session.device,
      clientId,
      accounts: op === GroupOp.leave ? [session.account] : op === GroupOp.rename ? [] : accounts,
      recipients,
      name: delta.name,
      createdAtMs: this.context.now(),
    };
    await this.context.storage.groups.apply(change, delta, groupChangesKept);
    // The store has it: the owner's view follows (nothing awaited between here and the hand-out).
    const record = entry.record;
    const admins = new Map(record.members.map((member) => [member.account, member.admin]));
    for (const account of delta.remove) admins.delete(account);
    for (const member of delta.upsert) admins.set(member.account, member.admin);
    record.members = [...admins].map(([account, admin]) => ({ account, admin })).sort((a, b) => a.account - b.account);
    record.version = change.version;
    if (delta.name !== null) record.name = delta.name;
    entry.members = new Set(admins.keys());
    entry.admins = new Set(record.members.filter((member) => member.admin).map((member) => member.account));
    return this.handOut(session, entry, change, () => this.answerInfo(session, clientId, entry));
  }

  private async sendNow(session: Session, stanza: GroupSendStanza): Promise<void> {
    const { clientId, groupId } = stanza;
    const { limits } = this.context;
    const entry = await this.entry(groupId);
    if (entry === undefined) return this.refuse(session, clientId, ErrorCode.unknownGroup, `no group ${groupId}`);
    // Only members send (a removed member's messages queued before its removal stay deliverable).
    if (!entry.members.has(session.account)) {
      return this.refuse(session, clientId, ErrorCode.notGroupMember, "not a member of this group");
    }
    if (
      stanza.payload.byteLength > limits.payloadBytesMax ||
      stanza.parts.some((part) => part.part.byteLength > limits.payloadBytesMax)
    ) {
      return this.refuse(session, clientId, ErrorCode.payloadTooLarge, `payload over ${limits.payloadBytesMax} bytes`);
    }
    if (entry.pending >= groupSendsPendingMax) {
      return this.refuse(session, clientId, ErrorCode.groupBusy, "too many sends to this group in flight; retry");
    }
    // The device-list check (WhatsApp's phash, Signal's 409/410), before anything is stored.
    const targets = await this.memberDevices(entry, session);
    const expected: GroupDevice[] = [];
    for (const target of targets)
      for (const device of target.devices) expected.push({ account: target.account, device });
    const key = (device: GroupDevice) => `${device.account}/${device.device}`;
    const expectedKeys = new Set(expected.map(key));
    const extraParts = stanza.parts.filter((part) => !expectedKeys.has(key(part)));
    let missing: GroupDevice[] = [];
    let extra: GroupDevice[] = extraParts.map((part) => ({ account: part.account, device: part.device }));
    if (stanza.devices !== null) {
      const stated = new Set(stanza.devices.map(key));
      missing = expected.filter((device) => !stated.has(key(device)));
      extra = [...extra, ...stanza.devices.filter((device) => !expectedKeys.has(key(device)))];
    } else if (!equalBytes(groupDevicesHash(expected), stanza.devicesHash!)) {
      // A hash cannot say which devices differ: the whole current list is "missing" (the client replaces its view).
      missing = expected;
    }
    if (missing.length > 0 || extra.length > 0) {
      this.context.metrics.errors.incLabel(errorCodeName(ErrorCode.deviceMismatch));
      this.context.io.send(session, {
        kind: "error",
        code: ErrorCode.deviceMismatch,
        clientId,
        message: "the stated devices do not match the group's member devices",
        missingMemberDevices: missing,
        extraMemberDevices: dedupe(extra, key),
      });
      return;
    }
    if (session.state !== SessionState.ready) return;
    const createdAtMs = this.context.now();
    const payload = stanza.payload.slice();
    const parts = stanza.parts.map((part) => ({ account: part.account, device: part.device, part: part.part.slice() }));
    await this.handOutWork(
      session,
      entry,
      targets,
      (shareTargets) => ({
        kind: "message",
        groupId,
        senderAccount: session.account,
        senderDevice: session.device,
        clientId,
        createdAtMs,
        payload,
        targets: shareTargets,
        parts: parts.filter((part) => shareTargets.some((target) => target.account === part.account)),
      }),
      () => {
        this.context.io.send(session, { kind: "serverAck", clientId });
      },
    );
  }

  // ---- hand-outs and answers -------------------------------------------------------------------------------------

  /** Every device of every member except the sending device, by account. */
  private async memberDevices(entry: GroupEntry, except: Session): Promise<FanoutTarget[]> {
    const targets: FanoutTarget[] = [];
    const members = [...entry.members].sort((a, b) => a - b);
    for (let index = 0; index < members.length; index++) {
      const account = members[index]!;
      if (index > 0 && index % groupFanoutDevicesPerTurn === 0) await nextTurn();
      const devices = await this.context.directory.load(account);
      if (devices === undefined) continue;
      const listed = account === except.account ? devices.filter((device) => device !== except.device) : devices;
      if (listed.length > 0) targets.push({ account, devices: [...listed].sort((a, b) => a - b) });
    }
    return targets;
  }

  /** A membership change's event for every device of its recipients (the acting device too). */
  private async handOut(
    session: Session,
    entry: GroupEntry,
    change: GroupChange,
    answer: () => Promise<void>,
  ): Promise<void> {
    const targets: FanoutTarget[] = [];
    for (let index = 0; index < change.recipients.length; index++) {
      const account = change.recipients[index]!;
      if (index > 0 && index % groupFanoutDevicesPerTurn === 0) await nextTurn();
      const devices = await this.context.directory.load(account);
      if (devices !== undefined) targets.push({ account, devices });
    }
    const event = {
      groupId: change.groupId,
      version: change.version,
      op: change.op,
      actorAccount: change.actorAccount,
      actorDevice: change.actorDevice,
      accounts: change.accounts,
      name: change.name,
      createdAtMs: change.createdAtMs,
    };
    await this.handOutWork(
      session,
      entry,
      targets,
      (share) => ({ kind: "event", clientId: change.clientId, event, targets: share }),
      () => {
        void answer().catch((error: unknown) =>
          this.context.log.error("group_answer_failed", { error: String(error) }),
        );
      },
    );
  }

  /**
   * Splits `targets` by the worker that owns each account, hands each share out (in this chain's order), and calls
   * `durable` once every share is durable; a refusal answers the session with its code, a lost share ends it.
   */
  private async handOutWork(
    session: Session,
    entry: GroupEntry,
    targets: readonly FanoutTarget[],
    workFor: (share: FanoutTarget[]) => FanoutWork,
    durable: () => void,
  ): Promise<void> {
    const shares = new Map<number, FanoutTarget[]>();
    for (const target of targets) {
      const worker = this.dispatch.ownerOf(target.account);
      const share = shares.get(worker) ?? [];
      shares.set(worker, share);
      share.push(target);
    }
    const clientId = workFor([]).clientId;
    entry.pending++;
    const answers: Array<Promise<FanoutResult | "lost">> = [];
    for (const [worker, share] of shares) {
      answers.push(
        worker === this.dispatch.self ? this.fanout.submit(workFor(share)) : this.dispatch.send(worker, workFor(share)),
      );
    }
    void Promise.all(answers).then((results) => {
      entry.pending--;
      if (results.includes("lost")) {
        // A worker died with its share: the client resends, and the retry is recognised where it was stored.
        this.context.io.goaway(
          session,
          ErrorCode.shuttingDown,
          Math.floor(Math.random() * Math.min(ownerGoneRetryAfterMsMax, this.context.limits.goawayRetryAfterMsMax)),
          "a worker of this server restarted; reconnect",
        );
        return;
      }
      const refused = results.find((result): result is FanoutResult => result !== "lost" && result.code !== 0);
      if (refused !== undefined) return this.refuse(session, clientId, refused.code, refused.message);
      durable();
    });
  }

  private async answerInfo(session: Session, clientId: number, entry: GroupEntry): Promise<void> {
    const record = entry.record;
    const devices: GroupDevice[] = [];
    for (const member of record.members) {
      for (const device of (await this.context.directory.load(member.account)) ?? []) {
        devices.push({ account: member.account, device });
      }
    }
    this.context.io.send(session, {
      kind: "groupInfo",
      clientId,
      groupId: record.id,
      version: record.version,
      name: record.name,
      members: record.members.map((member) => member.account),
      admins: record.members.filter((member) => member.admin).map((member) => member.account),
      devices,
    });
  }

  private refuse(session: Session, clientId: number, code: number, message: string | null): void {
    this.context.metrics.errors.incLabel(errorCodeName(code));
    this.context.io.send(session, { kind: "error", code, clientId, message });
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

function dedupe<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const name = key(item);
    if (seen.has(name)) return false;
    seen.add(name);
    return true;
  });
}
