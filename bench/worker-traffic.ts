// Traffic between pairs of a worker's sessions: each sender keeps `window` sends written and not yet server-acked
// to its receiver (until stopped, or until it has sent `messagesPerSender`). The window refills after each read of
// the sender, so the sends of one read go out in one write with its ack.

import type { TrafficCommand } from "./worker-protocol.ts";
import { type Slot, SlotState, type WorkerSessions } from "./worker-sessions.ts";

export class Traffic {
  private running = false;
  private window = 0;
  private payload: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly sessions: WorkerSessions,
    private readonly random: () => number,
  ) {
    sessions.afterRead = (slot) => {
      if (slot.peer !== 0) this.fill(slot);
    };
  }

  start(command: TrafficCommand): void {
    this.payload = new Uint8Array(command.payloadBytes);
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
    }
    for (const [senderIndex] of command.pairs) this.fill(slots[senderIndex]!);
  }

  stop(): void {
    this.running = false;
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
