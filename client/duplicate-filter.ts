// Drops deliveries the app has already seen. The server delivers at least once: a message pushed and not acked
// before a connection dropped comes again on the next one, and a sender's retry is stored once but a server crash
// between the push and the commit can let the retried copy through. Each message carries its sender's id
// (account, device, client id); client ids of one sender device reach one recipient device in increasing order
// (DESIGN.md contract 2: messages keep the order in which the server acknowledged them, and a device's client ids
// increase in that order). So one number per sender device, the highest client id seen, recognises every
// duplicate. Sequence numbers cannot be used: an entry pushed before its commit and lost in a server crash frees
// its sequence for a different message.
//
// Memory is bounded by duplicateSenderDevicesMax sender devices; the least recently heard is forgotten first.

export class DuplicateFilter {
  /** "account:device" -> highest client id seen; insertion order is recency (touched entries move to the end). */
  private readonly highest = new Map<string, number>();

  constructor(private readonly senderDevicesMax: number) {}

  /** True when this message was seen before (drop it, but still ack it); otherwise records it. */
  isDuplicate(from: number, fromDevice: number, clientId: number): boolean {
    const key = `${from}:${fromDevice}`;
    const seen = this.highest.get(key);
    if (seen !== undefined && clientId <= seen) return true;
    this.highest.delete(key);
    this.highest.set(key, clientId);
    if (this.highest.size > this.senderDevicesMax) {
      const oldest = this.highest.keys().next().value;
      if (oldest !== undefined) this.highest.delete(oldest);
    }
    return false;
  }

  get senderDevices(): number {
    return this.highest.size;
  }
}
