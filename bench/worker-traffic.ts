// Traffic between pairs of a worker's sessions, in one of two loops:
//   closed: each sender keeps `window` sends written and not yet server-acked to its receiver (until stopped, or
//     until it has sent `messagesPerSender`). The window refills after each read of the sender, so the sends of one
//     read go out in one write with its ack.
//   open (`ratePerSender`): each sender sends on a fixed schedule, staggered across senders, whatever the server
//     answers; the payload carries the scheduled time and the receiver records delivery time minus scheduled time.
//     A tick that runs late sends everything due with its scheduled time, so the worker's own delays and the
//     server's both count (no coordinated omission).

import { LatencyHistogram } from "./latency-histogram.ts";
import type { LatencyReply, TrafficCommand } from "./worker-protocol.ts";
import { nowMs, type Slot, SlotState, type WorkerSessions } from "./worker-sessions.ts";

/** Unanswered sends one open-loop sender may have; past it a scheduled send is skipped and counted (overload). */
export const pacedInFlightMax = 5_000;
/** How often the open loop looks for sends that are due. */
const tickMs = 1;
/** A send written this much after its scheduled time counts as late (the load worker could not keep up). */
const lateSendMs = 5;

interface PacedSender {
  readonly slot: Slot;
  nextAtMs: number;
}

export class Traffic {
  private running = false;
  private window = 0;
  private payload: Uint8Array = new Uint8Array(0);
  private paced: PacedSender[] = [];
  private intervalMs = 0;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private readonly histogram = new LatencyHistogram();
  private skipped = 0;
  private lateSends = 0;

  constructor(
    private readonly sessions: WorkerSessions,
    private readonly random: () => number,
  ) {
    sessions.afterRead = (slot) => {
      if (slot.peer !== 0 && this.paced.length === 0) this.fill(slot);
    };
    sessions.onTimedDelivery = (_slot, payload, atMs) => {
      if (payload.length < 8) return;
      const scheduled = new DataView(payload.buffer, payload.byteOffset, 8).getFloat64(0, true);
      this.histogram.record(atMs - scheduled);
    };
  }

  start(command: TrafficCommand): void {
    this.stop();
    this.payload = new Uint8Array(Math.max(command.payloadBytes, command.ratePerSender ? 8 : 0));
    for (let index = 0; index < this.payload.length; index++) this.payload[index] = Math.floor(this.random() * 256);
    this.window = command.window;
    this.running = true;
    const { slots } = this.sessions;
    for (const [senderIndex, receiverIndex] of command.pairs) {
      const sender = slots[senderIndex]!;
      const receiver = slots[receiverIndex]!;
      if (receiver.account === 0) throw new Error(`receiver ${receiverIndex} has no account yet`);
      sender.peer = receiver.account;
      sender.inFlight = 0;
      sender.sendsLeft = command.messagesPerSender ?? Number.POSITIVE_INFINITY;
      receiver.timed = command.ratePerSender !== undefined && command.ratePerSender !== null;
    }
    if (command.ratePerSender !== undefined && command.ratePerSender !== null) {
      this.intervalMs = 1000 / command.ratePerSender;
      const startMs = nowMs();
      this.paced = command.pairs.map(([senderIndex], index) => ({
        slot: slots[senderIndex]!,
        nextAtMs: startMs + (index / command.pairs.length) * this.intervalMs,
      }));
      this.ticker = setInterval(() => this.tick(), tickMs);
      return;
    }
    for (const [senderIndex] of command.pairs) this.fill(slots[senderIndex]!);
  }

  stop(): void {
    this.running = false;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.paced = [];
  }

  /** The open loop's latencies since the last call, which starts a new recording. */
  latency(): LatencyReply {
    const reply = { histogram: this.histogram.snapshot(), skipped: this.skipped, lateSends: this.lateSends };
    this.histogram.reset();
    this.skipped = 0;
    this.lateSends = 0;
    return reply;
  }

  private tick(): void {
    const now = nowMs();
    const view = new DataView(this.payload.buffer, this.payload.byteOffset, 8);
    for (const sender of this.paced) {
      const { slot } = sender;
      while (sender.nextAtMs <= now && slot.sendsLeft > 0) {
        const scheduled = sender.nextAtMs;
        sender.nextAtMs += this.intervalMs;
        if (slot.state !== SlotState.ready || slot.inFlight >= pacedInFlightMax) {
          this.skipped++;
          continue;
        }
        if (now - scheduled > lateSendMs) this.lateSends++;
        view.setFloat64(0, scheduled, true);
        slot.inFlight++;
        slot.sendsLeft--;
        this.sessions.counters.sent++;
        // encode() copies the payload into the frame, so the one buffer can be rewritten for the next send.
        this.sessions.send(slot, { kind: "send", clientId: slot.nextClientId++, to: slot.peer, payload: this.payload });
      }
    }
  }

  private fill(slot: Slot): void {
    if (!this.running || slot.state !== SlotState.ready) return;
    while (slot.inFlight < this.window && slot.sendsLeft > 0) {
      slot.inFlight++;
      slot.sendsLeft--;
      this.sessions.counters.sent++;
      this.sessions.send(slot, { kind: "send", clientId: slot.nextClientId++, to: slot.peer, payload: this.payload });
    }
  }
}
