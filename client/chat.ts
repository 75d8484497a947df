// `switchboard chat`: a terminal chat on the client SDK, line by line (no full-screen UI), for trying a server
// from two terminals. The device's identity (private key, account, device, handle, next client id) lives in a key
// file. Payloads are the UTF-8 text, NOT encrypted: a real app encrypts end to end; the server never reads them.

import { createInterface } from "node:readline";
import { ClientError } from "./client-errors.ts";
import type { MessageEvent, ReceiptEvent } from "./client-events.ts";
import type { ClientOptions } from "./client-options.ts";
import { type DeviceIdentity, KeyFileError, keyFileExists, readKeyFile, writeKeyFile } from "./key-file.ts";
import { SwitchboardClient } from "./switchboard-client.ts";

export const chatUsage = `switchboard chat [options]

A terminal chat client. Messages are sent as plain UTF-8: this demo does NOT encrypt them (a real app encrypts
end to end; the server treats every payload as opaque bytes and never reads it).

Options:
  --host <address>      server address (default 127.0.0.1)
  --port <port>         server port (default 7420)
  --url <ws-url>        connect over WebSocket instead (e.g. ws://127.0.0.1:7422/ws)
  --key-file <path>     this device's identity (default ./.switchboard-key.json; holds the private key)
  --register <handle>   create an account (with --invite <code> when the server wants one)
  --link <code>         join an existing account as a new device (get a code with /link on a device of it)

Commands:
  /to <handle>          talk to this user
  /reply                talk to whoever sent the last message
  /link                 print a code that links another device to this account
  /devices              list this account's devices
  /help                 this text
  /quit                 leave (also end of input)
  anything else         is sent to the current peer

Marks on your messages: ✓ sent (the server stored it), ✓✓ delivered (a device of the peer has it), read.`;

export const defaultKeyFile = "./.switchboard-key.json";
/** How long /quit waits for unacknowledged sends before leaving anyway. */
const quitFlushMs = 3000;
/** Own messages remembered for their marks (the oldest are forgotten). */
const sentRememberedMax = 1000;
const previewCharsMax = 24;

export interface ChatIo {
  /** Lines typed by the user (without the newline); the end of the iteration means quit. */
  readonly lines: AsyncIterable<string>;
  print(line: string): void;
}

export function terminalIo(): ChatIo {
  const input = createInterface({ input: process.stdin, terminal: false });
  return { lines: input, print: (line) => void process.stdout.write(`${line}\n`) };
}

interface Flags {
  readonly values: Map<string, string>;
  readonly unknown: string[];
}

const knownFlags = new Set(["host", "port", "url", "key-file", "register", "invite", "link", "help"]);

function parseFlags(argv: readonly string[]): Flags {
  const values = new Map<string, string>();
  const unknown: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]!;
    if (!argument.startsWith("--")) {
      unknown.push(argument);
      continue;
    }
    const equals = argument.indexOf("=");
    let name: string;
    let value: string;
    if (equals > 0) {
      name = argument.slice(2, equals);
      value = argument.slice(equals + 1);
    } else {
      name = argument.slice(2);
      const next = argv[index + 1];
      if (next !== undefined && !next.startsWith("--")) {
        value = next;
        index++;
      } else {
        value = "true";
      }
    }
    if (!knownFlags.has(name)) unknown.push(argument);
    else values.set(name, value);
  }
  return { values, unknown };
}

interface Peer {
  readonly account: number;
  readonly label: string;
}

/** Marks of an own message, in the order they can only go up. */
const Mark = Object.freeze({ sent: 1, delivered: 2, read: 3 } as const);
type MarkValue = (typeof Mark)[keyof typeof Mark];

interface SentMessage {
  readonly number: number;
  readonly preview: string;
  mark: MarkValue;
}

