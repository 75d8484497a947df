// The control protocol between the bench (parent) and its load workers (children): one JSON object per line, the
// parent's commands on the worker's stdin, the worker's replies and events on its stdout. Every command carries an
// id that its one reply repeats; progress events carry none.

import type { ReconnectOptions } from "../client/index.ts";
import type { HistogramSnapshot } from "./latency-histogram.ts";

export interface WorkerInit {
  readonly host: string;
  readonly port: number;
  /**
   * Source addresses of this worker: "127.a.b." followed by 1 for the first connections and one more after each
   * drop, so reconnects never bind an address whose ports sit in TIME_WAIT; null for the default address.
   */
  readonly localAddressPrefix: string | null;
  /** Keys and handles derive from it (device-keys.ts, seed-accounts.ts). */
  readonly runSeed: string;
  /** This worker's devices are key indexes keyFirst .. keyFirst + count - 1. */
  readonly keyFirst: number;
  readonly count: number;
  /** Account id of each device (seeded), or null: register each over the protocol (open registration). */
  readonly accounts: readonly number[] | null;
  /** From opening a socket to its welcome; past it the attempt fails (the SDK's connectTimeoutMs). */
  readonly connectTimeoutMs: number;
  /** Seeds this worker's jitter. */
  readonly randomSeed: number;
  /**
   * Raw TCP, WebSocket over the same sockets (upgrade at wsPath, then binary messages), Noise on raw TCP (an XX
   * handshake, then records: worker-noise.ts; the server's tcpEncryption must be "noise"), or TLS on raw TCP (Bun's
   * TLS client, the server's certificate checked against tlsCa; tcpEncryption "tls").
   */
  readonly transport: Transport;
  readonly wsPath: string;
  /** PEM of the CA that signed the server's certificate (transport "tls"); null otherwise. */
  readonly tlsCa: string | null;
}

export type Transport = "tcp" | "ws" | "noise" | "tls";

export interface TrafficCommand {
  /** [sender, receiver] local slot indexes. */
  readonly pairs: ReadonlyArray<readonly [number, number]>;
  /** Sends each sender keeps written and not yet server-acked. */
  readonly window: number;
  readonly payloadBytes: number;
  /** Stop each sender after this many sends (the offline path); null: until stopTraffic. */
  readonly messagesPerSender: number | null;
  /**
   * Open loop (the rate scenario): each sender sends this many messages a second on a fixed schedule, whatever the
   * server's answers, and `window` is not used; the payload carries the scheduled time, and the receiver records
   * delivery time minus scheduled time (so a stalled server or worker cannot hide its delay: no coordinated
   * omission). Absent or null: the closed loop of `window`.
   */
  readonly ratePerSender?: number | null;
}

/** The open-loop latencies a worker recorded since its last `latency` command (which resets them). */
export interface LatencyReply {
  readonly histogram: HistogramSnapshot;
  /** Scheduled sends not written because the sender already had pacedInFlightMax unanswered ones. */
  readonly skipped: number;
  /** Sends written later than 5 ms after their scheduled time (the worker itself fell behind). */
  readonly lateSends: number;
}

export type WorkerCommand =
  | ({ readonly cmd: "init" } & WorkerInit)
  | {
      readonly cmd: "connect";
      /** Local slots to connect and log in (null: every slot not connected). */
      readonly slots: readonly number[] | null;
      /** Attempts in flight at once (connect .. welcome). */
      readonly concurrency: number;
      readonly deadlineMs: number;
    }
  | {
      readonly cmd: "plain";
      readonly host: string;
      readonly port: number;
      /** Upgrade each plain socket to WebSocket at this path (handshake only, then idle); null: raw TCP. */
      readonly wsPath: string | null;
      readonly count: number;
      readonly concurrency: number;
      readonly deadlineMs: number;
    }
  | { readonly cmd: "closePlain" }
  | ({ readonly cmd: "traffic" } & TrafficCommand)
  | { readonly cmd: "stopTraffic" }
  | { readonly cmd: "latency" }
  | { readonly cmd: "report" }
  | {
      readonly cmd: "drop";
      readonly slots: readonly number[] | null;
      /** Reset (RST) instead of a graceful close (FIN). */
      readonly abort: boolean;
    }
  | {
      readonly cmd: "reconnect";
      readonly slots: readonly number[] | null;
      readonly backoff: ReconnectOptions;
      readonly deadlineMs: number;
    }
  | {
      readonly cmd: "probeStart";
      readonly a: number;
      readonly b: number;
      readonly intervalMs: number;
      readonly timeoutMs: number;
      readonly maxDurationMs: number;
      readonly payloadBytes: number;
    }
  | { readonly cmd: "probeStop" }
  | { readonly cmd: "quit" };

export type WorkerRequest = WorkerCommand & { readonly id: number };

/** Counters of one worker since it started (the parent takes differences). */
export interface WorkerCounters {
  /** Epoch milliseconds (fractional) when the snapshot was taken. */
  readonly atMs: number;
  readonly ready: number;
  readonly logins: number;
  readonly connectAttempts: number;
  readonly failedAttempts: number;
  readonly sent: number;
  readonly serverAcked: number;
  /** Sends answered with an error (rate limited, queue full, ...) instead of a server-ack. */
  readonly sendRefused: number;
  readonly delivered: number;
  readonly duplicates: number;
  readonly receiptFrames: number;
  readonly receiptClientIds: number;
  readonly acksSent: number;
  readonly firstDeliverAtMs: number;
  readonly lastDeliverAtMs: number;
  readonly lastServerAckAtMs: number;
  readonly lastReceiptAtMs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Error frames and goaways received, by code. */
  readonly errorCodes: Readonly<Record<string, number>>;
  readonly goawayCodes: Readonly<Record<string, number>>;
  /** Sockets that closed while the session was ready, without the bench closing them. */
  readonly unexpectedCloses: number;
  readonly plainOpen: number;
  /** CPU seconds this worker process has used. */
  readonly cpuSeconds: number;
}

export interface ConnectReply {
  readonly startedAtMs: number;
  readonly lastReadyAtMs: number;
  readonly requested: number;
  readonly ready: number;
  readonly failed: number;
  /** Connect-to-welcome times in ms of this worker's sessions (bounded sample). */
  readonly loginMs: readonly number[];
  readonly failures: Readonly<Record<string, number>>;
}

export interface PlainReply {
  readonly startedAtMs: number;
  readonly lastOpenAtMs: number;
  readonly open: number;
  readonly failed: number;
}

export interface ReconnectReply {
  readonly startedAtMs: number;
  readonly firstAttemptAtMs: number;
  readonly lastBackAtMs: number;
  readonly requested: number;
  readonly back: number;
  /** Sessions not back by the deadline, or refused for good (a stop-range code). */
  readonly failed: number;
  readonly attempts: number;
  /** Attempts that failed and were retried with backoff. */
  readonly retried: number;
  readonly failures: Readonly<Record<string, number>>;
}

export interface DropReply {
  readonly atMs: number;
  readonly dropped: number;
}

export interface ProbeReply {
  /** [epoch ms when the probe was sent, round trip in ms] */
  readonly samples: ReadonlyArray<readonly [number, number]>;
  readonly lost: number;
}

export type WorkerEvent =
  | { readonly event: "reply"; readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly event: "reply"; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly event: "progress"; readonly ready: number; readonly failed: number; readonly plainOpen: number };
