// Drops deliveries the app has already seen. The server delivers at least once: an entry pushed and not acked
// before a connection dropped comes again on the next one. Each message carries its sender's id (account, device,
// client id), and the filter remembers exact ids: per sender device, the highest client id seen and a window of
// which of the clientIdWindowIds ids up to it were seen.
//
// Why a window and not one number per sender device: client ids of one sender device do not always reach a
// recipient in increasing order. A send refused for now (rateLimited, queueFull, busy) may be retried later with
// its own id, after higher ids of the same sender were stored; the server then stores it behind them (order is the
// order of server-acks, PROTOCOL.md section 11). A "highest id seen" filter dropped such a message although the
// sender had its server-ack (found by an outside review). The window is exact: the server never stores a new id
// clientIdWindowIds or more below the highest id it stored for that sender device (it answers clientIdReused),
// and a recipient's highest seen id is at most that, so an id below the window was necessarily seen (or was never
// stored): it is dropped.
//
// A duplicate whose first copy is still in the app's listeners (a store that has not finished) must not be acked
// before that store ends, or the server deletes an entry the app may never finish storing. `admit` therefore hands
// back the first copy's pending work, and the caller makes the ack wait for it.
//
// Memory is bounded by duplicateSenderDevicesMax sender devices; the least recently heard is forgotten first. The
// pending map holds one entry per message whose listeners are running; it empties as they settle.

/** Ids covered below and including the highest seen one (the server's resend window, PROTOCOL.md section 11). */
export const duplicateWindowIds = 64;
const windowMask = (1n << BigInt(duplicateWindowIds)) - 1n;

interface SenderWindow {
  highest: number;
  /** Bit k: id highest - k was seen. */
  seen: bigint;
}

export type Admission =
  | { readonly duplicate: false }
  | { readonly duplicate: true; readonly pending: PromiseLike<unknown> | null };

export class DuplicateFilter {
  /** "account:device" -> window; insertion order is recency (touched entries move to the end). */
  private readonly windows = new Map<string, SenderWindow>();
  /** "account:device:clientId" -> the first copy's listeners, while they run. */
  private readonly pending = new Map<string, PromiseLike<unknown>>();

  constructor(private readonly senderDevicesMax: number) {}

  /** Records the message if it is new; otherwise says so, with the first copy's unfinished work if any. */
  admit(from: number, fromDevice: number, clientId: number): Admission {
    const key = `${from}:${fromDevice}`;
    const window = this.windows.get(key);
    if (window !== undefined && seenIn(window, clientId)) {
      return { duplicate: true, pending: this.pending.get(`${key}:${clientId}`) ?? null };
    }
    const next = window ?? { highest: 0, seen: 0n };
    mark(next, clientId);
    this.windows.delete(key);
    this.windows.set(key, next);
    if (this.windows.size > this.senderDevicesMax) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
    return { duplicate: false };
  }

  /** The listeners of a new message are running; a duplicate's ack waits for `work` until it settles. */
  track(from: number, fromDevice: number, clientId: number, work: PromiseLike<unknown>): void {
    const key = `${from}:${fromDevice}:${clientId}`;
    this.pending.set(key, work);
    const forget = () => {
      if (this.pending.get(key) === work) this.pending.delete(key);
    };
    work.then(forget, forget);
  }

  /** True when this message was seen before; records it otherwise (no pending tracking). */
  isDuplicate(from: number, fromDevice: number, clientId: number): boolean {
    return this.admit(from, fromDevice, clientId).duplicate;
  }

  get senderDevices(): number {
    return this.windows.size;
  }

  get pendingMessages(): number {
    return this.pending.size;
  }
}

function seenIn(window: SenderWindow, clientId: number): boolean {
  if (clientId > window.highest) return false;
  const offset = window.highest - clientId;
  // Below the window: the server would have refused a new id this old, so this one was seen.
  if (offset >= duplicateWindowIds) return true;
  return ((window.seen >> BigInt(offset)) & 1n) === 1n;
}

function mark(window: SenderWindow, clientId: number): void {
  if (clientId > window.highest) {
    const shift = clientId - window.highest;
    window.seen = shift >= duplicateWindowIds ? 1n : ((window.seen << BigInt(shift)) | 1n) & windowMask;
    window.highest = clientId;
    return;
  }
  window.seen |= 1n << BigInt(window.highest - clientId);
}