/** Runs the chat until /quit, the end of input, or a server that refuses us for good. Returns the exit code. */
export async function runChat(argv: readonly string[], io: ChatIo = terminalIo()): Promise<number> {
  const flags = parseFlags(argv);
  const flag = (name: string) => flags.values.get(name);
  if (flag("help") !== undefined) {
    io.print(chatUsage);
    return 0;
  }
  if (flags.unknown.length > 0) {
    io.print(`switchboard chat: unknown arguments ${flags.unknown.join(" ")}\n\n${chatUsage}`);
    return 2;
  }
  const host = flag("host") ?? "127.0.0.1";
  const port = Number(flag("port") ?? 7420);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    io.print("switchboard chat: --port must be 1..65535");
    return 2;
  }
  const url = flag("url");
  if (url !== undefined && !/^wss?:\/\//.test(url)) {
    io.print("switchboard chat: --url must start with ws:// or wss://");
    return 2;
  }
  const server = url === undefined ? { host, port } : { url };
  const keyFile = flag("key-file") ?? defaultKeyFile;
  const register = flag("register");
  const link = flag("link");
  if (register !== undefined && link !== undefined) {
    io.print("switchboard chat: --register and --link exclude each other");
    return 2;
  }

  let identity: DeviceIdentity | null = null;
  let options: ClientOptions;
  if (register !== undefined || link !== undefined) {
    if (keyFileExists(keyFile)) {
      io.print(`switchboard chat: ${keyFile} exists: this device already has an identity (use another --key-file)`);
      return 2;
    }
    options =
      register !== undefined
        ? { ...server, register: { handle: register, invite: flag("invite") ?? null } }
        : { ...server, link: { code: link! } };
  } else {
    if (!keyFileExists(keyFile)) {
      io.print(
        `switchboard chat: no key file ${keyFile}. Register with --register <handle> [--invite <code>], or link ` +
          "this device to your account with --link <code>.",
      );
      return 2;
    }
    try {
      identity = await readKeyFile(keyFile);
    } catch (error) {
      io.print(`switchboard chat: ${(error as KeyFileError).message}`);
      return 2;
    }
    options = { ...server, credentials: identity.credentials, firstClientId: identity.nextClientId };
  }

  let client: SwitchboardClient;
  try {
    client = new SwitchboardClient(options);
  } catch (error) {
    io.print(`switchboard chat: ${(error as Error).message}`);
    return 2;
  }
  const session = new ChatSession(client, io, keyFile, identity, register ?? null);
  return session.run();
}

/** The state of one chat run: who we talk to, which of our messages carry which marks. */
class ChatSession {
  private peer: Peer | null = null;
  private lastSender: Peer | null = null;
  private readonly labels = new Map<number, string>();
  private readonly sent = new Map<number, SentMessage>();
  /** Receipts that came before the send's own promise settled (same chunk as its server-ack), by client id. */
  private readonly early = new Map<number, Array<{ mark: MarkValue; by: string }>>();
  private sentCount = 0;
  private stoppedWith: string | null = null;
  private wake: () => void = () => {};
  private readonly stopped: Promise<void>;

  constructor(
    private readonly client: SwitchboardClient,
    private readonly io: ChatIo,
    private readonly keyFile: string,
    private identity: DeviceIdentity | null,
    private readonly registeringHandle: string | null,
  ) {
    this.stopped = new Promise((resolve) => {
      this.wake = resolve;
    });
    if (identity?.handle != null) this.labels.set(identity.credentials.account, identity.handle);
  }

