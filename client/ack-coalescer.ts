// Automatic acks. The SDK acks a queue entry after the app's listeners for it have run (and after the promises they
// returned have settled), cumulatively, and coalesced: one ack for the highest sequence seen per event-loop turn
// (a timer of 0 ms runs after every data event of the turn). Acks are chained, so an ack never overtakes an earlier
// entry whose listener is still working, across reconnects too. The chain is bounded by the server's delivery
// window: while an ack is held back the server pushes at most deliveryWindowMessages unacked entries.
//
// An ack belongs to the session whose entries it covers and is never written on another: `newSession` starts a
// new count, and an ack of an earlier session still waiting in the chain is dropped (the server delivers those
// entries again, and they are acked on the session that delivered them). Carrying the highest sequence of one
// connection into the next acked entries of the new session whose listeners had not finished (an outside review
// lost messages that way after a server crash).

export class AckCoalescer {
  private session = 0;
  private highestSeq = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private waits: Array<PromiseLike<unknown>> = [];
  private chain: Promise<void> = Promise.resolve();
  private chained = 0;
  private stopped = false;

  /**
   * `writeAck` sends the ack if a session is up (an ack lost with a connection is harmless: the server delivers
   * those entries again and they are acked again). `onListenerError` hears of promises that rejected.
   */
  constructor(
    private readonly writeAck: (seq: number) => void,
    private readonly onListenerError: (error: unknown) => void,
  ) {}

  /** A session was welcomed: acks from now on cover only its entries. */
  newSession(): void {
    this.session++;
    this.highestSeq = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    // Listeners of the earlier session still run; the chain keeps waiting for them before any later ack.
    if (this.waits.length > 0) {
      const waits = this.waits;
      this.waits = [];
      this.chained++;
      this.chain = this.chain.then(async () => {
        await Promise.allSettled(waits);
        this.chained--;
      });
    }
  }

  /** Entry `seq` was handed to the app; `waits` are the promises its listeners returned. */
  note(seq: number, waits: ReadonlyArray<PromiseLike<unknown>>): void {
    if (this.stopped) return;
    if (seq > this.highestSeq) this.highestSeq = seq;
    for (const wait of waits) this.waits.push(wait);
    this.timer ??= setTimeout(() => this.flush(), 0);
  }

  /** Sends the pending ack now instead of at the end of the turn (so that a read receipt never overtakes it). */
  flushNow(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.flush();
  }

  private flush(): void {
    this.timer = null;
    const seq = this.highestSeq;
    const session = this.session;
    const waits = this.waits;
    this.waits = [];
    if (seq === 0) return;
    if (waits.length === 0 && this.chained === 0) {
      this.writeAck(seq);
      return;
    }
    this.chained++;
    this.chain = this.chain.then(async () => {
      const results = await Promise.allSettled(waits);
      this.chained--;
      try {
        for (const result of results) if (result.status === "rejected") this.onListenerError(result.reason);
        if (!this.stopped && session === this.session) this.writeAck(seq);
      } catch (error) {
        // Never break the chain: later acks must still go out.
        this.onListenerError(error);
      }
    });
  }

  /** The client closed: no more acks. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.waits = [];
  }
}
