// Options of a SwitchboardClient, and the SDK's own limits: every queue the client keeps is bounded by one of them
// (TigerBeetle style: unit last). The wire limits (frame, payload, handle sizes) come from protocol/limits.ts and must
// match the server's; the server announces only frameBytesMax in its challenge.

import { canonicalServerName, defaultLimits, type Limits } from "../protocol/index.ts";
import type { DeviceKeyPair } from "./keys.ts";
import type { TransportFactory } from "./transport.ts";
import type { NoiseOptions } from "./transport-noise.ts";

export interface ClientLimits {
  /** Sends not yet server-acked (written or waiting to be written); send() rejects with OutboxFullError past it. */
  readonly outboxMessagesMax: number;
  /** Payload bytes of those sends. */
  readonly outboxBytesMax: number;
  /** Sends written and not yet answered; more wait in the outbox (bounds a burst after a reconnect). */
  readonly sendsInFlightMax: number;
  /** Requests (lookup, link code, devices, device removal) waiting for their answer. */
  readonly requestsPendingMax: number;
  /** Receipt stanzas queued while disconnected; past it the oldest are dropped (receipts are best effort). */
  readonly receiptsPendingMax: number;
  /**
   * Receipt stanzas that waited, written at once when a session comes back; the rest follow this many at a time every
   * receiptsResumeIntervalMs. With the outbox's window (sendsInFlightMax) and the pending requests this stays within
   * the server's rate burst (rateBurstStanzas, 128): written all at once, a long offline spell's receipts passed it
   * and the session was closed as a flood (PROTOCOL.md section 10, rate limit).
   */
  readonly receiptsResumeBurst: number;
  readonly receiptsResumeIntervalMs: number;
  /** Sender devices whose highest client id is remembered to drop duplicate deliveries (least recent forgotten). */
  readonly duplicateSenderDevicesMax: number;
  /** Unsent bytes a transport keeps; past it the connection is closed as stuck (and reopened). */
  readonly transportBufferedBytesMax: number;
  /** A request unanswered for this long rejects with RequestTimeoutError. */
  readonly requestTimeoutMs: number;
  /** From opening a connection to its welcome; past it the attempt is abandoned and retried with backoff. */
  readonly connectTimeoutMs: number;
}

export const defaultClientLimits: ClientLimits = Object.freeze({
  outboxMessagesMax: 1000,
  outboxBytesMax: 16 * 1024 * 1024,
  sendsInFlightMax: 64,
  requestsPendingMax: 64,
  receiptsPendingMax: 1024,
  // 32 every 250 ms: 128 stanzas a second, within the server's 200 a second with room for sends and acks.
  receiptsResumeBurst: 32,
  receiptsResumeIntervalMs: 250,
  duplicateSenderDevicesMax: 4096,
  transportBufferedBytesMax: 4 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 15_000,
});

export interface ReconnectOptions {
  /** First delay after a lost connection. */
  readonly initialMs: number;
  /** Ceiling of the doubling delay. */
  readonly maxMs: number;
  /** 0..1: the share of each delay that is random (0.5: between half and all of it). */
  readonly jitter: number;
}

export const defaultReconnect: ReconnectOptions = Object.freeze({ initialMs: 500, maxMs: 30_000, jitter: 0.5 });

/** A device that exists: log in with its key. */
export interface LoginCredentials {
  readonly account: number;
  readonly device: number;
  readonly keyPair: DeviceKeyPair;
}

export interface ClientOptions {
  /** TCP server (default 127.0.0.1:7420), unless `url` or `transport` is given. */
  readonly host?: string;
  readonly port?: number;
  /** ws:// or wss:// URL of the server's WebSocket listener: use WebSocket instead of TCP (browsers). */
  readonly url?: string;
  /** Exactly one of credentials, register and link. After a registration or link, reconnects log in. */
  readonly credentials?: LoginCredentials;
  readonly register?: { readonly handle: string; readonly invite?: string | null };
  readonly link?: { readonly code: string };
  /** Key of the new device for register/link; generated when absent (read it back from `client.credentials`). */
  readonly keyPair?: DeviceKeyPair;
  /** Wire limits; must match the server's (default: protocol defaults). */
  readonly limits?: Limits;
  readonly clientLimits?: Partial<ClientLimits>;
  readonly reconnect?: Partial<ReconnectOptions>;
  /** Interval of our keepalive pings; take about half the server's idleTimeoutMs. Default 60 s. */
  readonly pingIntervalMs?: number;
  /** First client id to use (e.g. persisted from a previous run); the welcome raises it past the server's mark. */
  readonly firstClientId?: number;
  /** How bytes travel (default: WebSocket to `url` if given, else TCP to host:port via Bun.connect). */
  readonly transport?: TransportFactory;
  /**
   * TCP only: speak Noise to a listener with `tcpEncryption = "noise"` (PROTOCOL.md section 19). `true` trusts the
   * server's key on first use for this client's life; pass a pinned `serverKey` or a `knownKeys` store to do better.
   */
  readonly noise?: NoiseOptions | true;
  /**
   * The server's name as signed in login, register and link (PROTOCOL.md section 9); the server refuses names that
   * are not its own (wrongServer), so a relay cannot use the signature. Default: the host of `url`, else `host`.
   */
  readonly serverName?: string;
}

export interface ResolvedOptions {
  readonly host: string;
  readonly serverName: string;
  readonly port: number;
  readonly limits: Limits;
  readonly clientLimits: ClientLimits;
  readonly reconnect: ReconnectOptions;
  readonly pingIntervalMs: number;
}

export const pingIntervalMsDefault = 60_000;
/** The server's TCP port when none is given. */
export const portDefault = 7420;

export function resolveOptions(options: ClientOptions): ResolvedOptions {
  const ways = [options.credentials, options.register, options.link].filter((way) => way !== undefined).length;
  if (ways !== 1) throw new TypeError("SwitchboardClient: give exactly one of credentials, register and link");
  const reconnect = { ...defaultReconnect, ...options.reconnect };
  if (!(reconnect.initialMs > 0 && reconnect.maxMs >= reconnect.initialMs && reconnect.jitter >= 0)) {
    throw new TypeError("SwitchboardClient: reconnect needs 0 < initialMs <= maxMs and jitter in 0..1");
  }
  const clientLimits = { ...defaultClientLimits, ...options.clientLimits };
  for (const [name, value] of Object.entries(clientLimits)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`SwitchboardClient: ${name} must be > 0`);
  }
  const pingIntervalMs = options.pingIntervalMs ?? pingIntervalMsDefault;
  if (!(pingIntervalMs > 0)) throw new TypeError("SwitchboardClient: pingIntervalMs must be > 0");
  const host = options.host ?? "127.0.0.1";
  const serverName = canonicalServerName(
    options.serverName ?? (options.url !== undefined ? new URL(options.url).hostname : host),
  );
  if (serverName === "") throw new TypeError("SwitchboardClient: serverName must not be empty");
  return Object.freeze({
    host,
    serverName,
    port: options.port ?? portDefault,
    limits: options.limits ?? defaultLimits,
    clientLimits: Object.freeze(clientLimits),
    reconnect: Object.freeze({ ...reconnect, jitter: Math.min(1, reconnect.jitter) }),
    pingIntervalMs,
  });
}
