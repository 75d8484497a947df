// `switchboard chat`: a terminal chat on the client SDK, line by line (no full-screen UI), for trying a server
// from two terminals. The device's identity (private key, account, device, handle, next client id) lives in a key
// file; its Signal identity, prekeys and sessions in a second file beside it (e2eStorePath). Messages are end-to-end
// encrypted with the Signal protocol (e2e-session.ts): the server stores and routes only ciphertext.
//
// Each line carries its time. Senders are shown by handle (the SDK's reverse lookup, PROTOCOL.md section 8), each
// own message takes one line whose marks are added in place on a terminal (a compact mark line elsewhere), and
// connection messages and failures name the server and say what to do.

import { existsSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { ChatGroups } from "./chat-groups.ts";
import { ClientClosedError } from "./client-errors.ts";
import type { DisconnectedEvent, ReceiptEvent } from "./client-events.ts";
import { type ClientOptions, portDefault } from "./client-options.ts";
import { E2eSession, type PlaintextEvent } from "./e2e-session.ts";
import { FileE2eStore } from "./e2e-store-file.ts";
import { type ErrorContext, errorInWords } from "./error-words.ts";
import { type DeviceIdentity, type KeyFileError, keyFileExists, readKeyFile, writeKeyFile } from "./key-file.ts";
import { parseServerKey } from "./known-server-keys.ts";
import { FileServerKeys } from "./known-server-keys-file.ts";
import { plaintextSize } from "./media.ts";
import { decodeFileMessage, encodeFileMessage, type FileMessage, safeFileName } from "./media-message.ts";
import { SwitchboardClient } from "./switchboard-client.ts";

const preKeysPerUploadDefault = 50;
export const defaultDownloadDir = "./switchboard-files";

export const chatUsage = `switchboard chat [options]

A terminal chat client. Messages are end-to-end encrypted with the Signal protocol: only the devices of the
people in a conversation can read them; the server stores and routes ciphertext it cannot read.

Options:
  --host <address>      server address (default 127.0.0.1)
  --port <port>         server port (default ${portDefault})
  --url <ws-url>        connect over WebSocket instead (e.g. ws://127.0.0.1:7422/ws, wss://chat.example.com/ws)
  --noise               encrypt with Noise (a server with tcpEncryption = "noise"); its key is trusted on first use
                        and kept in <key file>.servers (a changed key stops the chat with a warning)
  --server-key <hex>    with --noise: the server's key as its operator publishes it (switchboard noise-key): only
                        that key is accepted
  --key-file <path>     this device's identity (default ./.switchboard-key.json; holds the private key)
  --register <handle>   create an account (with --invite <code> when the server wants one)
  --invite <code>       the invite code from the server's operator, for --register
  --link <code>         join an existing account as a new device (get a code with /link on a device of it)
  --prekeys <n>         one-time prekeys per upload to the server's key directory (default ${preKeysPerUploadDefault})
  --download-dir <path> where received files are saved (default ${defaultDownloadDir})
  -h, --help            this text

Commands:
  /to <handle>          talk to this user
  /reply                talk to whoever sent the last message
  /link                 print a code that links another device to this account
  /devices              list this account's devices
  /safety               the safety number with the current peer (compare it with theirs, e.g. in person)
  /send-file <path>     send a file to the current peer (encrypted with a fresh key, uploaded to the server's
                        media listener; the message carries its hash and key)
  /group ...            groups: /group new <name> <handle>..., /group use <id>, /group list, /group info,
                        /group add|remove|promote|demote <handle>..., /group rename <name>, /group leave
                        (group messages are sent as plaintext in this version)
  /help                 this text
  /quit                 leave (also end of input)
  anything else         is sent to the current peer

Marks on your messages: ✓ sent (the server stored it), ✓✓ delivered (a device of the peer has it), read.
The Signal keys and sessions are kept beside the key file (<key file>.e2e.json, also private).`;

/** Where the chat keeps the device's Signal keys and sessions: beside its key file ("alice.key.json" -> "alice.key.e2e.json"). */
export function e2eStorePath(keyFile: string): string {
  return `${keyFile.replace(/\.json$/, "")}.e2e.json`;
}

export const defaultKeyFile = "./.switchboard-key.json";
/** Names tried for a received file before the last one is overwritten ("photo (1).jpg", ...). */
const savedCopiesMax = 1000;
/** How long /quit waits for unacknowledged sends before leaving anyway. */
const quitFlushMs = 3000;
/** Own messages remembered for their marks (the oldest are forgotten). */
const sentRememberedMax = 1000;
const previewCharsMax = 24;
/** How long a received message waits for its sender's handle before it is shown with the account number. */
const nameWaitMs = 2000;

export interface ChatIo {
  /** Lines typed by the user (without the newline); the end of the iteration means quit. */
  readonly lines: AsyncIterable<string>;
  print(line: string): void;
  /**
   * Prints a line that may be rewritten later (a sent message whose marks arrive), where the output allows it.
   * Returns the rewriter: it replaces that line and returns true, or returns false when it no longer can (scrolled
   * away, or the new text takes another number of rows); the caller then prints the change as a line of its own.
   */
  printRewritable?(line: string): (line: string) => boolean;
}

/** Rows a line takes on a terminal `columns` wide (one at least; wide characters are not measured). */
function rowsOf(line: string, columns: number): number {
  return Math.max(1, Math.ceil([...line].length / Math.max(1, columns)));
}

/**
 * Standard input and output. On a terminal, lines are rewritten in place with ANSI escapes (save the cursor, move
 * up, clear, write, restore): the count of rows printed since, typed lines included, says how far up a line is.
 */
export function terminalIo(): ChatIo {
  const stdout = process.stdout;
  const input = createInterface({ input: process.stdin, terminal: false });
  const tty = stdout.isTTY === true && process.stdin.isTTY === true;
  let rowsPrinted = 0;
  // A terminal that does not report its size (0, as a fresh pty) is taken as 80 × 24.
  const columns = () => stdout.columns || 80;
  const lines: AsyncIterable<string> = {
    async *[Symbol.asyncIterator]() {
      for await (const line of input) {
        rowsPrinted += rowsOf(line, columns()); // the terminal echoed it, with its newline
        yield line;
      }
    },
  };
  const print = (line: string) => {
    rowsPrinted += rowsOf(line, columns());
    stdout.write(`${line}\n`);
  };
  if (!tty) return { lines, print };
  return {
    lines,
    print,
    printRewritable(line) {
      const firstRow = rowsPrinted;
      const rows = rowsOf(line, columns());
      print(line);
      return (next) => {
        const up = rowsPrinted - firstRow;
        if (rowsOf(next, columns()) !== rows || rows !== 1 || up >= (stdout.rows || 24)) return false;
        stdout.write(`\x1b7\x1b[${up}A\r\x1b[2K${next}\x1b8`);
        return true;
      };
    },
  };
}

/** "14:03" for today, "Nov 28 14:03" for another day (local time). */
export function formatTime(timeMs: number, nowMs: number = Date.now()): string {
  const time = new Date(timeMs);
  const now = new Date(nowMs);
  const clock = `${String(time.getHours()).padStart(2, "0")}:${String(time.getMinutes()).padStart(2, "0")}`;
  if (time.toDateString() === now.toDateString()) return clock;
  const month = time.toLocaleString("en", { month: "short" });
  return `${month} ${time.getDate()} ${clock}`;
}

const chatOptions = {
  host: { type: "string" },
  port: { type: "string" },
  url: { type: "string" },
  noise: { type: "boolean" },
  "server-key": { type: "string" },
  "key-file": { type: "string" },
  register: { type: "string" },
  invite: { type: "string" },
  link: { type: "string" },
  prekeys: { type: "string" },
  "download-dir": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The options given, or why they are refused (an unknown option, a missing value, a stray argument). */
function parseChatArgs(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: chatOptions, strict: true, allowPositionals: false }).values;
  } catch (error) {
    return (error as Error).message;
  }
}

