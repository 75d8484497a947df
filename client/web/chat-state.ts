// What the web chat shows, without the DOM (so that it is tested in Bun): conversations by peer account, each
// message with its mark and time, receipts applied to our own messages, which received messages still need a read
// receipt, and the handles known for accounts. Every collection is bounded; the oldest entries go first. A snapshot
// of it (smaller bounds still) is what the page keeps in IndexedDB across reloads (history-store.ts).
//
// Marks only rise: pending (written, not stored yet) < sent ✓ (serverAck) < delivered ✓✓ < read. A receipt can come
// before the send's own promise settles (the serverAck and the receipt in one read): it waits in `early` until the
// message gets its client id.

export type Mark = "pending" | "sent" | "delivered" | "read" | "failed";

const markRank: Record<Mark, number> = { failed: 0, pending: 1, sent: 2, delivered: 3, read: 4 };

/** Messages kept per conversation (the oldest are dropped from the view). */
export const messagesPerConversationMax = 500;
/** Conversations kept (the least recently active is dropped). */
export const conversationsMax = 200;
/** Receipts kept for sends whose client id is not known yet. */
export const earlyReceiptsMax = 1000;
/** Own messages remembered by client id for their marks. */
export const sentRememberedMax = 2000;
/** Kept across reloads: the most recently active conversations, and the last messages of each. */
export const historyConversationsMax = 50;
export const historyMessagesPerConversationMax = 200;
/** Handles kept in the snapshot (those of its conversations come first). */
export const historyLabelsMax = 500;
/** A send that had no server-ack when the page closed: the SDK's outbox did not survive it. */
export const lostOnReloadReason = "the page was closed before the server stored it";

/** A message as kept across reloads. */
export type StoredMessage = Omit<ChatMessage, "id">;

/** The state kept across reloads, for one device (account and device say whose it is). */
export interface ChatSnapshot {
  readonly version: 1;
  readonly account: number;
  readonly device: number;
  readonly selected: number | null;
  readonly labels: ReadonlyArray<readonly [number, string]>;
  readonly conversations: ReadonlyArray<{
    readonly account: number;
    readonly unread: number;
    readonly lastActivityMs: number;
    readonly messages: readonly StoredMessage[];
  }>;
}

export interface ChatMessage {
  /** Local, increasing: a stable key for the view. */
  readonly id: number;
  readonly mine: boolean;
  readonly text: string;
  /** The sender (ours for `mine`). */
  readonly from: number;
  readonly fromDevice: number;
  /** The sender device's id of the message; null for our own until the server stored it. */
  clientId: number | null;
  mark: Mark;
  /** Why a send failed (mark "failed"). */
  error: string | null;
  /** For received messages: a read receipt was sent. */
  readSent: boolean;
  readonly timeMs: number;
}

export interface Conversation {
  readonly account: number;
  readonly messages: ChatMessage[];
  /** Received messages not shown yet. */
  unread: number;
  lastActivityMs: number;
}

export interface IncomingMessage {
  readonly from: number;
  readonly fromDevice: number;
  readonly clientId: number;
  readonly text: string;
  readonly timeSeconds: number;
}

export interface IncomingReceipt {
  readonly type: "delivered" | "read";
  readonly from: number;
  readonly senderDevice: number;
  readonly clientIds: readonly number[];
}

/** Read receipts to send: one per sender device. */
export interface ReadReceipt {
  readonly to: number;
  readonly toDevice: number;
  readonly clientIds: number[];
}

export class ChatState {
  readonly conversations = new Map<number, Conversation>();
  private readonly labels = new Map<number, string>();
  private readonly sentByClientId = new Map<number, ChatMessage>();
  private readonly early = new Map<number, Mark>();
  private nextId = 1;
  selected: number | null = null;

  constructor(
    readonly account: number,
    readonly device: number,
    handle: string | null,
    private readonly now: () => number = Date.now,
  ) {
    if (handle !== null) this.labels.set(account, handle);
  }

  label(account: number): string {
    const handle = this.labels.get(account);
    if (account === this.account) return handle === undefined ? "you" : `${handle} (you)`;
    return handle ?? `#${account}`;
  }

