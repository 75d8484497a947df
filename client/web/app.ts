// The web chat page (client/web/index.html): the client SDK over WebSocket in the browser. Bundled for browsers by
// server/web-client-bundle.ts when the server serves it (webClient on). Registers this browser as a device with a handle
// and an invite code, or logs in again with the key kept in IndexedDB (key-store.ts: a non-extractable WebCrypto
// Ed25519 key); picks a peer by handle; shows senders by handle (the SDK's reverse lookup), times, ✓ sent (the
// server stored it), ✓✓ delivered, and read; sends read receipts for the messages on screen; keeps its conversations
// across reloads (history-store.ts). While disconnected it counts down to the next attempt, with "retry now".
// Errors are shown in words (client/error-words.ts). Messages are end-to-end encrypted with the Signal protocol
// (client/e2e-session.ts, the same code as the terminal chat, so the two talk to each other): the Signal keys and
// sessions stay in this browser (e2e-store-indexed-db.ts), the page shows the conversation's safety number and warns
// when it changes. All user text goes into the page as text, never as HTML. Images (issue 17): "Image" encrypts a
// picked image with a fresh key, uploads it to the server's media listener and sends its reference
// (client/media-message.ts) in an end-to-end-encrypted message; a received image is downloaded, verified, decrypted
// and shown. Images are kept in memory for this page's life only: after a reload the history shows their names.

import { ErrorCode } from "../../protocol/index.ts";
import { E2eSession } from "../e2e-session.ts";
import { errorInWords } from "../error-words.ts";
import { ClientClosedError, type ClientOptions, generateKeyPair, SwitchboardClient } from "../index.ts";
import { decodeFileMessage, encodeFileMessage, type FileMessage } from "../media-message.ts";
import { type ChatMessage, ChatState, type Mark } from "./chat-state.ts";
import { IndexedDbE2eStore } from "./e2e-store-indexed-db.ts";
import { GroupList } from "./group-list.ts";
import { HistoryStore } from "./history-store.ts";
import { checkKeySupport, KeyStore, type StoredIdentity } from "./key-store.ts";

/** Replaced by the server's wsPath when bundled (server/web-client-bundle.ts); "/ws" otherwise. */
declare const __SWITCHBOARD_WS_PATH__: string | undefined;

/** Waits before writing the next client id to IndexedDB (many sends, one write). */
const saveDelayMs = 1000;
/** Waits before writing the history after a change (a burst of messages, one write). */
const historySaveDelayMs = 500;
/** How often the reconnect countdown is redrawn. */
const countdownTickMs = 250;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
/** Images this page shows inline; a larger one is shown as its name (a phone photo is a few MiB). */
const imageBytesMax = 16 * 1024 * 1024;

const markText: Record<Mark, string> = {
  pending: "…",
  sent: "✓",
  delivered: "✓✓",
  read: "✓✓ read",
  failed: "✗ not sent",
};

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element as T;
}

/**
 * The server's WebSocket URL: always the origin that served the page, at the listener's path. The page once took
 * another server from a `?ws=` parameter; dropped because a crafted link could then point this origin's page (and
 * the device key it keeps in this origin's IndexedDB) at any server, which could show its own messages under this
 * origin or relay the login. A confirmation dialog was the other choice: people click through those.
 */
