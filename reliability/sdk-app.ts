// Applications on the SDK for the crash trials: a recipient app whose store survives its own deaths (only its client
// object is dropped), a sender app that keeps a message until its send resolves, and registration helpers. Every
// client reads the server's current port at each connection attempt (the server may come back on another one).

import { ClientClosedError, ClientError } from "../client/client-errors.ts";
import type { LoginCredentials } from "../client/client-options.ts";
import { SwitchboardClient } from "../client/switchboard-client.ts";
import { TcpTransport } from "../client/transport-tcp.ts";
import { WebSocketTransport } from "../client/transport-websocket.ts";
import type { Random } from "../protocol/fuzz.ts";
import { type AppStore, deviceKey, type Ledger, messageKey } from "./ledger.ts";

export const textEncoder = new TextEncoder();
export const textDecoder = new TextDecoder();
const sdkReconnect = { initialMs: 50, maxMs: 400, jitter: 0.5 };
export const setupTimeoutMs = 10_000;

/** Where the server listens now: SDK clients and raw devices read it at each connection attempt. */
export class ServerAddress {
  port = 0;
  /** The WebSocket listener's port (0: none). */
  wsPort = 0;
}

export type TransportKind = "tcp" | "websocket";

function sdkTransport(address: ServerAddress, kind: TransportKind = "tcp") {
  const bufferedBytesMax = 4 * 1024 * 1024;
  if (kind === "websocket") {
    return () => new WebSocketTransport({ url: `ws://127.0.0.1:${address.wsPort}/ws`, bufferedBytesMax });
  }
  return () => new TcpTransport({ host: "127.0.0.1", port: address.port, bufferedBytesMax });
}

export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A recipient application on the SDK: its store survives the app's deaths; its client does not. `storeDelayMaxMs`
 * 0 stores synchronously; `readReceiptPercent` of stored messages get a read receipt right after the store.
 */
export class SdkApp {
  client: SwitchboardClient | null = null;
  private life = 0;
  pendingStores = 0;
  deaths = 0;
  nextClientId = 1;
  welcomes = 0;
  lastDisconnect = "";

  constructor(
    readonly name: string,
    readonly credentials: LoginCredentials,
    readonly store: AppStore,
    private readonly address: ServerAddress,
    private readonly random: Random,
    readonly storeDelayMaxMs: number,
    private readonly readReceiptPercent = 0,
    readonly transportKind: TransportKind = "tcp",
  ) {}

  get online(): boolean {
    return this.client !== null;
  }

  describe(): string {
    const { account, device } = this.credentials;
    return (
      `${this.name} (${account}:${device}, ${this.transportKind}): ${this.client?.phase ?? "not running"}, ` +
      `welcomes ${this.welcomes}, ` +
      `deaths ${this.deaths}, stored ${this.store.storedCount}, last disconnect: ${this.lastDisconnect || "none"}`
    );
  }

  /** Opens a fresh client (the app starts); does not wait for the welcome. */
  start(): SwitchboardClient {
    if (this.client !== null) return this.client;
    const life = ++this.life;
    const client = new SwitchboardClient({
      credentials: this.credentials,
      firstClientId: this.nextClientId,
      transport: sdkTransport(this.address, this.transportKind),
      reconnect: sdkReconnect,
    });
    client.on("message", (message) => {
      const text = textDecoder.decode(message.payload);
      this.store.sawSeq(message.seq, `message ${message.from}:${message.fromDevice}:${message.clientId} ${text}`);
      const key = messageKey(message.from, message.fromDevice, message.clientId);
      if (this.store.handed(key)) return;
      if (this.storeDelayMaxMs === 0) {
        this.store.store(key, text);
        return;
      }
      this.pendingStores++;
      return Bun.sleep(this.random.below(this.storeDelayMaxMs + 1)).then(() => {
        // The app died while storing: the store never happened (and the dead client never acks it).
        if (life !== this.life) return;
        this.pendingStores--;
        this.store.store(key, text);
        // Now and then the user reads it at once: a read receipt goes back to the sender device.
        if (this.random.below(100) < this.readReceiptPercent) {
          client.receipt(message.from, message.fromDevice, [message.clientId], "read");
        }
      });
    });
    client.on("receipt", (receipt) => {
      this.store.sawSeq(
        receipt.seq,
        `receipt ${receipt.type} ${receipt.from}:${receipt.fromDevice}>${receipt.senderDevice} ${receipt.clientIds.join(",")}`,
      );
    });
    client.on("error", () => {}); // refusals are seen through the send promises
    client.on("connected", () => {
      this.welcomes++;
    });
    client.on("disconnected", (event) => {
      this.lastDisconnect = `${event.code ?? "-"} ${event.reason}${event.willReconnect ? "" : " (stopped)"}`;
    });
    this.client = client;
    client.connect().catch(() => {});
    return client;
  }

