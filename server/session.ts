// One session per connected socket: a small object of fixed shape, created in `open` (Bun.listen would otherwise
// share one `data` object between sockets). Buffers exist only while needed: `inbound` holds bytes not yet decoded
// (at most one partial frame, or frames waiting behind an asynchronous handler), `outbound` holds frames queued during
// this event-loop turn plus whatever the socket did not take (Bun's write() keeps nothing).

import type { InboundBytes } from "../protocol/index.ts";
import type { DeviceState } from "./device-state.ts";
import type { WheelEntry } from "./timer-wheel.ts";
import type { TransportSocket } from "./transport.ts";

export const SessionState = Object.freeze({
  /** Waiting for the 4-byte preamble. */
  preamble: 0,
  /** Challenge sent; waiting for login, register or link. */
  authenticating: 1,
  /** Logged in. */
  ready: 2,
  /** Closed or closing: nothing more is read or written. */
  closed: 3,
});
export type SessionStateValue = (typeof SessionState)[keyof typeof SessionState];

let nextSessionId = 1;

export class Session implements WheelEntry, InboundBytes {
  readonly id = nextSessionId++;
  state: SessionStateValue = SessionState.preamble;
  account = 0;
  device = 0;
  /** The device's delivery state, while logged in and not idle (see Delivery.releaseIfIdle). */
  deviceState: DeviceState | null = null;
  /** Logged in, with its idle state released: everything delivered and acknowledged. */
  stateReleased = false;
  /** The token dictionary version the client announced in its preamble (a newer kind is never sent to an older one). */
  dictionaryVersion = 1;
  /** The challenge nonce, until login succeeds (then null: a signature is good for one login). */
  nonce: Uint8Array | null = null;

  inbound: Uint8Array | null = null;
  /** See protocol/inbound-bytes.ts: `inbound` has room to be appended to in place. */
  inboundOwned = false;
  /** Frames to write at the end of this turn, then the unsent tail. */
  outbound: Uint8Array[] | null = null;
  outboundBytes = 0;
  /** An asynchronous handler (a store read) is running; inbound frames wait in order behind it. */
  busy = false;
  /** The session used up its share of this turn: its socket is paused until the next (connection.ts). */
  pausedForTurn = false;

  /** When the last whole frame (or the preamble) arrived: only whole frames count as life. */
  lastInboundAtMs: number;
  /** Until login: when the login deadline falls. */
  loginDueMs = 0;
  /** When the first byte of the partial frame now in `inbound` arrived; 0 when there is none. */
  partialSinceMs = 0;
  /** A keepalive ping went out and no frame has come since. */
  pingOutstanding = false;
  /** Token bucket of the rate limit. */
  rateTokens: number;
  rateRefilledAtMs: number;
  rateViolations = 0;
  /** queueEmpty was sent for this session's drain. */
  queueEmptySent = false;

  wheelNext: WheelEntry | null = null;
  wheelPrev: WheelEntry | null = null;
  wheelSlot = -1;
  wheelDueMs = 0;

  constructor(
    readonly socket: TransportSocket,
    nowMs: number,
    rateBurst: number,
  ) {
    this.lastInboundAtMs = nowMs;
    this.rateTokens = rateBurst;
    this.rateRefilledAtMs = nowMs;
  }

  get isOpen(): boolean {
    return this.state !== SessionState.closed;
  }
}

/**
 * A session as its device's owner sees it when the socket is on another worker (server/routing-mesh.ts): the same
 * fields, with a socket whose writes go to that worker over the mesh. Stanzas come from the edge one at a time, in
 * order, through `chain`.
 */
export class ProxySession extends Session {
  /** The edge's socket holds outboundBytesMax or more: no pushes until it says it is writable again. */
  remoteFull = false;
  /** The handling of the stanzas forwarded so far (each runs after the one before). */
  chain: Promise<void> = Promise.resolve();

  constructor(
    socket: TransportSocket,
    nowMs: number,
    rateBurst: number,
    readonly edge: number,
    /** Which life of the edge's worker index (routing-mesh.ts, MeshRouting.incarnation). */
    readonly incarnation: number,
    readonly edgeSession: number,
  ) {
    super(socket, nowMs, rateBurst);
  }
}