interface Peer {
  readonly account: number;
  readonly label: string;
}

/** Marks of an own message, in the order they can only go up. */
const Mark = Object.freeze({ pending: 0, sent: 1, delivered: 2, read: 3 } as const);
type MarkValue = (typeof Mark)[keyof typeof Mark];
const markText: Record<MarkValue, string> = { 0: "", 1: "✓", 2: "✓✓", 3: "✓✓ read" };
const markWords: Record<MarkValue, string> = { 0: "", 1: "✓ sent", 2: "✓✓ delivered", 3: "read" };

interface SentMessage {
  readonly number: number;
  /** The message's line without its mark ("14:03 [1] you → bob: hello"). */
  readonly line: string;
  readonly preview: string;
  mark: MarkValue;
  /** Rewrites the message's line in place, while the output can; null once it cannot. */
  rewrite: ((line: string) => boolean) | null;
}

/** Runs the chat until /quit, the end of input, or a server that refuses us for good. Returns the exit code. */
export async function runChat(argv: readonly string[], io: ChatIo = terminalIo()): Promise<number> {
  const values = parseChatArgs(argv);
  if (typeof values === "string") {
    io.print(`switchboard chat: ${values}\n(switchboard chat --help lists the options)`);
    return 2;
  }
  if (values.help === true) {
    io.print(chatUsage);
    return 0;
  }
  const host = values.host ?? "127.0.0.1";
  const portText = values.port ?? String(portDefault);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    io.print("switchboard chat: --port must be 1..65535");
    return 2;
  }
  const url = values.url;
  if (url !== undefined && !/^wss?:\/\//.test(url)) {
    io.print("switchboard chat: --url must start with ws:// or wss://");
    return 2;
  }
  let serverKey: Uint8Array | undefined;
  if (values["server-key"] !== undefined) {
    if (values.noise !== true) {
      io.print("switchboard chat: --server-key goes with --noise");
      return 2;
    }
    try {
      serverKey = parseServerKey(values["server-key"]);
    } catch (error) {
      io.print(`switchboard chat: --server-key: ${(error as Error).message}`);
      return 2;
    }
  }
  const knownServersFile = `${values["key-file"] ?? defaultKeyFile}.servers`;
  const noise =
    values.noise === true
      ? {
          noise: {
            aead: nodeAead,
            dh: nodeDh,
            knownKeys: new FileServerKeys(knownServersFile),
            ...(serverKey === undefined ? {} : { serverKey }),
          },
        }
      : {};
  const server = url === undefined ? { host, port, ...noise } : { url };
  const address = url ?? `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const keyFile = values["key-file"] ?? defaultKeyFile;
  const preKeysText = values.prekeys ?? String(preKeysPerUploadDefault);
  const preKeysPerUpload = Number(preKeysText);
  if (!/^\d+$/.test(preKeysText) || preKeysPerUpload < 1 || preKeysPerUpload > 100) {
    io.print("switchboard chat: --prekeys must be 1..100");
    return 2;
  }
  const { register, link, invite } = values;
  if (register !== undefined && link !== undefined) {
    io.print("switchboard chat: --register and --link exclude each other");
    return 2;
  }
  if (invite !== undefined && register === undefined) {
    io.print("switchboard chat: --invite goes with --register <handle>");
    return 2;
  }

  let identity: DeviceIdentity | null = null;
  let options: ClientOptions;
  if (register !== undefined || link !== undefined) {
    if (keyFileExists(keyFile) || existsSync(e2eStorePath(keyFile))) {
      const found = keyFileExists(keyFile) ? keyFile : e2eStorePath(keyFile);
      io.print(`switchboard chat: ${found} exists: this device already has an identity (use another --key-file)`);
      return 2;
    }
    options =
      register !== undefined
        ? { ...server, register: { handle: register, invite: invite ?? null } }
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
  let e2e: E2eSession;
  try {
    client = new SwitchboardClient(options);
    e2e = new E2eSession(client, FileE2eStore.open(e2eStorePath(keyFile)), { preKeysPerUpload });
  } catch (error) {
    io.print(`switchboard chat: ${(error as Error).message}`);
    return 2;
  }
  const context: ErrorContext = {
    server: address,
    handle: register ?? null,
    inviteGiven: invite !== undefined,
    inviteHow: "--invite CODE",
  };
  const downloadDir = values["download-dir"] ?? defaultDownloadDir;
  const session = new ChatSession(client, e2e, io, keyFile, identity, register ?? null, context, downloadDir);
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
  /** Received messages are printed in arrival order, each after its sender's name is known (or nameWaitMs). */
  private printed: Promise<void> = Promise.resolve();
  private sentCount = 0;
  private everConnected = false;
  private stoppedWith: string | null = null;
  private wake: () => void = () => {};
  private readonly stopped: Promise<void>;
  private readonly groups: ChatGroups;

  constructor(
    private readonly client: SwitchboardClient,
    private readonly e2e: E2eSession,
    private readonly io: ChatIo,
    private readonly keyFile: string,
    private identity: DeviceIdentity | null,
    private readonly registeringHandle: string | null,
    private readonly context: ErrorContext,
    private readonly downloadDir: string,
  ) {
    this.stopped = new Promise((resolve) => {
      this.wake = resolve;
    });
    if (identity?.handle != null) this.labels.set(identity.credentials.account, identity.handle);
    this.groups = new ChatGroups(
      client,
      (line) => io.print(line),
      (account) => this.label(account),
    );
  }

  private get server(): string {
    return this.context.server;
  }

  async run(): Promise<number> {
    const { client, io } = this;
    client.on("connected", (event) => this.connected(event.account, event.device));
    client.on("disconnected", (event) => {
      if (event.willReconnect) {
        const seconds = ((event.retryInMs ?? 0) / 1000).toFixed(1);
        const why = this.closeWords(event);
        io.print(
          this.everConnected
            ? `* lost ${this.server} (${why}); reconnecting in ${seconds} s`
            : `* cannot reach ${this.server} (${why}); trying again in ${seconds} s`,
        );
      } else if (this.stoppedWith === null) {
        this.stop(this.closeWords(event));
      }
    });
    this.e2e.on("plaintext", (event) => this.message(event));
    this.e2e.on("undecryptable", (event) => {
      this.io.print(
        `* a message from ${this.label(event.from)} (device ${event.fromDevice}) could not be decrypted: ${event.reason}`,
      );
    });
    this.e2e.on("safetyNumberChange", (event) => {
      this.io.print(
        `* the safety number with ${this.label(event.account)} changed (device ${event.device} has a new identity key): ` +
          "/safety shows the new one; compare it before you trust the conversation",
      );
    });
    this.e2e.on("error", (error) => io.print(`* end-to-end keys: ${this.words(error)}`));
    this.e2e.on("keysUploaded", (event) => {
      io.print(`* end-to-end keys published (${event.oneTimePreKeysLeft} one-time prekeys on the server)`);
    });
    client.on("receipt", (event) => this.receipt(event));
    client.on("error", (error) => io.print(`* ${this.words(error)}`));
    io.print(
      this.registeringHandle === null
        ? `* connecting to ${this.server}...`
        : `* connecting to ${this.server} to register ${this.registeringHandle}...`,
    );
    client.connect().catch((error: unknown) => this.stop(this.words(error)));

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

  /** An error in words that name the server (error-words.ts). */
  private words(error: unknown): string {
    return errorInWords(error, this.context);
  }

  /** Why a connection ended: the server's code in words, else the transport's reason. */
  private closeWords(event: DisconnectedEvent): string {
    return event.code === undefined ? event.reason : this.words(new ClientClosedError(event.reason, event.code));
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
    this.e2e.close();
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
    this.everConnected = true;
    if (this.registeringHandle !== null) this.labels.set(account, this.registeringHandle);
    const name = this.labels.get(account) ?? `account #${account}`;
    this.io.print(
      `* connected to ${this.server} as ${name} (account ${account}, device ${device}); messages are end-to-end ` +
        "encrypted. /help lists the commands.",
    );
    if (firstTime) {
      void this.saveIdentity().then(() => this.io.print(`* identity saved in ${this.keyFile} (keep it private)`));
    }
  }

  private label(account: number): string {
    return this.labels.get(account) ?? this.client.cachedHandle(account) ?? `#${account}`;
  }

  /** The sender's handle: known, or asked of the server (at most nameWaitMs); `#account` when it does not say. */
  private async nameOf(account: number): Promise<string> {
    const known = this.labels.get(account) ?? this.client.cachedHandle(account);
    if (known !== undefined) return known;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), nameWaitMs);
    });
    const asked = this.client
      .handles([account])
      .then((handles) => handles.get(account) ?? null)
      .catch(() => null);
    const handle = await Promise.race([asked, timeout]).finally(() => clearTimeout(timer));
    return handle ?? `#${account}`;
  }

  /** Printed in arrival order once the sender is named; the SDK acks the message after it is on screen. */
  private message(event: PlaintextEvent): Promise<void> {
    const own = this.client.credentials;
    const fromSelf = own !== null && event.from === own.account;
    const file = decodeFileMessage(event.plaintext);
    const text =
      file === null
        ? new TextDecoder().decode(event.plaintext)
        : `sent a file: ${file.name} (${plaintextSize(file.ref)} bytes)`;
    const name = fromSelf ? Promise.resolve(`you (device ${event.fromDevice})`) : this.nameOf(event.from);
    this.printed = this.printed.then(async () => {
      const sender = await name;
      this.io.print(`${formatTime(event.timeSeconds * 1000)} ${sender}: ${text}`);
      // The download runs beside the chat: later messages are not held behind a large file.
      if (file !== null) void this.saveFile(file);
      if (!fromSelf) this.lastSender = { account: event.from, label: sender };
      this.client.receipt(event.from, event.fromDevice, [event.clientId], "read");
    });
    return this.printed;
  }

  /** Downloads a received file, checks and decrypts it, and saves it under downloadDir with a name not taken yet. */
  private async saveFile(file: FileMessage): Promise<void> {
    try {
      const bytes = await this.client.downloadMedia(file.ref);
      mkdirSync(this.downloadDir, { recursive: true });
      const name = safeFileName(file.name);
      const dot = name.lastIndexOf(".");
      const [stem, extension] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
      let path = join(this.downloadDir, name);
      for (let copy = 1; existsSync(path) && copy < savedCopiesMax; copy++) {
        path = join(this.downloadDir, `${stem} (${copy})${extension}`);
      }
      await Bun.write(path, bytes);
      this.io.print(`* saved ${file.name} to ${path}`);
    } catch (error) {
      this.io.print(`* could not fetch ${file.name}: ${this.words(error)}`);
    }
  }

  /** Encrypts and uploads a file, then sends its reference to the peer (and to this account's other devices). */
  private async sendFile(path: string): Promise<void> {
    const { client, io } = this;
    const peer = this.peer;
    if (peer === null) return io.print("* not sent: choose someone first with /to <handle>");
    if (path === "") return io.print("* usage: /send-file <path>");
    const source = Bun.file(path);
    if (!(await source.exists())) return io.print(`* no file ${path}`);
    const name = basename(path);
    io.print(`* uploading ${name} (${source.size} bytes)...`);
    const own = client.credentials;
    const recipients = own === null || own.account === peer.account ? [peer.account] : [peer.account, own.account];
    let lastPercent = 0;
    const ref = await client.uploadMedia(await source.bytes(), recipients, {
      onProgress: (offset, size) => {
        const percent = Math.floor((offset * 100) / size);
        if (percent >= lastPercent + 25 && percent < 100) {
          lastPercent = percent;
          io.print(`* ${name}: ${percent} %`);
        }
      },
    });
    this.say(`[file] ${name}`, encodeFileMessage({ name, type: source.type || null, ref }));
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

  /**
   * Shows a mark that is higher than the message's current one ("read" may come before "delivered"): in the
   * message's own line where the output can rewrite it, else as a short line of its own.
   */
  private mark(message: SentMessage, mark: MarkValue, by: string): void {
    if (mark <= message.mark) return;
    message.mark = mark;
    if (message.rewrite?.(`${message.line}  ${markText[mark]}`) === true) return;
    message.rewrite = null;
    const who = mark === Mark.sent ? "" : ` (${by}) "${message.preview}"`;
    this.io.print(`  [${message.number}] ${markWords[mark]}${who}`);
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
          this.groups.current = null;
          const noPeer = `no peer now${previous === null ? "" : ` (was ${previous.label})`}: nothing is sent until a /to succeeds`;
          if (argument === "") return io.print(`* usage: /to <handle>; ${noPeer}`);
          let found: Awaited<ReturnType<SwitchboardClient["lookup"]>>;
          try {
            found = await client.lookup(argument);
          } catch (error) {
            return io.print(`* ${this.words(error)}; ${noPeer}`);
          }
          if (found.account === null) return io.print(`* nobody is called ${argument}; ${noPeer}`);
          this.labels.set(found.account, argument);
          this.peer = { account: found.account, label: argument };
          io.print(`* talking to ${argument} (${found.devices.length} device${found.devices.length === 1 ? "" : "s"})`);
          return;
        }
        case "/reply":
          this.groups.current = null;
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
        case "/safety": {
          if (this.peer === null) return io.print("* choose someone first with /to <handle>");
          const number = await this.e2e.safetyNumber(this.peer.account);
          if (number === null) return io.print(`* no session with ${this.peer.label} yet: send a message first`);
          io.print(`* safety number with ${this.peer.label}: ${number.replace(/(\d{5})(?=\d)/g, "$1 ")}`);
          return;
        }
        case "/send-file":
          return await this.sendFile(argument);
        case "/group":
          return await this.groups.command(argument);
        case "/devices": {
          const own = client.credentials;
          for (const device of await client.devices()) {
            const seen = formatTime(device.lastSeenAtSeconds * 1000);
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
      io.print(`* ${this.words(error)}`);
    }
  }

  private say(text: string, payload: Uint8Array = new TextEncoder().encode(text)): void {
    const group = this.groups.current;
    if (group !== null) {
      const number = ++this.sentCount;
      this.io.print(`${formatTime(Date.now())} [${number}] you → [${group.name}]: ${text}`);
      this.groups.say(text).then(
        () => this.io.print(`  [${number}] ✓ sent to ${group.name}`),
        (error: unknown) => this.io.print(`  [${number}] not sent: ${this.words(error)}`),
      );
      return;
    }
    const peer = this.peer;
    if (peer === null) {
      this.io.print("* not sent: choose someone first with /to <handle>");
      return;
    }
    const number = ++this.sentCount;
    const preview = text.length > previewCharsMax ? `${text.slice(0, previewCharsMax - 1)}…` : text;
    const line = `${formatTime(Date.now())} [${number}] you → ${peer.label}: ${text}`;
    const message: SentMessage = { number, line, preview, mark: Mark.pending, rewrite: null };
    if (this.io.printRewritable === undefined) this.io.print(line);
    else message.rewrite = this.io.printRewritable(line);
    this.e2e
      .send(peer.account, payload)
      .then(({ clientId }) => {
        this.sent.set(clientId, message);
        if (this.sent.size > sentRememberedMax) this.sent.delete(this.sent.keys().next().value!);
        this.mark(message, Mark.sent, "");
        for (const early of this.early.get(clientId) ?? []) this.mark(message, early.mark, early.by);
        this.early.delete(clientId);
      })
      .catch((error: unknown) => {
        const reason = `not sent: ${this.words(error)}`;
        if (message.rewrite?.(`${line}  ✗ ${reason}`) !== true) this.io.print(`  [${number}] ${reason}`);
      });
  }
}