  /**
   * The app dies ("death") or the user quits it ("quit"): either way its client is dropped without finishing what
   * it was doing; only deaths are counted.
   */
  stop(how: "death" | "quit"): void {
    const client = this.client;
    if (client === null) return;
    this.nextClientId = client.nextClientId;
    this.life++;
    this.pendingStores = 0;
    this.client = null;
    if (how === "death") this.deaths++;
    void client.close();
  }
}

/**
 * A sender on the SDK. Its app keeps every message with the client id it reserved for it (reserveClientId) until the
 * send resolves (in runner memory, which outlives the app), and sends it again after a retry-range refusal. If the
 * app dies with sends unanswered, the fresh client sends them again on its start under the same ids, so the server
 * stores each once (client/README.md: sends that must survive the app's restart).
 */
export class SdkSender {
  /** token -> recipient account and reserved client id (null until first written), in send order: what it owns. */
  private readonly unanswered = new Map<string, { to: number; clientId: number | null }>();

  constructor(
    readonly app: SdkApp,
    private readonly ledger: Ledger,
  ) {}

  get pending(): number {
    return this.unanswered.size;
  }

  send(to: number, token: string): void {
    this.ledger.sent(token, deviceKey(this.app.credentials.account, this.app.credentials.device), to);
    this.unanswered.set(token, { to, clientId: null });
    this.write(to, token, 0);
  }

  /** The app died ("death") with sends in flight: a fresh client comes up after `restartMs` and sends them again. */
  dieAndRestart(restartMs: number, later: (delayMs: number, action: () => void) => void): void {
    this.app.stop("death");
    later(restartMs, () => this.restartIfDown());
  }

  /** Starts the app again if it is down, and sends what it still owns. */
  restartIfDown(): void {
    if (this.app.online) return;
    this.app.start();
    for (const [token, kept] of this.unanswered) this.write(kept.to, token, 0);
  }

  private write(to: number, token: string, attempt: number): void {
    const client = this.app.client;
    if (client === null) return; // the app is down: its restart sends what is unanswered
    const kept = this.unanswered.get(token);
    if (kept === undefined) return;
    kept.clientId ??= client.reserveClientId();
    client.send(to, textEncoder.encode(token), { clientId: kept.clientId }).then(
      (result) => {
        this.unanswered.delete(token);
        this.ledger.acked(token, result.clientId);
      },
      (error: unknown) => {
        if (error instanceof ClientClosedError) return; // the app died; it sends the message again when it restarts
        if (error instanceof ClientError && error.action === "retry" && attempt < 150) {
          this.ledger.retries++;
          setTimeout(() => {
            if (this.app.client === client) this.write(to, token, attempt + 1);
          }, 100);
          return;
        }
        this.unanswered.delete(token);
        this.ledger.refused(token, String(error));
      },
    );
  }
}

export async function registerSdk(address: ServerAddress, handle: string): Promise<LoginCredentials> {
  const client = new SwitchboardClient({
    register: { handle },
    transport: sdkTransport(address),
    reconnect: sdkReconnect,
  });
  try {
    await withTimeout(client.connect(), setupTimeoutMs, `register ${handle}`);
    return client.credentials!;
  } finally {
    await client.close();
  }
}

export async function linkSdk(address: ServerAddress, first: LoginCredentials): Promise<LoginCredentials> {
  const owner = new SwitchboardClient({
    credentials: first,
    transport: sdkTransport(address),
    reconnect: sdkReconnect,
  });
  try {
    await withTimeout(owner.connect(), setupTimeoutMs, "login to link");
    const { code } = await withTimeout(owner.createLinkCode(), setupTimeoutMs, "link code");
    const second = new SwitchboardClient({ link: { code }, transport: sdkTransport(address), reconnect: sdkReconnect });
    try {
      await withTimeout(second.connect(), setupTimeoutMs, "link");
      return second.credentials!;
    } finally {
      await second.close();
    }
  } finally {
    await owner.close();
  }
}
