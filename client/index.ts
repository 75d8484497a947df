// The public face of client/: the Switchboard client SDK (see client/README.md). The core (everything exported here)
// uses only web platform APIs (WebCrypto, WebSocket, timers, TextEncoder) plus the `Bun` global when the TCP
// transport connects, so it runs in a browser with the WebSocket transport (option `url`). Bun/Node-only helpers
// live beside it and are imported by path: client/key-file.ts (identity in a JSON file) and client/chat.ts (the
// terminal chat, `switchboard chat`).

export { Backoff } from "./backoff.ts";
export { ClientClosedError, ClientError, OutboxFullError, RequestTimeoutError } from "./client-errors.ts";
export type {
  ClientEventMap,
  ClientEventName,
  ClientListener,
  ConnectedEvent,
  DeviceInfo,
  DisconnectedEvent,
  LinkCode,
  LookupResult,
  MessageEvent,
  ReceiptEvent,
  ReceiptTypeName,
} from "./client-events.ts";
export {
  type ClientLimits,
  type ClientOptions,
  defaultClientLimits,
  defaultReconnect,
  type LoginCredentials,
  pingIntervalMsDefault,
  type ReconnectOptions,
} from "./client-options.ts";
export {
  type GroupDevice,
  type GroupInfo,
  type GroupPart,
  type GroupSendOptions,
  groupDevicesHash,
  recipientDevices,
} from "./groups.ts";
export {
  type DeviceKeyPair,
  exportKeyPairJwk,
  exportPrivateKeyPkcs8,
  type GenerateKeyPairOptions,
  generateKeyPair,
  importKeyPairJwk,
  importKeyPairPkcs8,
  sign,
  verify,
} from "./keys.ts";
export { type KnownServerKeys, MemoryServerKeys, parseServerKey, serverKeyHex } from "./known-server-keys.ts";
export {
  decryptMedia,
  encryptMedia,
  MediaError,
  type MediaRef,
  type MediaSession,
  type MediaTransferOptions,
  plaintextSize,
} from "./media.ts";
export type { SendOptions, SendResult } from "./outbox.ts";
export { type ClientPhase, SwitchboardClient } from "./switchboard-client.ts";
export type { Transport, TransportEvents, TransportFactory } from "./transport.ts";
export { type NoiseOptions, NoiseTransport, noiseTransport } from "./transport-noise.ts";
export { TcpTransport, type TcpTransportOptions, tcpTransport } from "./transport-tcp.ts";
export { WebSocketTransport, type WebSocketTransportOptions, webSocketTransport } from "./transport-websocket.ts";
