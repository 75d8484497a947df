// The latency probe inside a worker: session A sends a numbered payload to B, B sends the same bytes back the moment
// they are delivered, and the round trip is from A's send to A's delivery of the echo. One probe in flight at a
// time; the next goes out `intervalMs` after the previous was sent; one unanswered for `timeoutMs` counts as lost.

import type { ProbeReply } from "./worker-protocol.ts";
import { nowMs, type Slot, SlotState, type WorkerSessions } from "./worker-sessions.ts";

const probeSamplesMax = 200_000;
const watchdogIntervalMs = 50;

export interface ProbeCommand {
  readonly a: number;
  readonly b: number;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly maxDurationMs: number;
  readonly payloadBytes: number;
}

export class Probe {
  private readonly a: Slot;
  private readonly b: Slot;
  private readonly payload: Uint8Array;
  private readonly endsAtMs: number;
  private number = 0;
  private outstanding = false;
  private sentAtMs = 0;
  private lost = 0;
  /** [sent at, round trip] pairs, flat. */
  private readonly samples: number[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly watchdog: ReturnType<typeof setInterval>;
  private stopped = false;

  constructor(
    private readonly sessions: WorkerSessions,
    private readonly command: ProbeCommand,
  ) {
    this.a = sessions.slots[command.a]!;
    this.b = sessions.slots[command.b]!;
    if (this.a.state !== SlotState.ready || this.b.state !== SlotState.ready) {
      throw new Error("probe sessions are not logged in");
    }
    this.a.probed = true;
    this.b.probed = true;
    sessions.onProbeDelivery = (slot, payload, atMs) => this.delivered(slot, payload, atMs);
    this.payload = new Uint8Array(Math.max(4, command.payloadBytes));
    this.endsAtMs = nowMs() + command.maxDurationMs;
    this.watchdog = setInterval(() => {
      if (this.outstanding && nowMs() - this.sentAtMs > command.timeoutMs) {
        this.outstanding = false;
        this.lost++;
        this.send();
      }
    }, watchdogIntervalMs);
    this.send();
  }

  private send(): void {
    this.timer = null;
    if (this.stopped || nowMs() > this.endsAtMs || this.samples.length >= probeSamplesMax * 2) return;
    this.number++;
    new DataView(this.payload.buffer).setUint32(0, this.number);
    this.outstanding = true;
    this.sentAtMs = nowMs();
    const clientId = this.a.nextClientId++;
    this.sessions.send(this.a, { kind: "send", clientId, to: this.b.account, payload: this.payload });
  }

  private delivered(slot: Slot, payload: Uint8Array, atMs: number): void {
    if (this.stopped || payload.length < 4) return;
    if (slot === this.b) {
      // The echo: the same bytes straight back.
      const clientId = slot.nextClientId++;
      this.sessions.send(slot, { kind: "send", clientId, to: this.a.account, payload: payload.slice() });
      return;
    }
    if (slot !== this.a || !this.outstanding) return;
    const number = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
    if (number !== this.number) return;
    this.outstanding = false;
    this.samples.push(this.sentAtMs, atMs - this.sentAtMs);
    const wait = Math.max(0, this.sentAtMs + this.command.intervalMs - nowMs());
    this.timer = setTimeout(() => this.send(), wait);
  }

  /** Stops probing; a probe still in flight was cut off, not lost, and is not counted. */
  stop(): ProbeReply {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    clearInterval(this.watchdog);
    this.a.probed = false;
    this.b.probed = false;
    this.sessions.onProbeDelivery = null;
    const samples: Array<readonly [number, number]> = [];
    for (let index = 0; index + 1 < this.samples.length; index += 2) {
      samples.push([this.samples[index]!, this.samples[index + 1]!]);
    }
    return { samples, lost: this.lost };
  }
}