export function serverUrl(location: Pick<Location, "protocol" | "host">): string {
  const path = typeof __SWITCHBOARD_WS_PATH__ === "string" ? __SWITCHBOARD_WS_PATH__ : "/ws";
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

/** "14:03" today, "Nov 28, 14:03" another day (the browser's locale decides the order). */
export function formatTime(timeMs: number, nowMs: number = Date.now()): string {
  const time = new Date(timeMs);
  const clock = time.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (time.toDateString() === new Date(nowMs).toDateString()) return clock;
  return `${time.toLocaleDateString(undefined, { month: "short", day: "numeric" })}, ${clock}`;
}

class WebChat {
  private client: SwitchboardClient | null = null;
  private e2e: E2eSession | null = null;
  private state: ChatState | null = null;
  private identity: StoredIdentity | null = null;
  /** The conversation whose safety number is on screen. */
  private safetyShownFor: number | null = null;
  private handle: string | null = null;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private historyTimer: ReturnType<typeof setTimeout> | null = null;
  private countdownTimer: ReturnType<typeof setInterval> | null = null;
  /** Files of this page's messages by message id (in memory only), and the object URLs of their decrypted images. */
  private readonly files = new Map<number, FileMessage>();
  private readonly imageUrls = new Map<number, string | "loading" | "failed">();
  /** Whether the register form had an invite code: the server's answer is the same for a wrong and a missing one. */
  private inviteGiven = false;

  private readonly view = {
    me: byId("me"),
    status: byId("status"),
    retry: byId<HTMLButtonElement>("retry"),
    notice: byId("notice"),
    keyInfo: byId("key-info"),
    setup: byId("setup"),
    registerForm: byId<HTMLFormElement>("register-form"),
    registerHandle: byId<HTMLInputElement>("register-handle"),
    registerInvite: byId<HTMLInputElement>("register-invite"),
    registerButton: byId<HTMLButtonElement>("register-button"),
    setupError: byId("setup-error"),
    chat: byId("chat"),
    peerForm: byId<HTMLFormElement>("peer-form"),
    peerHandle: byId<HTMLInputElement>("peer-handle"),
    peerError: byId("peer-error"),
    conversations: byId<HTMLUListElement>("conversations"),
    forget: byId<HTMLButtonElement>("forget"),
    forgetConfirm: byId("forget-confirm"),
    forgetYes: byId<HTMLButtonElement>("forget-yes"),
    forgetNo: byId<HTMLButtonElement>("forget-no"),
    back: byId<HTMLButtonElement>("back"),
    peerTitle: byId("peer-title"),
    safetyNumber: byId("safety-number"),
    messages: byId<HTMLOListElement>("messages"),
    composer: byId<HTMLFormElement>("composer"),
    messageText: byId<HTMLInputElement>("message-text"),
    sendButton: byId<HTMLButtonElement>("send-button"),
    imageButton: byId<HTMLButtonElement>("image-button"),
    imageInput: byId<HTMLInputElement>("image-input"),
  };

  constructor(
    private readonly url: string,
    private readonly store: KeyStore,
    private readonly history: HistoryStore,
    private readonly e2eStore: IndexedDbE2eStore,
  ) {
    const { view } = this;
    view.registerForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.register(view.registerHandle.value.trim(), view.registerInvite.value.trim());
    });
    view.peerForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.openPeer(view.peerHandle.value.trim());
    });
    view.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.say(view.messageText.value);
    });
    view.imageButton.addEventListener("click", () => view.imageInput.click());
    view.imageInput.addEventListener("change", () => {
      const file = view.imageInput.files?.[0];
      view.imageInput.value = "";
      if (file !== undefined) void this.sendImage(file);
    });
    view.forget.addEventListener("click", () => this.askForget(true));
    view.forgetNo.addEventListener("click", () => this.askForget(false));
    view.forgetYes.addEventListener("click", () => void this.forget());
    view.back.addEventListener("click", () => {
      if (this.state === null) return;
      this.state.selected = null;
      this.changed();
    });
    view.retry.addEventListener("click", () => {
      if (this.client?.reconnectNow() === true) this.setStatus("connecting", "connecting…");
    });
    document.addEventListener("visibilitychange", () => this.sendReadReceipts());
    window.addEventListener("pagehide", () => {
      this.saveNow();
      this.saveHistoryNow();
    });
  }

  /** The server as a person knows it, for the words of errors. */
  private get serverName(): string {
    return location.host;
  }

  private words(error: unknown): string {
    return errorInWords(error, {
      server: this.serverName,
      handle: this.handle,
      inviteGiven: this.inviteGiven,
      inviteHow: "enter it under Invite code",
    });
  }

  private closeWords(reason: string, code: number): string {
    return this.words(new ClientClosedError(reason, code));
  }

  async start(): Promise<void> {
    const support = await checkKeySupport();
    if (!support.ok) {
      this.notice("error", `This browser cannot hold a device key: ${support.detail}.`);
      this.view.keyInfo.textContent = "Device key: unavailable";
      this.view.registerButton.disabled = true;
      this.view.setup.hidden = false;
      return;
    }
    let identity: StoredIdentity | null = null;
    try {
      identity = await this.store.load();
    } catch (error) {
      this.notice("warning", `The stored device key cannot be read: ${this.words(error)}.`);
    }
    this.showKeyInfo(this.store.problem);
    if (identity === null) {
      this.view.setup.hidden = false;
      this.view.registerHandle.focus();
      return;
    }
    await this.login(identity);
  }

  // ---- connecting ------------------------------------------------------------------------------------------------

  private async register(handle: string, invite: string): Promise<void> {
    const { view } = this;
    if (handle === "") return;
    view.registerButton.disabled = true;
    view.setupError.textContent = "";
    this.handle = handle;
    this.inviteGiven = invite !== "";
    this.setStatus("connecting", "registering…");
    try {
      // Non-extractable: the page can sign with it, nobody can read it out (not even this page).
      const keyPair = await generateKeyPair({ extractable: false });
      const client = this.connectClient({ register: { handle, invite: invite === "" ? null : invite }, keyPair });
      const { account, device } = await client.connect();
      this.identity = { account, device, handle, keyPair, nextClientId: client.nextClientId };
      this.showKeyInfo(await this.store.save(this.identity));
      this.showChat();
    } catch (error) {
      void this.client?.close();
      this.client = null;
      this.state = null;
      view.setupError.textContent = `Registration failed: ${this.words(error)}.`;
      this.setStatus("offline", "offline");
      view.registerButton.disabled = false;
    }
  }

  private async login(identity: StoredIdentity): Promise<void> {
    this.identity = identity;
    this.handle = identity.handle;
    const state = new ChatState(identity.account, identity.device, identity.handle);
    try {
      const snapshot = await this.history.load(identity.account, identity.device);
      if (snapshot !== null) state.restore(snapshot);
    } catch (error) {
      this.notice("warning", `The stored messages cannot be read: ${this.words(error)}.`);
    }
    this.state = state;
    const client = this.connectClient({
      credentials: { account: identity.account, device: identity.device, keyPair: identity.keyPair },
      firstClientId: identity.nextClientId,
    });
    this.setStatus("connecting", "logging in…");
    this.showChat();
    client.connect().catch(() => {}); // a refusal arrives as `disconnected` with willReconnect false
  }

  private connectClient(options: Partial<ClientOptions>): SwitchboardClient {
    const client = new SwitchboardClient({ url: this.url, ...options } as ClientOptions);
    this.client = client;
    const e2e = new E2eSession(client, this.e2eStore);
    this.e2e = e2e;
    if (this.e2eStore.problem !== null) {
      this.notice(
        "warning",
        `This browser cannot keep the encryption keys (${this.e2eStore.problem}): they live in this tab only.`,
      );
    }
    client.on("connected", (event) => {
      // Before any delivery of this connection: the state exists when the queue drains.
      this.state ??= new ChatState(event.account, event.device, this.handle);
      this.view.me.textContent = `${this.handle ?? "?"} · account ${event.account}, device ${event.device}`;
      this.stopCountdown();
      this.setStatus("online", "online");
      void this.nameConversations();
    });
    client.on("disconnected", (event) => {
      if (event.willReconnect) {
        const why = event.code === undefined ? "connection lost" : this.closeWords(event.reason, event.code);
        this.startCountdown(Date.now() + (event.retryInMs ?? 0), why);
        return;
      }
      this.stopCountdown();
      const why = event.code === undefined ? event.reason : this.closeWords(event.reason, event.code);
      this.setStatus("stopped", "stopped");
      this.view.status.title = why;
      if (event.code === ErrorCode.wrongServer) {
        // The key is fine: the server does not count this page's host among its names (its serverNames setting).
        this.notice(
          "error",
          `The server does not count ${location.hostname} among its names (its operator sets serverNames). ` +
            "This device's key is fine: do not forget it.",
        );
      } else if (this.identity !== null && event.code !== undefined) {
        this.notice(
          "error",
          `The server no longer accepts this device: ${why}. "Forget this device" and register again.`,
        );
      }
    });
    e2e.on("plaintext", (event) => {
      const state = this.state;
      if (state === null) return;
      const file = decodeFileMessage(event.plaintext);
      const message = state.incoming({
        from: event.from,
        fromDevice: event.fromDevice,
        clientId: event.clientId,
        text: file === null ? utf8Decoder.decode(event.plaintext) : `[image] ${file.name}`,
        timeSeconds: event.timeSeconds,
      });
      if (message === null) return;
      if (file !== null) this.files.set(message.id, file);
      this.changed();
      if (event.from !== state.account && state.unnamed().includes(event.from)) void this.name([event.from]);
    });
    e2e.on("undecryptable", (event) => {
      const who = this.state?.label(event.from) ?? `#${event.from}`;
      this.notice(
        "warning",
        `A message from ${who} (device ${event.fromDevice}) could not be decrypted: ${event.reason}.`,
      );
    });
    e2e.on("safetyNumberChange", (event) => {
      const who = this.state?.label(event.account) ?? `#${event.account}`;
      this.notice(
        "warning",
        `The safety number with ${who} changed (device ${event.device} has a new identity key). Compare it again before you trust the conversation.`,
      );
      this.showSafetyNumber();
    });
    e2e.on("error", (error) => console.warn("switchboard e2e:", error));
    // Others can start a session with this device from now on (the tests wait for this mark).
    e2e.on("keysUploaded", () => {
      this.view.keyInfo.dataset.e2e = "published";
    });
    client.on("receipt", (event) => {
      if (this.state?.receipt(event)) this.changed();
    });
    client.on("error", (error) => console.warn("switchboard:", error));
    // Groups (plaintext in this version, group-list.ts).
    new GroupList(client, byId("group-area"), (account) => this.state?.label(account) ?? `#${account}`);
    return client;
  }

  /** Asks the server for the handles of conversation peers the page has no name for (reverse lookup). */
  private async nameConversations(): Promise<void> {
    const unnamed = this.state?.unnamed() ?? [];
    if (unnamed.length > 0) await this.name(unnamed);
  }

  private async name(accounts: number[]): Promise<void> {
    const { client, state } = this;
    if (client === null || state === null) return;
    try {
      let changed = false;
      for (const [account, handle] of await client.handles(accounts)) {
        if (handle !== null) changed = state.setLabel(account, handle) || changed;
      }
      if (changed) this.changed();
    } catch (error) {
      console.warn("switchboard: no names for", accounts, error); // the page keeps showing #account
    }
  }

  /** While waiting to reconnect: "reconnecting in 4 s", counting down, with a button to try at once. */
  private startCountdown(atMs: number, why: string): void {
    this.stopCountdown();
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((atMs - Date.now()) / 1000));
      this.setStatus(
        "reconnecting",
        seconds > 0 ? `offline · reconnecting in ${seconds} s` : "offline · reconnecting…",
      );
    };
    tick();
    this.view.status.title = why;
    this.view.retry.hidden = false;
    this.countdownTimer = setInterval(tick, countdownTickMs);
  }

  private stopCountdown(): void {
    if (this.countdownTimer !== null) clearInterval(this.countdownTimer);
    this.countdownTimer = null;
    this.view.retry.hidden = true;
    this.view.status.title = "";
  }

  // ---- chatting --------------------------------------------------------------------------------------------------

  private async openPeer(handle: string): Promise<void> {
    const { client, state, view } = this;
    if (client === null || state === null || handle === "") return;
    view.peerError.textContent = "looking up…";
    try {
      const found = await client.lookup(handle);
      if (found.account === null) {
        view.peerError.textContent = `Nobody is called ${handle}.`;
        return;
      }
      view.peerError.textContent = "";
      view.peerHandle.value = "";
      state.setLabel(found.account, handle);
      state.open(found.account);
      this.changed();
      view.messageText.focus();
    } catch (error) {
      view.peerError.textContent = `${this.words(error)}.`;
    }
  }

  private say(text: string): void {
    const { client, state, view } = this;
    const to = state?.selected ?? null;
    if (client === null || state === null || to === null || text.trim() === "") return;
    view.messageText.value = "";
    const message = state.outgoing(to, text);
    this.changed();
    if (this.e2e === null) return;
    this.e2e
      .send(to, utf8.encode(text))
      .then(({ clientId }) => {
        this.showSafetyNumber();
        state.stored(message, clientId);
        this.saveSoon();
      })
      .catch((error: unknown) => state.failed(message, this.words(error)))
      .finally(() => this.changed());
  }

  /** Encrypts and uploads an image, then sends its reference to the peer and this account's other devices. */
  private async sendImage(file: File): Promise<void> {
    const { client, state } = this;
    const to = state?.selected ?? null;
    if (client === null || state === null || to === null) return;
    const message = state.outgoing(to, `[image] ${file.name}`);
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (file.type.startsWith("image/") && bytes.length <= imageBytesMax) {
      this.imageUrls.set(message.id, URL.createObjectURL(new Blob([bytes], { type: file.type })));
    }
    this.changed();
    try {
      const recipients = to === state.account ? [to] : [to, state.account];
      const ref = await client.uploadMedia(bytes, recipients);
      const reference: FileMessage = { name: file.name, type: file.type || null, ref };
      this.files.set(message.id, reference);
      // The reference holds the file's key: it goes end-to-end encrypted, as a text does.
      if (this.e2e === null) throw new Error("end-to-end encryption is not ready yet");
      const { clientId } = await this.e2e.send(to, encodeFileMessage(reference));
      state.stored(message, clientId);
      this.saveSoon();
    } catch (error) {
      state.failed(message, this.words(error));
    }
    this.changed();
  }

  /** Downloads, verifies and decrypts a received image once; the page redraws when it is ready. */
  private loadImage(id: number, file: FileMessage): void {
    if (this.client === null || this.imageUrls.has(id)) return;
    this.imageUrls.set(id, "loading");
    this.client
      .downloadMedia(file.ref)
      .then((bytes) => {
        this.imageUrls.set(
          id,
          URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: file.type ?? "" })),
        );
      })
      .catch((error: unknown) => {
        console.warn("switchboard: image", error);
        this.imageUrls.set(id, "failed");
      })
      .finally(() => this.changed());
  }

  /** Read receipts for the received messages on screen (only while the page is visible). */
  private sendReadReceipts(): void {
    const { client, state } = this;
    if (client === null || state === null || document.visibilityState !== "visible") return;
    const receipts = state.takeReadReceipts();
    for (const receipt of receipts) client.receipt(receipt.to, receipt.toDevice, receipt.clientIds);
    if (receipts.length > 0) this.saveHistorySoon();
  }

  private askForget(ask: boolean): void {
    this.view.forget.hidden = ask;
    this.view.forgetConfirm.hidden = !ask;
    if (ask) this.view.forgetNo.focus();
  }

  private async forget(): Promise<void> {
    if (this.historyTimer !== null) clearTimeout(this.historyTimer);
    this.historyTimer = null;
    this.state = null; // nothing is saved again
    await this.client?.close();
    this.e2e?.close();
    await this.store.clear().catch(() => {});
    await this.e2eStore.clear().catch(() => {});
    await this.history.clear().catch(() => {});
    location.reload();
  }

  // ---- storing ---------------------------------------------------------------------------------------------------

  private saveSoon(): void {
    if (this.saveTimer !== null) return;
    this.saveTimer = setTimeout(() => this.saveNow(), saveDelayMs);
  }

  /** Keeps the next client id with the identity (ids keep increasing across visits). */
  private saveNow(): void {
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    const { client, identity } = this;
    if (client === null || identity === null || client.nextClientId <= identity.nextClientId) return;
    this.identity = { ...identity, nextClientId: client.nextClientId };
    void this.store.save(this.identity).catch(() => {});
  }

  private saveHistorySoon(): void {
    if (this.historyTimer !== null) return;
    this.historyTimer = setTimeout(() => this.saveHistoryNow(), historySaveDelayMs);
  }

  private saveHistoryNow(): void {
    if (this.historyTimer !== null) clearTimeout(this.historyTimer);
    this.historyTimer = null;
    if (this.state !== null) void this.history.save(this.state.snapshot()).catch(() => {});
  }

  // ---- the view --------------------------------------------------------------------------------------------------

  /** Something the page shows changed: draw it, and keep it for the next visit. */
  private changed(): void {
    this.render();
    this.saveHistorySoon();
  }

  private showChat(): void {
    this.view.setup.hidden = true;
    this.view.chat.hidden = false;
    if (this.identity !== null) {
      const { handle, account, device } = this.identity;
      this.view.me.textContent = `${handle ?? "?"} · account ${account}, device ${device}`;
    }
    this.render();
  }

  private showKeyInfo(problem: string | null): void {
    this.view.keyInfo.textContent =
      problem === null
        ? "Device key: Ed25519, non-extractable, stored in this browser (IndexedDB)."
        : "Device key: Ed25519, non-extractable, kept in this tab only.";
    if (problem !== null) {
      this.notice(
        "warning",
        `This browser cannot keep the device key (${problem}): it lives in this tab only; closing the tab loses this device.`,
      );
    }
  }

  /** The selected conversation's safety number (Signal's 60 digits), once a session with the peer exists. */
  private showSafetyNumber(): void {
    const account = this.state?.selected ?? null;
    this.safetyShownFor = account;
    const field = this.view.safetyNumber;
    if (account === null || this.e2e === null) {
      field.textContent = "";
      return;
    }
    field.textContent = "Safety number: computing…";
    void this.e2e
      .safetyNumber(account)
      .then((number) => {
        if (this.safetyShownFor !== account) return;
        field.textContent =
          number === null
            ? "End-to-end encrypted. Safety number: after the first message."
            : `End-to-end encrypted. Safety number: ${number.replace(/(\d{5})(?=\d)/g, "$1 ")}`;
      })
      .catch(() => {
        field.textContent = "";
      });
  }

  private notice(level: "warning" | "error", text: string): void {
    this.view.notice.textContent = text;
    this.view.notice.dataset.level = level;
    this.view.notice.hidden = false;
  }

  private setStatus(state: string, text: string): void {
    this.view.status.dataset.state = state;
    this.view.status.textContent = text;
  }

  private render(): void {
    const { state, view } = this;
    if (state === null) return;
    const conversations = state.list();
    if (conversations.length === 0) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "No conversations yet: type someone's handle above, or wait for a message.";
      view.conversations.replaceChildren(empty);
    } else {
      view.conversations.replaceChildren(...conversations.map((conversation) => this.conversationItem(conversation)));
    }
    const selected = state.selected === null ? undefined : state.conversations.get(state.selected);
    view.chat.dataset.view = selected === undefined ? "list" : "conversation";
    view.peerTitle.textContent = selected === undefined ? "Pick someone to talk to" : state.label(selected.account);
    if (selected?.account !== this.safetyShownFor) this.showSafetyNumber();
    view.messageText.disabled = selected === undefined;
    view.sendButton.disabled = selected === undefined;
    view.imageButton.disabled = selected === undefined;
    view.messages.replaceChildren(...(selected?.messages ?? []).map((message) => this.messageItem(message)));
    view.messages.lastElementChild?.scrollIntoView({ block: "end" });
    this.sendReadReceipts();
  }

  private conversationItem(conversation: ReturnType<ChatState["list"]>[number]): HTMLLIElement {
    const state = this.state!;
    const item = document.createElement("li");
    item.setAttribute("aria-current", String(conversation.account === state.selected));
    item.dataset.account = String(conversation.account);
    const button = document.createElement("button");
    button.type = "button";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = state.label(conversation.account);
    button.append(name);
    const last = conversation.messages.at(-1);
    if (last !== undefined) {
      const time = document.createElement("time");
      time.className = "last";
      time.dateTime = new Date(last.timeMs).toISOString();
      time.textContent = formatTime(last.timeMs);
      button.append(time);
    }
    if (conversation.unread > 0 && conversation.account !== state.selected) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = String(conversation.unread);
      button.append(badge);
    }
    if (last !== undefined) {
      const preview = document.createElement("span");
      preview.className = "preview";
      preview.textContent = `${last.mine ? "you: " : ""}${last.text}`;
      button.append(preview);
    }
    button.addEventListener("click", () => {
      state.open(conversation.account);
      this.changed();
      this.view.messageText.focus();
    });
    item.append(button);
    return item;
  }

  private messageItem(message: ChatMessage): HTMLLIElement {
    const item = document.createElement("li");
    item.className = message.mine ? "message mine" : "message";
    item.dataset.id = String(message.id);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    const meta = document.createElement("span");
    meta.className = "meta";
    if (!message.mine) {
      const sender = document.createElement("span");
      sender.className = "sender";
      sender.textContent = this.state!.senderLabel(message);
      meta.append(sender);
    }
    const time = document.createElement("time");
    time.dateTime = new Date(message.timeMs).toISOString();
    time.textContent = formatTime(message.timeMs);
    meta.append(time);
    if (message.mine) {
      item.dataset.mark = message.mark;
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = message.error === null ? markText[message.mark] : `${markText.failed}: ${message.error}`;
      mark.title = message.mark;
      meta.append(mark);
    }
    item.append(text);
    const file = this.files.get(message.id);
    if (file !== undefined && file.type?.startsWith("image/") === true && file.ref.size <= imageBytesMax + 16) {
      const url = this.imageUrls.get(message.id);
      if (url === undefined) this.loadImage(message.id, file);
      else if (url === "failed") text.textContent = `${message.text} (could not be fetched)`;
      else if (url !== "loading") {
        const image = document.createElement("img");
        image.src = url;
        image.alt = file.name;
        item.append(image);
      }
    } else if (file === undefined && message.mine && this.imageUrls.has(message.id)) {
      const url = this.imageUrls.get(message.id)!;
      const image = document.createElement("img");
      image.src = url;
      image.alt = message.text;
      item.append(image);
    }
    item.append(meta);
    return item;
  }
}

async function main(): Promise<void> {
  const [store, history, e2eStore] = await Promise.all([
    KeyStore.open(),
    HistoryStore.open(),
    IndexedDbE2eStore.open(),
  ]);
  await new WebChat(serverUrl(location), store, history, e2eStore).start();
}

if (typeof document !== "undefined") {
  main().catch((error: unknown) => {
    const notice = document.getElementById("notice");
    if (notice !== null) {
      notice.textContent = `The chat could not start: ${error instanceof Error ? error.message : String(error)}`;
      notice.dataset.level = "error";
      notice.hidden = false;
    }
  });
}
