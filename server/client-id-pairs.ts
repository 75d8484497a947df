// Which client ids of a sender device were stored for a recipient account: one window (client-id-window.ts) per
// (recipient account, sender device) pair, kept in the recipient's partition beside the queue the messages go to, so
// a send and the record that recognises its resend commit in one transaction (ARCHITECTURE.md, "Partitions").
//
// A pair is in memory while it has something the store does not (an open or committing batch writes it, or a send
// of it waits for its server-ack), and otherwise as a cache of recently used pairs: at most clientIdPairsCachedMax
// (least recently used out), and none unused for longer than `idleMs` (deviceStateIdleReleaseMs), so that senders
// that went quiet cost nothing here, as their device states cost nothing (device-states.ts).
// Handlers await the store to load a pair, so they call current() after their last await: it returns the object the
// table holds then (a pair evicted and loaded again during the await is the same facts as the store's).

import type { Storage } from "../storage/index.ts";
import { type ClientIdMarks, windowFromBytes } from "./client-id-window.ts";
import type { PendingMessage } from "./group-commit.ts";

/** Idle pairs kept in memory (~200 B each): a sender's next message to the same account costs no store read. */
export const clientIdPairsCachedMax = 50_000;

export class ClientIdPair {
  /** Marks as accepted in memory, and as the store has them (committed batches only). */
  marks: ClientIdMarks;
  committed: ClientIdMarks;
  /**
   * Accepted sends of this pair whose batch has not committed yet, by client id: a resend of one is answered with its
   * own server-ack, so that server-acks follow the order in which the messages were stored.
   */
  unackedSends: Map<number, PendingMessage> | null = null;
  /** Open or committing batches that write this pair's window. */
  writes = 0;
  /** When a handler last loaded it (the idle eviction's clock). */
  usedAtMs = 0;

  constructor(
    readonly key: string,
    readonly account: number,
    readonly senderAccount: number,
    readonly senderDevice: number,
    stored: ClientIdMarks,
  ) {
    this.marks = stored;
    this.committed = stored;
  }

  /** Nothing in memory that the store lacks. */
  get isIdle(): boolean {
    return this.writes === 0 && this.unackedSends === null && this.marks === this.committed;
  }
}

export class ClientIdPairs {
  private readonly pairs = new Map<string, ClientIdPair>();
  private readonly loading = new Map<string, Promise<ClientIdPair>>();
  /** Runs while pairs are cached (see sweepIdle). */
  private sweep: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly storage: Storage,
    private readonly now: () => number = Date.now,
    /** How long an idle pair stays cached after its last use. */
    private readonly idleMs: () => number = () => Number.POSITIVE_INFINITY,
  ) {}

  get size(): number {
    return this.pairs.size;
  }

  /** The pair, from memory or the store (empty marks for a pair never seen). */
  load(account: number, senderAccount: number, senderDevice: number): Promise<ClientIdPair> {
    const key = `${account}:${senderAccount}:${senderDevice}`;
    const present = this.pairs.get(key);
    if (present !== undefined) {
      this.pairs.delete(key);
      this.pairs.set(key, present);
      present.usedAtMs = this.now();
      return Promise.resolve(present);
    }
    let loading = this.loading.get(key);
    if (loading === undefined) {
      loading = this.storage.queues
        .clientIdWindows(account, [{ account: senderAccount, device: senderDevice }])
        .then((rows) => {
          const raced = this.pairs.get(key);
          if (raced !== undefined) return raced;
          const row = rows[0];
          const marks =
            row === undefined
              ? { last: 0, window: 0n }
              : { last: row.lastClientId, window: windowFromBytes(row.window) };
          const pair = new ClientIdPair(key, account, senderAccount, senderDevice, marks);
          this.insert(pair);
          return pair;
        })
        .finally(() => this.loading.delete(key));
      this.loading.set(key, loading);
    }
    return loading;
  }

  /** The table's object for this pair after an await (see the file comment). */
  current(pair: ClientIdPair): ClientIdPair {
    const present = this.pairs.get(pair.key);
    if (present !== undefined) return present;
    this.insert(pair);
    return pair;
  }

  /** A pair's batch committed or its server-ack went out: it may now be evicted when the cache is full. */
  settled(): void {
    this.evict();
  }

  private insert(pair: ClientIdPair): void {
    pair.usedAtMs = this.now();
    this.pairs.set(pair.key, pair);
    this.evict();
    const idleMs = this.idleMs();
    if (this.sweep === null && Number.isFinite(idleMs)) {
      this.sweep = setInterval(() => this.sweepIdle(), Math.max(1, Math.floor(idleMs / 2)));
      this.sweep.unref?.();
    }
  }

  /** Drops idle pairs unused for idleMs; stops when nothing is cached. */
  private sweepIdle(): void {
    const cutoff = this.now() - this.idleMs();
    // Least recently used first: the first pair used after the cutoff ends the scan (later ones are newer, but for
    // pairs taken back by current(), which keeps their place; they go at a later sweep).
    for (const [key, pair] of this.pairs) {
      if (pair.usedAtMs > cutoff) break;
      if (pair.isIdle) this.pairs.delete(key);
    }
    if (this.pairs.size === 0 && this.sweep !== null) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
  }

  private evict(): void {
    if (this.pairs.size <= clientIdPairsCachedMax) return;
    // Oldest first; busy pairs stay (they are few: one per send in flight).
    for (const [key, pair] of this.pairs) {
      if (this.pairs.size <= clientIdPairsCachedMax) return;
      if (pair.isIdle) this.pairs.delete(key);
    }
  }
}
