// A well-behaved sender and receiver (raw-device.ts) doing send -> deliver -> ack round trips at a steady pace while
// something else attacks the server. It measures each round trip (send written to deliver read, one clock: both
// ends live in this process), notes the longest gap without a completed round trip, and at the end says whether any
// server-acked probe message never reached the receiver.

import { defaultLimits } from "../protocol/index.ts";
import { newDeviceKey, RawClient } from "../server/test-kit.ts";
import { deviceKey, Ledger } from "./ledger.ts";
import { RawDevice } from "./raw-device.ts";

export interface RoundTrip {
  /** When the message was written (performance.now()). */
  readonly sentAtMs: number;
  readonly roundTripMs: number;
}

/** Registers a fresh account on its own connection; returns its id and key. */
export async function registerAccount(
  port: number,
  handle: string,
): Promise<{ account: number; key: ReturnType<typeof newDeviceKey> }> {
  const client = await RawClient.connect(port, { limits: defaultLimits });
  try {
    const key = newDeviceKey();
    const welcome = await client.register(handle, key);
    return { account: welcome.account, key };
  } finally {
    client.close();
  }
}

export class ProbePair {
  readonly roundTrips: RoundTrip[] = [];
  readonly ledger = new Ledger();
  private readonly sentAt = new Map<string, number>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private sequence = 0;
  private lastRoundTripAtMs = 0;
  private longestGapMs = 0;
  /** Sessions the probe devices lost (each should keep one session throughout). */
  disconnects = 0;
  readonly closeCodes: Array<number | null> = [];

  private constructor(
    readonly sender: RawDevice,
    readonly receiver: RawDevice,
    private readonly receiverAccount: number,
  ) {}

  static async create(port: () => number, prefix: string): Promise<ProbePair> {
    const source = await registerAccount(port(), `${prefix}-probe-a`);
    const target = await registerAccount(port(), `${prefix}-probe-b`);
    let pair: ProbePair | null = null;
    const onClosed = (code: number | null) => {
      if (pair === null) return;
      pair.disconnects++;
      if (pair.closeCodes.length < 20) pair.closeCodes.push(code);
    };
    const sender = new RawDevice({
      account: source.account,
      device: 1,
      key: source.key,
      port,
      events: {
        serverAck: (token, clientId) => pair?.ledger.acked(token, clientId),
        refused: (token, code) => pair?.ledger.refused(token, `error ${code}`),
        closed: onClosed,
      },
    });
    const receiver = new RawDevice({
      account: target.account,
      device: 1,
      key: target.key,
      port,
      events: {
        inbound: (stanza) => {
          if (stanza.kind !== "deliver" || pair === null) return;
          const token = new TextDecoder().decode(stanza.payload);
          const store = pair.ledger.store(deviceKey(target.account, 1));
          store.sawSeq(stanza.seq, `${stanza.from}:${stanza.fromDevice}:${stanza.clientId} ${token}`);
          // Others (fuzzers, flooders) may send to the receiver too: their messages count for the seq check only.
          if (stanza.from !== source.account) return;
          const key = `${stanza.from}:${stanza.fromDevice}:${stanza.clientId}`;
          if (!store.handed(key)) store.store(key, token);
          const sentAt = pair.sentAt.get(token);
          if (sentAt === undefined) return;
          pair.sentAt.delete(token);
          const now = performance.now();
          pair.roundTrips.push({ sentAtMs: sentAt, roundTripMs: now - sentAt });
          pair.longestGapMs = Math.max(pair.longestGapMs, now - pair.lastRoundTripAtMs);
          pair.lastRoundTripAtMs = now;
        },
        closed: onClosed,
      },
    });
    pair = new ProbePair(sender, receiver, target.account);
    pair.ledger.addDevice(source.account, 1);
    pair.ledger.addDevice(target.account, 1);
    sender.start();
    receiver.start();
    const deadline = Date.now() + 10_000;
    while (!sender.isReady || !receiver.isReady) {
      if (Date.now() > deadline) throw new Error("probe pair did not log in within 10 s");
      await Bun.sleep(5);
    }
    pair.disconnects = 0;
    pair.closeCodes.length = 0;
    return pair;
  }

  get receiverAccountId(): number {
    return this.receiverAccount;
  }

  /** Sends one probe message every intervalMs until stop(). */
  start(intervalMs: number): void {
    this.lastRoundTripAtMs = performance.now();
    this.timer = setInterval(() => this.sendOne(), intervalMs);
  }

  sendOne(): void {
    const token = `probe ${++this.sequence}`;
    this.ledger.sent(token, deviceKey(this.sender.account, this.sender.device), this.receiverAccount);
    this.sentAt.set(token, performance.now());
    this.sender.send(this.receiverAccount, token);
  }

  stopSending(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Waits (bounded) until every probe sent is answered and every acked one delivered. */
  async settle(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.sender.pending === 0 && this.ledger.unsettled === 0 && this.ledger.complete()) return true;
      await Bun.sleep(20);
    }
    return false;
  }

  /** Round trips of messages sent in [fromMs, toMs). */
  between(fromMs: number, toMs: number): number[] {
    return this.roundTrips
      .filter((trip) => trip.sentAtMs >= fromMs && trip.sentAtMs < toMs)
      .map((trip) => trip.roundTripMs);
  }

  /** The longest time without a completed round trip so far (including the time since the last one). */
  get longestStallMs(): number {
    return Math.max(this.longestGapMs, this.timer === null ? 0 : performance.now() - this.lastRoundTripAtMs);
  }

  stop(): void {
    this.stopSending();
    this.sender.stop();
    this.receiver.stop();
  }
}
