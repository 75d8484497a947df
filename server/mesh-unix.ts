// The mesh over Unix domain sockets (mesh.ts states the contract). Worker i listens on meshSocketPath(dir, i) and
// connects out to every other worker; it writes only on the links it opened and reads only on the links peers
// opened to it, so each direction is one ordered stream and no tie-break between two simultaneous dials is needed.
//
// A peer is up while both its links are established: our outgoing one connected, and its incoming one past the
// hello. Either link closing takes the peer down and closes the other, so that the next up is a clean pair.
// Outgoing bytes of one event-loop turn go out in one write per peer (a microtask flush); what the socket does not
// take waits for `drain`, bounded by queueBytesMax, past which the peer is stuck and taken down.

import { chmodSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Socket, SocketHandler, SocketListener } from "bun";
import { meshConnectRetryMsMax, meshQueueBytesMax, workersMax } from "../protocol/limits.ts";
import type { Mesh, MeshHandlers, MeshMessage } from "./mesh.ts";
import { MeshEncoder, MeshFrameReader, meshHello, meshHelloSender } from "./mesh-codec.ts";

export interface UnixMeshOptions {
  /** Directory of the sockets: worker i listens on join(dir, `mesh-${i}.sock`). Exists already (mode 0700). */
  readonly dir: string;
  readonly self: number;
  readonly size: number;
  readonly handlers: MeshHandlers;
  /** Called for a fatal mesh fault (garbage from a peer: that is a bug); the server logs it and exits so the supervisor restarts it. Default: throw. */
  readonly fatal?: (reason: string) => void;
  /** Unsent bytes per peer before it counts as stuck. Default meshQueueBytesMax; tests make it small. */
  readonly queueBytesMax?: number;
}

/** The default fatal handler's exception (thrown out of a socket callback, so Bun reports it as uncaught). */
export class MeshFaultError extends Error {
  override readonly name = "MeshFaultError";
}

/** First wait before reconnecting to a peer that is not listening; it doubles up to meshConnectRetryMsMax. */
const connectRetryMsMin = 20;
/** Longest socket path Linux accepts (sun_path is 108 bytes with its terminating zero). */
const socketPathBytesMax = 107;

/** The socket path of worker `index` (also used by tests and docs). */
export function meshSocketPath(dir: string, index: number): string {
  return join(dir, `mesh-${index}.sock`);
}

/** Resolves once listening (not once peers are up). Throws (a bug or a bad setup) on bad options or a failed listen. */
export async function startUnixMesh(options: UnixMeshOptions): Promise<UnixMesh> {
  return new UnixMesh(options);
}

/** State of one outgoing link (Bun.connect gives each socket its own `data`). */
interface OutgoingLink {
  readonly peer: PeerLinks;
}

/** State of one incoming link, set in `open` (the `data` given to Bun.listen would be shared by every socket). */
interface IncomingLink {
  readonly reader: MeshFrameReader;
  /** Known once the hello arrived. */
  sender: number | undefined;
  /** Set by a bad hello found while the reader is still handing out this chunk's frames. */
  fault: string | undefined;
}

type OutgoingSocket = Socket<OutgoingLink>;
type IncomingSocket = Socket<IncomingLink | undefined>;

class PeerLinks {
  outgoing: OutgoingSocket | undefined;
  incoming: IncomingSocket | undefined;
  up = false;
  connecting = false;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  retryMs = connectRetryMsMin;
  /**
   * The part of the last write the socket did not take; written alone on `drain`, without copying it again (one
   * copy per byte, however slowly a peer reads). Set exactly while waiting for `drain`.
   */
  unsent: Uint8Array | undefined;
  /** Frames sent since the last write. */
  frames: Uint8Array[] = [];
  /** Bytes of `unsent` and `frames`, bounded by queueBytesMax. */
  queuedBytes = 0;
  /** In the mesh's list of peers to flush at the end of this turn. */
  dirty = false;

  constructor(
    readonly index: number,
    readonly path: string,
  ) {}

  dropQueue(): void {
    this.unsent = undefined;
    this.frames = [];
    this.queuedBytes = 0;
  }
}

export class UnixMesh implements Mesh {
  readonly self: number;
  readonly size: number;
  /** Socket writes made so far (tests check that a turn's messages to one peer take one write). */
  writes = 0;
  private readonly handlers: MeshHandlers;
  private readonly fatal: (reason: string) => void;
  private readonly queueBytesMax: number;
  private readonly encoder = new MeshEncoder();
  private readonly peers: PeerLinks[] = [];
  /** Every accepted socket, hello seen or not, so that close() reaches them all. */
  private readonly incomingSockets = new Set<IncomingSocket>();
  private readonly listener: SocketListener<IncomingLink | undefined>;
  private dirtyPeers: PeerLinks[] = [];
  private closed = false;

