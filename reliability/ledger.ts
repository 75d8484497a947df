// What every party of a trial did, and the contract checks over it. The runner process never dies, so this lives in
// its memory: the senders' record of server-acks and each recipient application's store (which survives the
// simulated deaths of the app: only its client object is dropped).
//
// The four counts (each must be 0):
//   lost       a server-acked message that a recipient device's application does not hold at the end;
//   duplicates a message held twice by one application (stored twice under one identity, or its payload stored under
//              two identities: the same message given two client ids);
//   order      per (sender device, recipient device), messages first handed to the application in an order other
//              than the order of their server-acks to the sender;
//   seqReused  per recipient device, a sequence number seen with two different contents (a seq must mean one
//              queue entry forever).

/** "account:device": one device everywhere in the ledger. */
export type DeviceKey = string;

export function deviceKey(account: number, device: number): DeviceKey {
  return `${account}:${device}`;
}

/** The identity of a message at a recipient: its sender device and the sender's client id. */
export function messageKey(from: number, fromDevice: number, clientId: number): string {
  return `${from}:${fromDevice}:${clientId}`;
}

export interface SentMessage {
  /** Unique in a trial; it is the payload (UTF-8), so a recipient knows which message it holds. */
  readonly token: string;
  readonly sender: DeviceKey;
  readonly to: number;
  /** Position among the sender device's server-acks, from 1; 0 until acked. */
  ackIndex: number;
  clientId: number;
  /** Refused for good (a rejected-range error): not acked, never expected anywhere. */
  refused: boolean;
}

interface StoredEntry {
  readonly token: string;
  readonly key: string;
}

/** One recipient device's application store and what it saw on the way. */
export class AppStore {
  /** message key -> entry, in store order. */
  private readonly byKey = new Map<string, StoredEntry>();
  /** token -> times stored. */
  private readonly tokenCounts = new Map<string, number>();
  /** message key -> the index of its first hand-over to this application (any life of the app). */
  private readonly firstHandover = new Map<string, number>();
  /** seq -> what it carried when first seen. */
  private readonly seqContent = new Map<number, string>();
  private readonly seqConflicts = new Set<number>();
  private handovers = 0;
  duplicates = 0;
  redeliveries = 0;
  /** Examples of failures, for the report (bounded). */
  readonly notes: string[] = [];

  constructor(readonly device: DeviceKey) {}

  private note(text: string): void {
    if (this.notes.length < 20) this.notes.push(text);
  }

  /** A deliver or deliverReceipt with this seq and content reached the device (before any dedupe). */
  sawSeq(seq: number, content: string): void {
    const before = this.seqContent.get(seq);
    if (before === undefined) this.seqContent.set(seq, content);
    else if (before !== content && !this.seqConflicts.has(seq)) {
      this.seqConflicts.add(seq);
      this.note(`seq ${seq} meant ${before}, then ${content}`);
    }
  }

  /**
   * The message is handed to the application. Returns true when the application already holds it (a redelivery
   * it ignores, as PROTOCOL.md section 11 says a client must).
   */
  handed(key: string): boolean {
    if (!this.firstHandover.has(key)) this.firstHandover.set(key, ++this.handovers);
    if (this.byKey.has(key)) {
      this.redeliveries++;
      return true;
    }
    return false;
  }

  /** The application finished storing the message. */
  store(key: string, token: string): void {
    if (this.byKey.has(key)) {
      this.duplicates++;
      this.note(`${key} (${token}) stored twice`);
      return;
    }
    this.byKey.set(key, { token, key });
    const count = (this.tokenCounts.get(token) ?? 0) + 1;
    this.tokenCounts.set(token, count);
    if (count > 1) {
      this.duplicates++;
      this.note(`${token} stored again under ${key}`);
    }
  }

  holds(token: string): boolean {
    return this.tokenCounts.has(token);
  }

  /** token -> first hand-over index, for every stored message. */
  handoverByToken(): Map<string, number> {
    const result = new Map<string, number>();
    for (const entry of this.byKey.values()) {
      const index = this.firstHandover.get(entry.key);
      if (index !== undefined && !result.has(entry.token)) result.set(entry.token, index);
    }
    return result;
  }

  get storedCount(): number {
    return this.byKey.size;
  }

  get seqReused(): number {
    return this.seqConflicts.size;
  }
}

export interface LedgerCounts {
  readonly sent: number;
  readonly acked: number;
  /** Sends neither server-acked nor refused when the trial ended (the wait for quiescence ran out). */
  readonly unsettled: number;
  readonly refused: number;
  /** Retry-range refusals (queueFull, rateLimited, busy) the senders answered by sending again. */
  readonly retries: number;
  /** Deliveries the applications were expected to hold (acked messages x recipient devices). */
  readonly expectedDeliveries: number;
  readonly stored: number;
  readonly redeliveries: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly order: number;
  readonly seqReused: number;
}