  async run(): Promise<number> {
    const { client, io } = this;
    client.on("connected", (event) => this.connected(event.account, event.device));
    client.on("disconnected", (event) => {
      if (event.willReconnect) {
        io.print(`* disconnected (${event.reason}); reconnecting in ${event.retryInMs} ms`);
      } else if (this.stoppedWith === null) {
        this.stop(event.reason);
      }
    });
    client.on("message", (event) => this.message(event));
    client.on("receipt", (event) => this.receipt(event));
    client.on("error", (error) => io.print(`* error: ${error.message}`));
    io.print(
      `* connecting to ${this.registeringHandle === null ? "" : `register ${this.registeringHandle} at `}the server...`,
    );
    client.connect().catch((error: unknown) => this.stop(describe(error)));

    const lines = this.io.lines[Symbol.asyncIterator]();
    try {
      while (this.stoppedWith === null) {
        const next = await Promise.race([lines.next(), this.stopped.then(() => null)]);
        if (next === null || next.done === true) break;
        const line = next.value.trim();
        if (line === "/quit") break;
        if (line !== "") await this.command(line);
      }
    } finally {
      void lines.return?.();
    }
    return this.quit();
  }

  private stop(reason: string): void {
    if (this.stoppedWith !== null) return;
    this.stoppedWith = reason;
    this.io.print(`* stopped: ${reason}`);
    this.wake();
  }

