// Routing between the workers of one host over the mesh (routing.ts says who does what; mesh.ts what a message
// may expect). Both roles live in every worker:
// - as an edge, it forwards the stanzas of its sessions to the owners of the accounts they concern, writes what the
//   owners send back to the sockets, and tells the owners when a session closes or its socket fills up;
// - as an owner, it keeps one ProxySession per (edge, session) that has talked to it, whose socket writes go back to
//   the edge, and runs the delivery pipeline on it as on a local session: one stanza at a time, in order.
//
// The messages (field names kept short: one goes over the mesh per stanza and per delivery):
//   edge -> owner  st {s, a, d, v, k: stanza}   a stanza of session s (of device a/d, dictionary version v)
//                  at {s, a, d, v, n: kind}   session s logged in as a/d (n: login, register, link)
//                  cl {s}                     session s closed
//                  fu {s} / wr {s}            session s's socket is full / writable again
//   owner -> edge  o  {s, b}                  bytes (whole frames) for session s
//                  e  {s}                     close session s once those bytes are written
//   any -> owner   rc {a, ty, fa, fd, sd, ids, at}   receipts for the devices of account a
//                  mk {e: [{account, device, lastClientId}]}   sender high-water marks
//   group owner -> member owner  gf {r, w}      a group fan-out (group-fanout.ts), request r
//   member owner -> group owner  gd {r, c, m}   fan-out r is durable (c 0) or refused (error code c, message m)
//   reader's owner -> sender's owner  gr {g, a, sd, id, ra, rd}   reader ra/rd has group message a/sd/id
//   any -> all     dir {a}                    the devices of account a changed: forget the cached list
//                  rm {a, ds, c, w}           devices ds of a removed (w: the whole account): close, forget

import { ErrorCode, type ReceiptTypeValue, type Stanza } from "../protocol/index.ts";
import { ownerGoneRetryAfterMsMax } from "../protocol/limits.ts";
import type { QueueBatch } from "../storage/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import type { FanoutResult, FanoutWork } from "./group-fanout.ts";
import type { GroupDispatch } from "./group-owner.ts";
import type { GroupDelivered } from "./group-receipts.ts";
import type { GroupStanza } from "./group-requests.ts";
import type { KeyDirectory } from "./keys-directory.ts";
import type { Mesh, MeshHandlers, MeshMessage } from "./mesh.ts";
import { ownerOfPartition, type Partitions } from "./partitions.ts";
import type { ReceiptIntent, Routing } from "./routing.ts";
import { ProxySession, type Session, SessionState, sameSession } from "./session.ts";
import { attachSession } from "./session-attach.ts";
import type { SessionSlots } from "./session-slots.ts";
import type { TransportSocket } from "./transport.ts";

/** A local session that talks to other workers: which of them hold a proxy of it. */
interface EdgeSession {
  readonly session: Session;
  readonly owners: Set<number>;
}

export class MeshRouting implements Routing, MeshHandlers {
  /** Set once the mesh is listening (it needs these handlers to start). */
  mesh: Mesh | null = null;
  /**
   * This process among the lives of its worker index: session ids start again at 1 in a restarted worker, so an
   * owner keys its proxies by (edge, incarnation, session id), and an edge takes bytes only for its own incarnation.
   * Without it an owner that had not yet seen the old edge go applied a new session's acks to an old session's
   * device and wrote one device's deliveries to another's socket (found by the crash trials with workers).
   */
  readonly incarnation = crypto.getRandomValues(new Uint32Array(1))[0]!;
  /** This worker's sessions that other workers know of, by session id. */
  private readonly edgeSessions = new Map<number, EdgeSession>();
  /** Proxies of other workers' sessions, by `${edge}:${incarnation}:${session id}`. */
  private readonly proxies = new Map<string, ProxySession>();
  /**
   * Group fan-outs handed to other workers and not answered yet, by request id. Bounded by the group owners'
   * groupSendsPendingMax per group; a worker that dies answers all of its own as lost (peerDown).
   */
  private readonly fanouts = new Map<number, { worker: number; resolve: (result: FanoutResult | "lost") => void }>();
  private nextFanout = 1;