  /** The sender of a message as shown next to it. */
  senderLabel(message: ChatMessage): string {
    if (message.from !== this.account) return this.label(message.from);
    return message.fromDevice === this.device ? "you" : `you (device ${message.fromDevice})`;
  }

  setLabel(account: number, handle: string): boolean {
    if (this.labels.get(account) === handle) return false;
    this.labels.set(account, handle);
    return true;
  }

  /** Conversation peers whose handle is not known yet (to ask the server's reverse lookup for). */
  unnamed(): number[] {
    return [...this.conversations.keys()].filter((account) => !this.labels.has(account));
  }

  /** Opens (or creates) the conversation with `account` and shows it. */
  open(account: number): Conversation {
    const conversation = this.conversation(account);
    this.selected = account;
    return conversation;
  }

  /** Conversations, most recently active first. */
  list(): Conversation[] {
    return [...this.conversations.values()].sort((a, b) => b.lastActivityMs - a.lastActivityMs);
  }

  /** A message we are sending to `to`: pending until `stored`. */
  outgoing(to: number, text: string): ChatMessage {
    const message = this.add(to, this.now(), {
      mine: true,
      text,
      from: this.account,
      fromDevice: this.device,
      clientId: null,
      mark: "pending",
    });
    return message;
  }

  /** Keeps our message findable by client id for its receipts (the oldest forgotten past sentRememberedMax). */
  private rememberSent(clientId: number, message: ChatMessage): void {
    this.sentByClientId.set(clientId, message);
    if (this.sentByClientId.size > sentRememberedMax)
      this.sentByClientId.delete(this.sentByClientId.keys().next().value!);
  }

  /** The server stored our message (serverAck): ✓, plus any receipt that came first. */
  stored(message: ChatMessage, clientId: number): void {
    message.clientId = clientId;
    this.raise(message, "sent");
    this.rememberSent(clientId, message);
    const early = this.early.get(clientId);
    if (early !== undefined) {
      this.early.delete(clientId);
      this.raise(message, early);
    }
  }

  failed(message: ChatMessage, reason: string): void {
    message.mark = "failed";
    message.error = reason;
  }

  /**
   * A message arrived. It counts as unread until its conversation is shown (a message into a conversation nobody
   * opened is delivered, not read).
   */
  incoming(event: IncomingMessage): ChatMessage | null {
    // A message that came again (its ack was lost, or the page reloaded before the ack) is shown once.
    const known = this.conversations.get(event.from)?.messages;
    if (
      known?.some(
        (message) => !message.mine && message.clientId === event.clientId && message.fromDevice === event.fromDevice,
      )
    ) {
      return null;
    }
    const timeMs = event.timeSeconds > 0 ? event.timeSeconds * 1000 : this.now();
    const message = this.add(event.from, timeMs, {
      mine: false,
      text: event.text,
      from: event.from,
      fromDevice: event.fromDevice,
      clientId: event.clientId,
      mark: "delivered",
    });
    if (this.selected !== event.from) this.conversation(event.from).unread++;
    return message;
  }

  /** Applies a delivered/read receipt for our messages; returns whether a mark changed. */
  receipt(event: IncomingReceipt): boolean {
    if (event.senderDevice !== this.device || event.from === this.account) return false;
    const mark: Mark = event.type === "read" ? "read" : "delivered";
    let changed = false;
    for (const clientId of event.clientIds) {
      const message = this.sentByClientId.get(clientId);
      if (message !== undefined) {
        changed = this.raise(message, mark) || changed;
        continue;
      }
      const previous = this.early.get(clientId);
      if (previous === undefined || markRank[mark] > markRank[previous]) this.early.set(clientId, mark);
      if (this.early.size > earlyReceiptsMax) this.early.delete(this.early.keys().next().value!);
    }
    return changed;
  }