  constructor(options: UnixMeshOptions) {
    const { dir, self, size } = options;
    if (!Number.isInteger(size) || size < 1 || size > workersMax) throw new RangeError(`mesh: size ${size}`);
    if (!Number.isInteger(self) || self < 0 || self >= size) throw new RangeError(`mesh: self ${self} of ${size}`);
    const path = meshSocketPath(dir, self);
    if (Buffer.byteLength(path) > socketPathBytesMax) throw new RangeError(`mesh: socket path too long: ${path}`);
    this.self = self;
    this.size = size;
    this.handlers = options.handlers;
    this.fatal =
      options.fatal ??
      ((reason) => {
        throw new MeshFaultError(reason);
      });
    this.queueBytesMax = options.queueBytesMax ?? meshQueueBytesMax;
    // A socket file left by a worker that died is stale: the supervisor runs one worker per index.
    rmSync(path, { force: true });
    this.listener = Bun.listen<IncomingLink | undefined>({ unix: path, socket: this.incomingHandlers() });
    chmodSync(path, 0o600);
    for (let index = 0; index < size; index++) {
      this.peers.push(new PeerLinks(index, meshSocketPath(dir, index)));
      if (index !== self) this.connect(this.peers[index]!);
    }
  }

  send(peer: number, message: MeshMessage): boolean {
    const links = this.peerLinks(peer);
    if (!links.up) return false;
    const frame = this.encoder.encode(message);
    if (links.queuedBytes + frame.length > this.queueBytesMax) {
      // Stuck: the peer has not read queueBytesMax. peerDown comes from a microtask, never from inside send().
      this.down(links, "later");
      return false;
    }
    links.frames.push(frame);
    links.queuedBytes += frame.length;
    if (!links.dirty) {
      links.dirty = true;
      if (this.dirtyPeers.push(links) === 1) queueMicrotask(() => this.flush());
    }
    return true;
  }

  isUp(peer: number): boolean {
    return peer !== this.self && this.peerLinks(peer).up;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.listener.stop(true);
    for (const links of this.peers) {
      clearTimeout(links.retryTimer);
      links.up = false;
      links.dropQueue();
      links.outgoing?.end();
      links.outgoing = undefined;
      links.incoming = undefined;
    }
    for (const socket of this.incomingSockets) socket.end();
    this.incomingSockets.clear();
  }

  private peerLinks(peer: number): PeerLinks {
    const links = this.peers[peer];
    if (links === undefined || peer === this.self || !Number.isInteger(peer)) {
      throw new RangeError(`mesh: ${peer} is not a peer of worker ${this.self} in a mesh of ${this.size}`);
    }
    return links;
  }

  /** Writes each dirty peer's frames as one buffer, unless an earlier write still waits for `drain`. */
  private flush(): void {
    const dirty = this.dirtyPeers;
    this.dirtyPeers = [];
    for (const links of dirty) {
      links.dirty = false;
      if (links.unsent === undefined) this.writeQueued(links);
    }
  }

  private writeQueued(links: PeerLinks): void {
    const socket = links.outgoing;
    if (socket === undefined) return;
    if (links.unsent !== undefined) {
      const unsent = links.unsent;
      links.unsent = undefined;
      links.queuedBytes -= unsent.length;
      if (!this.write(links, socket, unsent)) return;
    }
    if (links.frames.length === 0) return;
    const frames = links.frames;
    links.frames = [];
    const bytes = frames.length === 1 ? frames[0]! : Buffer.concat(frames, links.queuedBytes);
    links.queuedBytes = 0;
    this.write(links, socket, bytes);
  }

  /** True when the socket took all of `bytes`; otherwise keeps the rest as `unsent` for `drain`. */
  private write(links: PeerLinks, socket: OutgoingSocket, bytes: Uint8Array): boolean {
    // Bun's write takes what the kernel accepts and drops the rest: the rest is ours to keep.
    const written = Math.max(0, socket.write(bytes));
    this.writes++;
    if (written === bytes.length) return true;
    links.unsent = bytes.subarray(written);
    links.queuedBytes += links.unsent.length;
    return false;
  }

  private connect(links: PeerLinks): void {
    if (this.closed || links.connecting || links.outgoing !== undefined || links.retryTimer !== undefined) return;
    links.connecting = true;
    const data: OutgoingLink = { peer: links };
    // connectError handles a failure; the promise's rejection is only caught so it is not reported twice.
    Bun.connect<OutgoingLink>({ unix: links.path, data, socket: this.outgoingHandlers() }).catch(() => {});
  }

  /** Reconnects after the current backoff, which doubles up to meshConnectRetryMsMax until the peer is up. */
  private connectLater(links: PeerLinks): void {
    if (this.closed || links.retryTimer !== undefined) return;
    links.retryTimer = setTimeout(() => {
      links.retryTimer = undefined;
      this.connect(links);
    }, links.retryMs);
    links.retryTimer.unref();
    links.retryMs = Math.min(links.retryMs * 2, meshConnectRetryMsMax);
  }