export class Ledger {
  private readonly messages = new Map<string, SentMessage>();
  private readonly ackCounts = new Map<DeviceKey, number>();
  /** account -> its devices (known to the runner, which registered and linked them). */
  private readonly devicesByAccount = new Map<number, DeviceKey[]>();
  readonly stores = new Map<DeviceKey, AppStore>();
  readonly notes: string[] = [];
  /** Retry-range refusals the senders answered by sending again. */
  retries = 0;

  addDevice(account: number, device: number): AppStore {
    const key = deviceKey(account, device);
    const list = this.devicesByAccount.get(account) ?? [];
    if (!list.includes(key)) list.push(key);
    this.devicesByAccount.set(account, list);
    let store = this.stores.get(key);
    if (store === undefined) {
      store = new AppStore(key);
      this.stores.set(key, store);
    }
    return store;
  }

  store(device: DeviceKey): AppStore {
    const store = this.stores.get(device);
    if (store === undefined) throw new Error(`bug: no application store for ${device}`);
    return store;
  }

  sent(token: string, sender: DeviceKey, to: number): SentMessage {
    if (this.messages.has(token)) throw new Error(`bug: token ${token} sent twice`);
    const message: SentMessage = { token, sender, to, ackIndex: 0, clientId: 0, refused: false };
    this.messages.set(token, message);
    return message;
  }

  /** The sender saw the server-ack of `token` (call in the order the acks arrived). */
  acked(token: string, clientId: number): void {
    const message = this.messages.get(token);
    if (message === undefined) throw new Error(`bug: ack of unknown token ${token}`);
    if (message.ackIndex !== 0) return; // an ack repeated for a resend: the first one counts
    const index = (this.ackCounts.get(message.sender) ?? 0) + 1;
    this.ackCounts.set(message.sender, index);
    message.ackIndex = index;
    message.clientId = clientId;
  }

  refused(token: string, why: string): void {
    const message = this.messages.get(token);
    if (message === undefined || message.ackIndex !== 0) return;
    message.refused = true;
    if (this.notes.length < 20) this.notes.push(`${token} refused: ${why}`);
  }

  /** The devices that must receive a message from `sender` to account `to`: all of `to`'s, minus the sender. */
  recipientsOf(message: SentMessage): DeviceKey[] {
    return (this.devicesByAccount.get(message.to) ?? []).filter((device) => device !== message.sender);
  }

  get unsettled(): number {
    let count = 0;
    for (const message of this.messages.values()) if (message.ackIndex === 0 && !message.refused) count++;
    return count;
  }

  /** True when every acked message is held by every recipient device. */
  complete(): boolean {
    for (const message of this.messages.values()) {
      if (message.ackIndex === 0) continue;
      for (const device of this.recipientsOf(message)) if (!this.store(device).holds(message.token)) return false;
    }
    return true;
  }

  counts(): LedgerCounts {
    let acked = 0;
    let refused = 0;
    let expectedDeliveries = 0;
    let lost = 0;
    let order = 0;
    // (sender, recipient device) -> acked tokens in ack order
    const pairs = new Map<string, SentMessage[]>();
    for (const message of this.messages.values()) {
      if (message.refused) refused++;
      if (message.ackIndex === 0) continue;
      acked++;
      for (const device of this.recipientsOf(message)) {
        expectedDeliveries++;
        if (!this.store(device).holds(message.token)) {
          lost++;
          if (this.notes.length < 40)
            this.notes.push(`lost: ${message.token} (client id ${message.clientId}) at ${device}`);
        }
        const pair = `${message.sender}>${device}`;
        const list = pairs.get(pair) ?? [];
        list.push(message);
        pairs.set(pair, list);
      }
    }
    for (const [pair, list] of pairs) {
      const device = pair.slice(pair.indexOf(">") + 1);
      const handovers = this.store(device).handoverByToken();
      list.sort((left, right) => left.ackIndex - right.ackIndex);
      let previous = 0;
      let previousToken = "";
      for (const message of list) {
        const index = handovers.get(message.token);
        if (index === undefined) continue;
        if (index < previous) {
          order++;
          if (this.notes.length < 40) {
            this.notes.push(
              `order: ${message.token} (ack ${message.ackIndex}) reached ${device} before ${previousToken}`,
            );
          }
        }
        previous = Math.max(previous, index);
        previousToken = message.token;
      }
    }
    let stored = 0;
    let redeliveries = 0;
    let duplicates = 0;
    let seqReused = 0;
    for (const store of this.stores.values()) {
      stored += store.storedCount;
      redeliveries += store.redeliveries;
      duplicates += store.duplicates;
      seqReused += store.seqReused;
      for (const note of store.notes) if (this.notes.length < 60) this.notes.push(`${store.device}: ${note}`);
    }
    return {
      sent: this.messages.size,
      acked,
      unsettled: this.unsettled,
      refused,
      retries: this.retries,
      expectedDeliveries,
      stored,
      redeliveries,
      lost,
      duplicates,
      order,
      seqReused,
    };
  }
}