  /** How a group's owner reaches the owners of its members (group-owner.ts). */
  readonly groupDispatch: GroupDispatch;

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
    private readonly keys: KeyDirectory,
    private readonly partitions: Partitions,
    private readonly self: number,
    private readonly workers: number,
    private readonly slots: SessionSlots,
  ) {
    this.groupDispatch = {
      ownerOf: (account) => this.ownerOf(account),
      self,
      send: (worker, work) => this.sendFanout(worker, work),
    };
  }

  private sendFanout(worker: number, work: FanoutWork): Promise<FanoutResult | "lost"> {
    return new Promise((resolve) => {
      const request = this.nextFanout++;
      if (this.mesh === null || !this.mesh.send(worker, { t: "gf", r: request, w: work })) {
        resolve("lost");
        return;
      }
      this.fanouts.set(request, { worker, resolve });
    });
  }

  owns(account: number): boolean {
    return this.partitions.owns(account);
  }

  private ownerOf(account: number): number {
    return ownerOfPartition(this.partitions.partitionOf(account), this.workers);
  }

  // ---- the edge's side -------------------------------------------------------------------------------------------

  forward(session: Session, account: number, stanza: Stanza): void {
    const owner = this.ownerOf(account);
    const sent = this.sendTo(session, owner, {
      t: "st",
      i: this.incarnation,
      s: session.id,
      a: session.account,
      d: session.device,
      v: session.dictionaryVersion,
      k: stanza,
    });
    // The owner is down (restarting): the session ends and its client resends, in client-id order, whatever has no
    // serverAck yet. Refusing only this send (busy) would let the client store later ids first, and the owner may
    // already have pushed this one before it died: the recipient would see it, then the later ids, then its resend
    // (found by the crash trials with workers as an order break).
    if (!sent) this.ownerGone(session);
  }

  attachRemote(session: Session, kind: string): void {
    // Registered here too, so that a kick or a removal handled by this worker finds the socket.
    this.context.router.attach(session.account, session.device, session);
    const owner = this.ownerOf(session.account);
    const message = {
      t: "at",
      i: this.incarnation,
      s: session.id,
      a: session.account,
      d: session.device,
      v: session.dictionaryVersion,
      n: kind,
    };
    if (!this.sendTo(session, owner, message)) this.ownerGone(session);
  }

  closed(session: Session): void {
    const known = this.edgeSessions.get(session.id);
    if (known === undefined || !sameSession(known.session, session)) return;
    this.edgeSessions.delete(session.id);
    for (const owner of known.owners) this.mesh?.send(owner, { t: "cl", i: this.incarnation, s: session.id });
  }

  blocked(session: Session): void {
    const known = this.edgeSessions.get(session.id);
    if (known !== undefined)
      for (const owner of known.owners) this.mesh?.send(owner, { t: "fu", i: this.incarnation, s: session.id });
  }

  writable(session: Session): void {
    const known = this.edgeSessions.get(session.id);
    if (known !== undefined)
      for (const owner of known.owners) this.mesh?.send(owner, { t: "wr", i: this.incarnation, s: session.id });
  }

  /** Sends a message about `session` to `owner`, remembering that the owner now holds a proxy of it. */
  private sendTo(session: Session, owner: number, message: MeshMessage): boolean {
    if (this.mesh === null || !this.mesh.send(owner, message)) return false;
    let known = this.edgeSessions.get(session.id);
    if (known === undefined) {
      known = { session, owners: new Set() };
      this.edgeSessions.set(session.id, known);
    }
    known.owners.add(owner);
    return true;
  }

  /** The owner of what this session was doing is gone: the session ends, its client reconnects and resends. */
  private ownerGone(session: Session): void {
    this.context.io.goaway(
      session,
      ErrorCode.shuttingDown,
      Math.floor(Math.random() * Math.min(ownerGoneRetryAfterMsMax, this.context.limits.goawayRetryAfterMsMax)),
      "a worker of this server restarted; reconnect",
    );
  }

  // ---- the owner's side ------------------------------------------------------------------------------------------

  receipt(account: number, intent: ReceiptIntent): void {
    // At most once (routing.ts): a receipt for an owner that is down is dropped.
    this.mesh?.send(this.ownerOf(account), {
      t: "rc",
      a: account,
      ty: intent.type,
      fa: intent.fromAccount,
      fd: intent.fromDevice,
      sd: intent.senderDevice,
      ids: intent.clientIds,
      at: intent.createdAtMs,
    });
  }

  groupReceipt(entry: GroupDelivered, reader: { account: number; device: number }): void {
    // At most once, as receipts are (routing.ts).
    this.mesh?.send(this.ownerOf(entry.senderAccount), {
      t: "gr",
      ty: entry.type,
      g: entry.groupId,
      a: entry.senderAccount,
      sd: entry.senderDevice,
      id: entry.clientId,
      ra: reader.account,
      rd: reader.device,
    });
  }

  /** Sender marks whose partition another worker owns (partitions.ts, foreignClientIds). */
  clientIdMarks(entries: QueueBatch["clientIds"]): void {
    const byOwner = new Map<number, QueueBatch["clientIds"]>();
    for (const entry of entries) {
      const owner = this.ownerOf(entry.account);
      const list = byOwner.get(owner) ?? [];
      byOwner.set(owner, list);
      list.push(entry);
    }
    for (const [owner, list] of byOwner) this.mesh?.send(owner, { t: "mk", e: list });
  }

  /** The directory changed here (Directory.onInvalidate): the others forget their cached device list. */
  directoryChanged(account: number): void {
    this.broadcast({ t: "dir", a: account });
  }

  removed(account: number, devices: readonly number[], code: number, wholeAccount: boolean): void {
    this.broadcast({ t: "rm", a: account, ds: devices, c: code, w: wholeAccount });
  }

  private broadcast(message: MeshMessage): void {
    if (this.mesh === null) return;
    for (let peer = 0; peer < this.workers; peer++) if (peer !== this.self) this.mesh.send(peer, message);
  }

  private proxyOf(edge: number, incarnation: number, sessionId: number, account: number, device: number): ProxySession {
    const key = `${edge}:${incarnation}:${sessionId}`;
    let proxy = this.proxies.get(key);
    if (proxy !== undefined && (proxy.account !== account || proxy.device !== device)) {
      // One session id is one session of one device: anything else is a bug, and a worker with a bug is restarted.
      this.context.log.error("mesh_session_mismatch", {
        key,
        was: [proxy.account, proxy.device],
        now: [account, device],
      });
      process.exit(70);
    }
    if (proxy === undefined) {
      const { limits, now } = this.context;
      const socket = new MeshSocket(this, edge, incarnation, sessionId);
      proxy = new ProxySession(this.slots, socket, now(), limits.rateBurstStanzas, edge, incarnation, sessionId);
      proxy.account = account;
      proxy.device = device;
      proxy.state = SessionState.ready;
      proxy.nonce = null;
      this.proxies.set(key, proxy);
    }
    return proxy;
  }

  /** Runs `work` for the proxy after everything forwarded before it, as connection.ts runs a session's stanzas. */
  private run(proxy: ProxySession, work: () => Promise<void> | void): void {
    proxy.chain = proxy.chain.then(async () => {
      if (proxy.state === SessionState.closed) return;
      proxy.busy = true;
      try {
        await work();
      } catch (error) {
        // A bug in a handler: this session ends, as connection.ts does for a local one.
        this.context.log.error("handler_failed", { session: proxy.id, edge: proxy.edge, error: String(error) });
        this.context.io.close(proxy, ErrorCode.internalError, "internal error");
      } finally {
        proxy.busy = false;
      }
      // (`work` may have closed it: TypeScript cannot see that through the await.)
      if ((proxy.state as number) !== SessionState.closed) this.delivery.releaseIfIdle(proxy);
    });
  }

  private handle(proxy: ProxySession, stanza: Stanza): Promise<void> | void {
    switch (stanza.kind) {
      case "send":
        return this.delivery.send(proxy, stanza);
      case "ack":
        return this.delivery.ack(proxy, stanza.seq);
      case "receipt":
        return this.delivery.receipt(proxy, stanza);
      case "keysUpload":
        return this.keys.upload(proxy, stanza);
      case "keysFetch":
        return this.keys.fetch(proxy, stanza);
      case "groupCreate":
      case "groupUpdate":
      case "groupFetch":
      case "groupSend":
        return this.context.groups?.run(proxy, stanza as GroupStanza);
      default:
        // The edge forwards only these: anything else is a bug on its side.
        throw new Error(`a ${stanza.kind} stanza was forwarded`);
    }
  }

  /**
   * The proxy's edge closed the session (or died): at once, nothing more is written to it and nothing new runs for
   * it (work already chained finds it closed); its device is detached once the handler running now is done.
   */
  private closeProxy(proxy: ProxySession): void {
    this.proxies.delete(`${proxy.edge}:${proxy.incarnation}:${proxy.edgeSession}`);
    proxy.state = SessionState.closed;
    proxy.chain = proxy.chain.then(() => this.detachProxy(proxy));
  }

  private detachProxy(proxy: ProxySession): void {
    if (proxy.deviceState !== null || proxy.stateReleased) this.context.lastSeen.note(proxy.account, proxy.device);
    this.context.router.detach(proxy.account, proxy.device, proxy);
    this.delivery.detach(proxy);
    this.slots.release(proxy.slot);
  }

  // ---- mesh handlers ---------------------------------------------------------------------------------------------

  message(from: number, message: MeshMessage): void {
    const field = message as Record<string, unknown>;
    switch (message.t) {
      case "st": {
        const proxy = this.proxyOf(from, field.i as number, field.s as number, field.a as number, field.d as number);
        proxy.dictionaryVersion = (field.v as number | undefined) ?? 1;
        const stanza = field.k as Stanza;
        this.run(proxy, () => this.handle(proxy, stanza));
        return;
      }
      case "at": {
        const proxy = this.proxyOf(from, field.i as number, field.s as number, field.a as number, field.d as number);
        proxy.dictionaryVersion = (field.v as number | undefined) ?? 1;
        this.run(proxy, async () => {
          if (!(await attachSession(this.context, this.delivery, proxy, field.n as string))) {
            this.context.io.close(proxy, ErrorCode.badCredentials, "unknown device or bad signature");
          }
        });
        return;
      }
      case "cl": {
        const proxy = this.proxies.get(`${from}:${field.i as number}:${field.s as number}`);
        if (proxy !== undefined) this.closeProxy(proxy);
        return;
      }
      case "fu":
      case "wr": {
        const proxy = this.proxies.get(`${from}:${field.i as number}:${field.s as number}`);
        if (proxy === undefined) return;
        proxy.remoteFull = message.t === "fu";
        if (!proxy.remoteFull && proxy.deviceState !== null) this.delivery.pump(proxy.deviceState);
        return;
      }
      case "o": {
        // Bytes for a session of an earlier life of this worker index are for nobody here.
        if (field.i !== this.incarnation) return;
        const known = this.edgeSessions.get(field.s as number);
        // The bytes are a view into the mesh's chunk: the session keeps its own copy until the socket takes it.
        if (known !== undefined) this.context.io.sendFrame(known.session, (field.b as Uint8Array).slice());
        return;
      }
      case "e": {
        if (field.i !== this.incarnation) return;
        const known = this.edgeSessions.get(field.s as number);
        if (known !== undefined) this.context.io.end(known.session);
        return;
      }
      case "rc":
        void this.delivery
          .queueReceipts(field.a as number, {
            type: field.ty as number,
            fromAccount: field.fa as number,
            fromDevice: field.fd as number,
            senderDevice: field.sd as number,
            clientIds: field.ids as number[],
            createdAtMs: field.at as number,
          })
          .catch((error) => this.context.log.error("receipt_failed", { account: field.a, error: String(error) }));
        return;
      case "gf": {
        const request = field.r as number;
        const work = ownedWork(field.w as FanoutWork);
        const groups = this.context.groups;
        if (groups === null) return;
        void groups.fanout.submit(work).then((result) => {
          this.mesh?.send(from, { t: "gd", r: request, c: result.code, m: result.message });
        });
        return;
      }
      case "gr":
        this.context.groups?.receipts.add(
          {
            type: field.ty as ReceiptTypeValue,
            groupId: field.g as number,
            senderAccount: field.a as number,
            senderDevice: field.sd as number,
            clientId: field.id as number,
          },
          { account: field.ra as number, device: field.rd as number },
        );
        return;
      case "gd": {
        const waiting = this.fanouts.get(field.r as number);
        if (waiting === undefined) return;
        this.fanouts.delete(field.r as number);
        waiting.resolve({ code: field.c as number, message: (field.m as string | null) ?? null });
        return;
      }
      case "mk":
        this.delivery.noteClientIdMarks(field.e as QueueBatch["clientIds"]);
        return;
      case "dir":
        this.context.directory.forget(field.a as number);
        return;
      case "rm":
        void this.applyRemoval(field.a as number, field.ds as number[], field.c as number, field.w === true).catch(
          (error) => this.context.log.error("removal_failed", { account: field.a, error: String(error) }),
        );
        return;
      default:
        // Workers run one code base: an unknown kind is a bug, and a worker with a bug is restarted.
        this.context.log.error("mesh_unknown_message", { from, kind: message.t });
        process.exit(70);
    }
  }

  /** Another worker removed devices: close their sessions here, and, as their owner, their queues and states. */
  private async applyRemoval(account: number, devices: readonly number[], code: number, whole: boolean): Promise<void> {
    this.context.directory.forget(account);
    if (this.owns(account)) {
      for (const device of devices) await this.delivery.forgetDevice(account, device);
      if (whole) await this.context.storage.accounts.remove(account);
      else for (const device of devices) await this.context.storage.devices.remove({ account, device });
    }
    const reason = whole ? "this account was removed by the operator" : "this device was removed from its account";
    for (const device of devices) {
      const session = this.context.router.find(account, device);
      if (session === undefined) continue;
      this.context.router.detach(account, device, session);
      this.context.io.close(session, code, reason);
    }
  }

  peerUp(peer: number): void {
    this.context.log.info("worker_peer_up", { peer });
  }

  peerDown(peer: number): void {
    this.context.log.warn("worker_peer_down", { peer });
    // As a group's owner: what that worker had of a fan-out may be lost (group-owner.ts ends the sender's session).
    for (const [request, waiting] of [...this.fanouts]) {
      if (waiting.worker !== peer) continue;
      this.fanouts.delete(request);
      waiting.resolve("lost");
    }
    // As an owner: the sessions of that edge are gone.
    for (const proxy of [...this.proxies.values()]) if (proxy.edge === peer) this.closeProxy(proxy);
    // As an edge: whatever those sessions had handed to that owner may be lost; they reconnect and resend.
    for (const known of [...this.edgeSessions.values()]) {
      if (known.owners.has(peer)) this.ownerGone(known.session);
    }
  }
}

/** A fan-out as decoded from the mesh, with its bytes copied out of the mesh's chunk (they are kept in queues). */
function ownedWork(work: FanoutWork): FanoutWork {
  if (work.kind === "event") {
    return { ...work, event: { ...work.event, name: work.event.name === null ? null : work.event.name.slice() } };
  }
  return {
    ...work,
    payload: work.payload.slice(),
    parts: work.parts.map((part) => ({ account: part.account, device: part.device, part: part.part.slice() })),
  };
}

/** A proxy's socket: what the owner writes goes to the session's edge. It takes everything (the mesh bounds it). */
class MeshSocket implements TransportSocket {
  readonly remoteAddress: string;

  constructor(
    private readonly routing: MeshRouting,
    private readonly edge: number,
    private readonly incarnation: number,
    private readonly sessionId: number,
  ) {
    this.remoteAddress = `worker ${edge}`;
  }

  write(bytes: Uint8Array): number {
    this.routing.mesh?.send(this.edge, { t: "o", i: this.incarnation, s: this.sessionId, b: bytes });
    return bytes.length;
  }

  end(): void {
    this.routing.mesh?.send(this.edge, { t: "e", i: this.incarnation, s: this.sessionId });
  }

  pause(): void {}
  resume(): void {}
}
