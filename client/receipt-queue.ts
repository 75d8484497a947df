// Receipts from this device (read, or delivered by hand): best effort, never answered by the server.
// Receipts asked for in one event-loop turn are merged per (type, sender account, sender device, group) and written at the
// end of the turn, after the pending ack (so a sender sees "delivered" before "read" even when the app sends the
// read receipt from inside its message listener), in chunks of receiptClientIdsMax. While disconnected they wait,
// at most receiptsPendingMax stanzas (the oldest are dropped first), and when a session comes back they go out paced
// (receiptsResumeBurst every receiptsResumeIntervalMs), within the server's rate burst.

import type { ReceiptStanza, ReceiptTypeValue } from "../protocol/index.ts";

interface Batch {
  readonly type: ReceiptTypeValue;
  readonly to: number;
  readonly toDevice: number;
  readonly clientIds: number[];
  /** The group of a group message's read receipt (the server gathers those across members), or null. */
  readonly groupId: number | null;
}

export class ReceiptQueue {
  private batch = new Map<string, Batch>();
  private batchIds = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly waiting: ReceiptStanza[] = [];
  /** Runs while a paced resume has stanzas left to write. */
  private resumeTimer: ReturnType<typeof setTimeout> | null = null;

  /** `beforeFlush` writes the pending ack; `write` returns false when no session takes the stanza now. */
  constructor(
    private readonly chunkMax: number,
    private readonly pendingMax: number,
    private readonly beforeFlush: () => void,
    private readonly write: (stanza: ReceiptStanza) => boolean,
    private readonly resumeBurst: number,
    private readonly resumeIntervalMs: number,
  ) {}

  add(
    type: ReceiptTypeValue,
    to: number,
    toDevice: number,
    clientIds: readonly number[],
    groupId: number | null = null,
  ): void {
    const key = `${type}:${to}:${toDevice}:${groupId ?? 0}`;
    let batch = this.batch.get(key);
    if (batch === undefined) {
      batch = { type, to, toDevice, clientIds: [], groupId };
      this.batch.set(key, batch);
    }
    for (const clientId of clientIds) batch.clientIds.push(clientId);
    this.batchIds += clientIds.length;
    if (this.batchIds >= this.pendingMax * this.chunkMax) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), 0);
  }

  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const batches = this.batch;
    this.batch = new Map();
    this.batchIds = 0;
    if (batches.size === 0) return;
    this.beforeFlush();
    for (const { type, to, toDevice, clientIds, groupId } of batches.values()) {
      for (let start = 0; start < clientIds.length; start += this.chunkMax) {
        const stanza: ReceiptStanza = {
          kind: "receipt",
          type,
          to,
          toDevice,
          clientIds: clientIds.slice(start, start + this.chunkMax),
          ...(groupId === null ? {} : { groupId }),
        };
        if (!this.write(stanza)) this.keep(stanza);
      }
    }
  }

  /** A session is up again: write what waited, resumeBurst now and as many again every resumeIntervalMs. */
  resume(): void {
    if (this.resumeTimer === null) this.resumeChunk();
  }

  private resumeChunk(): void {
    this.resumeTimer = null;
    for (let written = 0; written < this.resumeBurst && this.waiting.length > 0; written++) {
      // No session takes it: the rest waits for the next resume.
      if (!this.write(this.waiting[0]!)) return;
      this.waiting.shift();
    }
    if (this.waiting.length > 0) this.resumeTimer = setTimeout(() => this.resumeChunk(), this.resumeIntervalMs);
  }

  clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.resumeTimer !== null) clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    this.batch.clear();
    this.batchIds = 0;
    this.waiting.length = 0;
  }

  private keep(stanza: ReceiptStanza): void {
    this.waiting.push(stanza);
    if (this.waiting.length > this.pendingMax) this.waiting.shift();
  }
}
