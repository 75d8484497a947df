// The events a SwitchboardClient emits, typed, and a small listener registry (no Node EventEmitter: the SDK core
// must run in browsers). A listener that throws does not stop the others; the error goes to `error` listeners.

import type { DeviceInfo } from "../protocol/index.ts";

export type ReceiptTypeName = "delivered" | "read";

export interface MessageEvent {
  /** Position in this device's queue (acked by the SDK). */
  readonly seq: number;
  readonly from: number;
  readonly fromDevice: number;
  /** The sender device's id of this message: with from/fromDevice, the message's identity. */
  readonly clientId: number;
  /** When the server accepted the message (seconds since the epoch). */
  readonly timeSeconds: number;
  /** Opaque bytes (end-to-end encrypted by the app). A view of a buffer that is never reused. */
  readonly payload: Uint8Array;
}

export interface ReceiptEvent {
  readonly seq: number;
  readonly type: ReceiptTypeName;
  /** The device that received or read the messages. */
  readonly from: number;
  readonly fromDevice: number;
  /** Our device whose client ids these are (may be another device of ours). */
  readonly senderDevice: number;
  readonly clientIds: readonly number[];
  readonly timeSeconds: number;
}

export interface ConnectedEvent {
  readonly account: number;
  readonly device: number;
  /** Highest client id of this device the server has stored. */
  readonly lastClientId: number;
  /** One-time prekeys the server's key directory holds for this device (a server of dictionary 3 tells it). */
  readonly oneTimePreKeysLeft?: number;
}

export interface DisconnectedEvent {
  /** The error or goaway code that ended the session, when the server gave one. */
  readonly code?: number;
  readonly reason: string;
  readonly willReconnect: boolean;
  /** The delay before the next attempt, when willReconnect. */
  readonly retryInMs?: number;
}

/** The server says this device's one-time prekeys run low (PROTOCOL.md section 16): upload more. */
export interface KeysLowEvent {
  readonly oneTimePreKeysLeft: number;
  readonly threshold: number;
}

/** A queued event: device `device` of `account`, whose keys this account fetched, has a new identity key. */
export interface IdentityChangeEvent {
  readonly seq: number;
  readonly account: number;
  readonly device: number;
  readonly timeSeconds: number;
}

/** A queued group message (PROTOCOL.md section 18): the shared payload, and this device's own part if any. */
export interface GroupMessageEvent extends MessageEvent {
  readonly groupId: number;
  readonly part: Uint8Array | null;
}

/** A queued membership event of a group, in the order the group's owner applied them. */
export interface GroupEventEvent {
  readonly seq: number;
  readonly groupId: number;
  readonly version: number;
  /** A GroupOp name: create, add, remove, promote, demote, leave, rename. */
  readonly op: string;
  readonly actor: number;
  readonly actorDevice: number;
  readonly accounts: readonly number[];
  readonly name: Uint8Array | null;
  readonly timeSeconds: number;
}

/** Delivered receipts of one group message from several member devices (gathered by the server). */
export interface GroupReceiptEvent {
  readonly seq: number;
  readonly type: ReceiptTypeName;
  readonly groupId: number;
  readonly senderDevice: number;
  readonly clientId: number;
  readonly readers: ReadonlyArray<{ readonly account: number; readonly device: number }>;
  readonly timeSeconds: number;
}

export interface ClientEventMap {
  message: MessageEvent;
  receipt: ReceiptEvent;
  queueEmpty: undefined;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  error: Error;
  keysLow: KeysLowEvent;
  identityChange: IdentityChangeEvent;
  groupMessage: GroupMessageEvent;
  groupEvent: GroupEventEvent;
  groupReceipt: GroupReceiptEvent;
}

export type ClientEventName = keyof ClientEventMap;
/** A `message` listener may return a promise: the SDK acks the message only after it settles. */
export type ClientListener<K extends ClientEventName> = (event: ClientEventMap[K]) => unknown;

export interface LookupResult {
  /** null when no account has the handle. */
  readonly account: number | null;
  readonly devices: readonly number[];
}

export interface LinkCode {
  readonly code: string;
  readonly expiresAtSeconds: number;
}

export type { DeviceInfo };

export class ClientEvents {
  private readonly listeners: { [K in ClientEventName]: Array<ClientListener<K>> } = {
    message: [],
    receipt: [],
    queueEmpty: [],
    connected: [],
    disconnected: [],
    error: [],
    keysLow: [],
    identityChange: [],
    groupMessage: [],
    groupEvent: [],
    groupReceipt: [],
  };

  on<K extends ClientEventName>(name: K, listener: ClientListener<K>): () => void {
    this.listeners[name].push(listener);
    return () => this.off(name, listener);
  }

  off<K extends ClientEventName>(name: K, listener: ClientListener<K>): void {
    const list = this.listeners[name];
    const index = list.indexOf(listener);
    if (index >= 0) list.splice(index, 1);
  }

  /** Calls every listener in order; returns the promises some of them returned (the caller may wait for them). */
  emit<K extends ClientEventName>(name: K, event: ClientEventMap[K]): Array<PromiseLike<unknown>> {
    const waits: Array<PromiseLike<unknown>> = [];
    for (const listener of [...this.listeners[name]]) {
      try {
        const result = listener(event);
        if (isThenable(result)) waits.push(result);
      } catch (error) {
        this.reportListenerError(name, error);
      }
    }
    return waits;
  }

  reportListenerError(name: ClientEventName, error: unknown): void {
    if (name === "error") return; // an error listener that throws has nobody left to tell
    const wrapped = error instanceof Error ? error : new Error(String(error));
    this.emit("error", wrapped);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}