  /**
   * The received messages of the shown conversation that have no read receipt yet, grouped by sender device;
   * they count as read from now on (call it when they are on screen).
   */
  takeReadReceipts(): ReadReceipt[] {
    if (this.selected === null) return [];
    const conversation = this.conversations.get(this.selected);
    if (conversation === undefined) return [];
    conversation.unread = 0;
    const byDevice = new Map<string, ReadReceipt>();
    for (const message of conversation.messages) {
      if (message.mine || message.readSent || message.clientId === null) continue;
      message.readSent = true;
      message.mark = "read";
      const key = `${message.from}:${message.fromDevice}`;
      let receipt = byDevice.get(key);
      if (receipt === undefined) {
        receipt = { to: message.from, toDevice: message.fromDevice, clientIds: [] };
        byDevice.set(key, receipt);
      }
      receipt.clientIds.push(message.clientId);
    }
    return [...byDevice.values()];
  }

  private conversation(account: number): Conversation {
    let conversation = this.conversations.get(account);
    if (conversation === undefined) {
      conversation = { account, messages: [], unread: 0, lastActivityMs: this.now() };
      this.conversations.set(account, conversation);
      if (this.conversations.size > conversationsMax) this.dropLeastActive();
    }
    return conversation;
  }

  private dropLeastActive(): void {
    let oldest: Conversation | null = null;
    for (const conversation of this.conversations.values()) {
      if (conversation.account === this.selected) continue;
      if (oldest === null || conversation.lastActivityMs < oldest.lastActivityMs) oldest = conversation;
    }
    if (oldest !== null) this.conversations.delete(oldest.account);
  }

  private add(
    peer: number,
    timeMs: number,
    fields: Pick<ChatMessage, "mine" | "text" | "from" | "fromDevice" | "clientId" | "mark">,
  ): ChatMessage {
    const conversation = this.conversation(peer);
    const message: ChatMessage = { id: this.nextId++, error: null, readSent: false, timeMs, ...fields };
    conversation.messages.push(message);
    if (conversation.messages.length > messagesPerConversationMax) conversation.messages.shift();
    conversation.lastActivityMs = Math.max(conversation.lastActivityMs, this.now());
    return message;
  }

  /** What is kept across reloads: the most active conversations, their last messages, the handles they need. */
  snapshot(): ChatSnapshot {
    const conversations = this.list()
      .slice(0, historyConversationsMax)
      .map((conversation) => ({
        account: conversation.account,
        unread: conversation.unread,
        lastActivityMs: conversation.lastActivityMs,
        messages: conversation.messages
          .slice(-historyMessagesPerConversationMax)
          .map(({ id: _id, ...stored }) => stored),
      }));
    const wanted = new Set([this.account, ...conversations.map((conversation) => conversation.account)]);
    const labels = [...this.labels].sort(([a], [b]) => Number(wanted.has(b)) - Number(wanted.has(a)));
    return {
      version: 1,
      account: this.account,
      device: this.device,
      selected: this.selected !== null && this.conversations.has(this.selected) ? this.selected : null,
      labels: labels.slice(0, historyLabelsMax),
      conversations,
    };
  }

  /**
   * Takes back a snapshot of this device (another device's is ignored; returns whether it was taken). Sends that
   * were still pending are marked failed: the SDK's outbox did not survive the reload.
   */
  restore(snapshot: ChatSnapshot): boolean {
    if (snapshot.version !== 1 || snapshot.account !== this.account || snapshot.device !== this.device) return false;
    for (const [account, handle] of snapshot.labels) if (!this.labels.has(account)) this.labels.set(account, handle);
    for (const stored of [...snapshot.conversations].reverse()) {
      const conversation = this.conversation(stored.account);
      conversation.unread = stored.unread;
      conversation.lastActivityMs = stored.lastActivityMs;
      for (const fields of stored.messages.slice(-messagesPerConversationMax)) {
        const message: ChatMessage = { ...fields, id: this.nextId++ };
        if (message.mark === "pending") {
          message.mark = "failed";
          message.error = lostOnReloadReason;
        }
        conversation.messages.push(message);
        if (message.mine && message.clientId !== null) {
          this.rememberSent(message.clientId, message);
        }
      }
    }
    if (snapshot.selected !== null && this.conversations.has(snapshot.selected)) this.selected = snapshot.selected;
    return true;
  }

  private raise(message: ChatMessage, mark: Mark): boolean {
    if (message.mark === "failed" || markRank[mark] <= markRank[message.mark]) return false;
    message.mark = mark;
    return true;
  }
}