  private maybeUp(links: PeerLinks): void {
    if (links.up || links.outgoing === undefined || links.incoming === undefined) return;
    links.up = true;
    links.retryMs = connectRetryMsMin;
    this.handlers.peerUp(links.index);
  }

  /** Closes both links of a peer, drops its queue, reconnects, and reports peerDown if it was up. */
  private down(links: PeerLinks, report: "now" | "later"): void {
    const wasUp = links.up;
    const { outgoing, incoming } = links;
    links.up = false;
    links.outgoing = undefined;
    links.incoming = undefined;
    links.dropQueue();
    // Cleared first: Bun runs a socket's close callback inside end(), and it must not find them current.
    outgoing?.end();
    incoming?.end();
    this.connectLater(links);
    if (!wasUp) return;
    if (report === "now") this.handlers.peerDown(links.index);
    else
      queueMicrotask(() => {
        if (!this.closed) this.handlers.peerDown(links.index);
      });
  }

  /** Garbage from a peer: a bug of ours, so the link closes and the worker is told (it exits and is restarted). */
  private garbage(socket: IncomingSocket | OutgoingSocket, links: PeerLinks | undefined, reason: string): void {
    if (links !== undefined && (links.incoming === socket || links.outgoing === socket)) this.down(links, "now");
    else socket.end();
    this.fatal(reason);
  }

  private outgoingHandlers(): SocketHandler<OutgoingLink> {
    return {
      open: (socket) => {
        const links = socket.data.peer;
        links.connecting = false;
        if (this.closed) return void socket.end();
        links.outgoing = socket;
        links.dropQueue();
        links.frames.push(this.encoder.encode(meshHello(this.self, this.size)));
        links.queuedBytes = links.frames[0]!.length;
        this.writeQueued(links);
        this.maybeUp(links);
      },
      connectError: (socket) => {
        const links = socket.data.peer;
        links.connecting = false;
        this.connectLater(links);
      },
      drain: (socket) => {
        const links = socket.data.peer;
        if (this.closed || links.outgoing !== socket) return;
        this.writeQueued(links);
      },
      data: (socket) => {
        // A peer never writes on the links it accepted.
        if (!this.closed) this.garbage(socket, socket.data.peer, "mesh: data on an outgoing link");
      },
      close: (socket) => {
        const links = socket.data.peer;
        if (this.closed || links.outgoing !== socket) return;
        if (links.up) return this.down(links, "now");
        links.outgoing = undefined;
        links.dropQueue();
        this.connectLater(links);
      },
    };
  }

  private incomingHandlers(): SocketHandler<IncomingLink | undefined> {
    return {
      open: (socket) => {
        if (this.closed) return void socket.end();
        socket.data = { reader: new MeshFrameReader(), sender: undefined, fault: undefined };
        this.incomingSockets.add(socket);
      },
      data: (socket, chunk) => {
        const link = socket.data;
        if (this.closed || link === undefined || link.fault !== undefined) return;
        const fault = link.reader.read(chunk, (message) => this.received(socket, link, message)) ?? link.fault;
        if (fault === undefined) return;
        link.fault = fault;
        this.garbage(socket, link.sender === undefined ? undefined : this.peers[link.sender], fault);
      },
      close: (socket) => {
        this.incomingSockets.delete(socket);
        const sender = socket.data?.sender;
        if (this.closed || sender === undefined) return;
        const links = this.peers[sender]!;
        if (links.incoming !== socket) return;
        if (links.up) return this.down(links, "now");
        links.incoming = undefined;
      },
    };
  }

  private received(socket: IncomingSocket, link: IncomingLink, message: MeshMessage): void {
    if (this.closed || link.fault !== undefined) return;
    if (link.sender === undefined) {
      this.hello(socket, link, message);
      return;
    }
    const links = this.peers[link.sender]!;
    // A link that was replaced or taken down may still hold frames in this chunk: at most once, so they are dropped.
    if (links.incoming === socket && links.up) this.handlers.message(link.sender, message);
  }

  private hello(socket: IncomingSocket, link: IncomingLink, message: MeshMessage): void {
    const hello = meshHelloSender(message, this.self, this.size);
    if ("fault" in hello) {
      link.fault = hello.fault;
      return;
    }
    const links = this.peers[hello.sender]!;
    const previous = links.incoming;
    if (previous !== undefined) {
      // A second hello from the same worker: it restarted before we saw its old link close.
      if (links.up) this.down(links, "now");
      else {
        links.incoming = undefined;
        previous.end();
      }
    }
    link.sender = hello.sender;
    links.incoming = socket;
    // The peer is listening now, so there is no point in waiting out a backoff to reach it.
    clearTimeout(links.retryTimer);
    links.retryTimer = undefined;
    this.connect(links);
    this.maybeUp(links);
  }
}