  private async quit(): Promise<number> {
    const deadline = Date.now() + quitFlushMs;
    while (this.client.pendingSends > 0 && this.client.phase === "ready" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (this.client.pendingSends > 0) this.io.print(`* ${this.client.pendingSends} messages were not sent`);
    await this.saveIdentity();
    const exitCode = this.stoppedWith === null ? 0 : 1;
    this.stoppedWith ??= "quit";
    await this.client.close();
    return exitCode;
  }

  private async saveIdentity(): Promise<void> {
    const credentials = this.client.credentials;
    if (credentials === null) return;
    const handle = this.identity?.handle ?? this.registeringHandle;
    this.identity = { credentials, handle, nextClientId: this.client.nextClientId };
    try {
      await writeKeyFile(this.keyFile, this.identity);
    } catch (error) {
      this.io.print(`* cannot write ${this.keyFile}: ${(error as Error).message}`);
    }
  }

  private connected(account: number, device: number): void {
    const firstTime = this.identity === null;
    if (this.registeringHandle !== null) this.labels.set(account, this.registeringHandle);
    const name = this.labels.get(account) ?? `account #${account}`;
    this.io.print(`* connected as ${name} (account ${account}, device ${device}). /help lists the commands.`);
    if (firstTime) {
      void this.saveIdentity().then(() => this.io.print(`* identity saved in ${this.keyFile} (keep it private)`));
    }
  }

  private label(account: number): string {
    return this.labels.get(account) ?? `#${account}`;
  }

  private message(event: MessageEvent): void {
    const own = this.client.credentials;
    const text = new TextDecoder().decode(event.payload);
    const sender =
      own !== null && event.from === own.account ? `you (device ${event.fromDevice})` : this.label(event.from);
    this.io.print(`${sender}: ${text}`);
    if (own === null || event.from !== own.account)
      this.lastSender = { account: event.from, label: this.label(event.from) };
    this.client.receipt(event.from, event.fromDevice, [event.clientId], "read");
  }

  private receipt(event: ReceiptEvent): void {
    const own = this.client.credentials;
    if (own === null || event.senderDevice !== own.device || event.from === own.account) return;
    const mark = event.type === "read" ? Mark.read : Mark.delivered;
    for (const clientId of event.clientIds) {
      const message = this.sent.get(clientId);
      if (message !== undefined) this.mark(message, mark, this.label(event.from));
      else {
        const marks = this.early.get(clientId) ?? [];
        if (marks.length < 2) marks.push({ mark, by: this.label(event.from) });
        this.early.set(clientId, marks);
        if (this.early.size > sentRememberedMax) this.early.delete(this.early.keys().next().value!);
      }
    }
  }

  /** Prints a mark that is higher than the message's current one ("read" may come before "delivered"). */
  private mark(message: SentMessage, mark: MarkValue, by: string): void {
    if (mark <= message.mark) return;
    message.mark = mark;
    const name = mark === Mark.read ? "read" : mark === Mark.delivered ? "✓✓ delivered" : "✓ sent";
    this.io.print(`  [${message.number}] ${name}${mark === Mark.sent ? "" : ` (${by}) "${message.preview}"`}`);
  }

  private async command(line: string): Promise<void> {
    const { client, io } = this;
    const [command, ...rest] = line.split(/\s+/);
    const argument = rest.join(" ");
    try {
      switch (command) {
        case "/help":
          io.print(chatUsage);
          return;
        case "/to": {
          // A /to that does not succeed leaves no peer: the next line must not go to the previous one (a private
          // message reaching the wrong person). Cleared before the lookup, so a lookup that throws clears it too.
          const previous = this.peer;
          this.peer = null;
          const noPeer = `no peer now${previous === null ? "" : ` (was ${previous.label})`}: nothing is sent until a /to succeeds`;
          if (argument === "") return io.print(`* usage: /to <handle>; ${noPeer}`);
          let found: Awaited<ReturnType<SwitchboardClient["lookup"]>>;
          try {
            found = await client.lookup(argument);
          } catch (error) {
            return io.print(`* ${describe(error)}; ${noPeer}`);
          }
          if (found.account === null) return io.print(`* nobody is called ${argument}; ${noPeer}`);
          this.labels.set(found.account, argument);
          this.peer = { account: found.account, label: argument };
          io.print(`* talking to ${argument} (${found.devices.length} device${found.devices.length === 1 ? "" : "s"})`);
          return;
        }
        case "/reply":
          if (this.lastSender === null) return io.print("* nobody has written to you yet");
          this.peer = { account: this.lastSender.account, label: this.label(this.lastSender.account) };
          io.print(`* talking to ${this.peer.label}`);
          return;
        case "/link": {
          const { code, expiresAtSeconds } = await client.createLinkCode();
          const minutes = Math.max(0, Math.round((expiresAtSeconds * 1000 - Date.now()) / 60_000));
          io.print(`* link code: ${code} (valid ${minutes} min, once). On the new device run:`);
          io.print(`    switchboard chat --link ${code} --key-file <another file>`);
          return;
        }
        case "/devices": {
          const own = client.credentials;
          for (const device of await client.devices()) {
            const seen = new Date(device.lastSeenAtSeconds * 1000).toISOString();
            const mark = own !== null && device.device === own.device ? " (this device)" : "";
            io.print(`* device ${device.device}${mark}, last seen ${seen}`);
          }
          return;
        }
        default:
          if (command!.startsWith("/")) return io.print(`* unknown command ${command}; /help lists them`);
          return this.say(line);
      }
    } catch (error) {
      io.print(`* ${describe(error)}`);
    }
  }

  private say(text: string): void {
    const peer = this.peer;
    if (peer === null) {
      this.io.print("* not sent: choose someone first with /to <handle>");
      return;
    }
    const number = ++this.sentCount;
    const preview = text.length > previewCharsMax ? `${text.slice(0, previewCharsMax - 1)}…` : text;
    this.io.print(`  [${number}] you → ${peer.label}: ${text}`);
    this.client
      .send(peer.account, new TextEncoder().encode(text))
      .then(({ clientId }) => {
        const message: SentMessage = { number, preview, mark: 0 as MarkValue };
        this.sent.set(clientId, message);
        if (this.sent.size > sentRememberedMax) this.sent.delete(this.sent.keys().next().value!);
        this.mark(message, Mark.sent, "");
        for (const early of this.early.get(clientId) ?? []) this.mark(message, early.mark, early.by);
        this.early.delete(clientId);
      })
      .catch((error: unknown) => this.io.print(`  [${number}] not sent: ${describe(error)}`));
  }
}

function describe(error: unknown): string {
  if (error instanceof ClientError) return `${error.message} [${error.action}]`;
  if (error instanceof KeyFileError || error instanceof Error) return error.message;
  return String(error);
}
