// The mesh between the worker processes of one host: one link per ordered pair of workers, carrying plain
// messages through handlers the worker registers (the centrifuge Broker seam: events to a handler, never objects).
//
// Delivery guarantee: AT MOST ONCE, IN ORDER PER SENDER. Messages from worker i to worker j arrive in the order i
// sent them (one stream per direction). A message is lost when its link dies (the peer crashed, restarts, or was
// stuck past meshQueueBytesMax): there is no retransmission and no acknowledgement, so whoever needs more (a
// request that must be answered) keeps its own timeout and reacts to peerDown. Between peerUp(j) and the next
// peerDown(j) every message j sent after its own peerUp arrives, unless the link dies first.
//
// Implementations: mesh-unix.ts (Unix domain sockets; framing in mesh-codec.ts).

/** One message between workers: a plain object, msgpack-encodable (numbers, strings, booleans, null, Uint8Array, arrays, plain objects). `t` names its kind. */
export interface MeshMessage {
  readonly t: string;
  readonly [field: string]: unknown;
}

/**
 * The worker's side of the mesh. Handlers must not throw: an exception escapes the socket callback (a bug, which
 * Bun reports as uncaught). They may call send() and isUp() freely; send() never calls a handler synchronously.
 */
export interface MeshHandlers {
  /**
   * A message from `from`, in the order that peer sent it. Called synchronously from the socket's data callback,
   * only while `from` is up. Uint8Array fields are views into the received chunk: copy one that is kept for long,
   * or it keeps the whole chunk (up to a few hundred KiB) alive.
   */
  message(from: number, message: MeshMessage): void;
  /** Both directions to `peer` are connected (first time, or again after the peer restarted). */
  peerUp(peer: number): void;
  /** A link to `peer` closed (the peer died, restarts, or was stuck past meshQueueBytesMax). Messages queued for it are dropped. */
  peerDown(peer: number): void;
}

export interface Mesh {
  /** This worker's index, 0..size-1. */
  readonly self: number;
  /** Workers in the mesh (this one included). */
  readonly size: number;
  /** Queues `message` for `peer` (written at the end of this event-loop turn, batched with the turn's others). False, and nothing queued, when the peer is not up. */
  send(peer: number, message: MeshMessage): boolean;
  isUp(peer: number): boolean;
  /** Closes every link and the listener; peers see peerDown. This worker's own handlers are not called. */
  close(): void;
}
