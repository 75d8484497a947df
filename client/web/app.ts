// The web chat page (client/web/index.html): the client SDK over WebSocket in the browser. Bundled for browsers by
// server/web-client-bundle.ts when the server serves it (webClient on). Registers this browser as a device with a handle
// and an invite code, or logs in again with the key kept in IndexedDB (key-store.ts: a non-extractable WebCrypto
// Ed25519 key); picks a peer by handle; shows ✓ sent (the server stored it), ✓✓ delivered, and read; sends read
// receipts for the messages on screen. Payloads are the UTF-8 text, NOT encrypted (as the terminal chat, so the two
// talk to each other): a real app encrypts end to end. All user text goes into the page as text, never as HTML.

import { ErrorCode } from "../../protocol/index.ts";
import { ClientError, type ClientOptions, generateKeyPair, SwitchboardClient } from "../index.ts";
import { type ChatMessage, ChatState, type Mark } from "./chat-state.ts";
import { checkKeySupport, KeyStore, type StoredIdentity } from "./key-store.ts";

/** Replaced by the server's wsPath when bundled (server/web-client-bundle.ts); "/ws" otherwise. */
declare const __SWITCHBOARD_WS_PATH__: string | undefined;

/** Waits before writing the next client id to IndexedDB (many sends, one write). */
const saveDelayMs = 1000;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

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

function describe(error: unknown): string {
  if (error instanceof ClientError) return `${error.message} (${error.codeName})`;
  return error instanceof Error ? error.message : String(error);
}

class WebChat {
  private client: SwitchboardClient | null = null;
  private state: ChatState | null = null;
  private identity: StoredIdentity | null = null;
  private handle: string | null = null;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;

  private readonly view = {
    me: byId("me"),
    status: byId("status"),
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
    peerTitle: byId("peer-title"),
    messages: byId<HTMLOListElement>("messages"),
    composer: byId<HTMLFormElement>("composer"),
    messageText: byId<HTMLInputElement>("message-text"),
    sendButton: byId<HTMLButtonElement>("send-button"),
  };

  constructor(
    private readonly url: string,
    private readonly store: KeyStore,
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
    view.forget.addEventListener("click", () => void this.forget());
    document.addEventListener("visibilitychange", () => this.sendReadReceipts());
    window.addEventListener("pagehide", () => this.saveNow());
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
      this.notice("warning", `The stored device key cannot be read: ${describe(error)}.`);
    }
    this.showKeyInfo(this.store.problem);
    if (identity === null) {
      this.view.setup.hidden = false;
      this.view.registerHandle.focus();
      return;
    }
    this.login(identity);
  }

  // ---- connecting ------------------------------------------------------------------------------------------------

  private async register(handle: string, invite: string): Promise<void> {
    const { view } = this;
    if (handle === "") return;
    view.registerButton.disabled = true;
    view.setupError.textContent = "";
    this.handle = handle;
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
      view.setupError.textContent = `Registration failed: ${describe(error)}`;
      this.setStatus("offline", "offline");
      view.registerButton.disabled = false;
    }
  }

  private login(identity: StoredIdentity): void {
    this.identity = identity;
    this.handle = identity.handle;
    this.state = new ChatState(identity.account, identity.device, identity.handle);
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
    client.on("connected", (event) => {
      // Before any delivery of this connection: the state exists when the queue drains.
      this.state ??= new ChatState(event.account, event.device, this.handle);
      this.view.me.textContent = `${this.handle ?? "?"} · account ${event.account}, device ${event.device}`;
      this.setStatus("online", "online");
    });
    client.on("disconnected", (event) => {
      if (event.willReconnect) {
        const seconds = ((event.retryInMs ?? 0) / 1000).toFixed(1);
        this.setStatus("reconnecting", `reconnecting in ${seconds} s (${event.reason})`);
        return;
      }
      this.setStatus("stopped", `stopped: ${event.reason}`);
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
          `The server no longer accepts this device (${event.reason}). "Forget this device" and register again.`,
        );
      }
    });
    client.on("message", (event) => {
      this.state?.incoming({
        from: event.from,
        fromDevice: event.fromDevice,
        clientId: event.clientId,
        text: utf8Decoder.decode(event.payload),
        timeSeconds: event.timeSeconds,
      });
      this.render();
    });
    client.on("receipt", (event) => {
      if (this.state?.receipt(event)) this.render();
    });
    client.on("error", (error) => console.warn("switchboard:", error));
    return client;
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
      this.render();
      view.messageText.focus();
    } catch (error) {
      view.peerError.textContent = describe(error);
    }
  }

  private say(text: string): void {
    const { client, state, view } = this;
    const to = state?.selected ?? null;
    if (client === null || state === null || to === null || text.trim() === "") return;
    view.messageText.value = "";
    const message = state.outgoing(to, text);
    this.render();
    client
      .send(to, utf8.encode(text))
      .then(({ clientId }) => {
        state.stored(message, clientId);
        this.saveSoon();
      })
      .catch((error: unknown) => state.failed(message, describe(error)))
      .finally(() => this.render());
  }

  /** Read receipts for the received messages on screen (only while the page is visible). */
  private sendReadReceipts(): void {
    const { client, state } = this;
    if (client === null || state === null || document.visibilityState !== "visible") return;
    for (const receipt of state.takeReadReceipts()) client.receipt(receipt.to, receipt.toDevice, receipt.clientIds);
  }

  private async forget(): Promise<void> {
    if (!window.confirm("Forget this device? Its key is deleted; the account cannot be used from here again.")) return;
    await this.client?.close();
    await this.store.clear().catch(() => {});
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

  // ---- the view --------------------------------------------------------------------------------------------------

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
    view.conversations.replaceChildren(
      ...state.list().map((conversation) => {
        const item = document.createElement("li");
        item.setAttribute("aria-current", String(conversation.account === state.selected));
        item.dataset.account = String(conversation.account);
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = state.label(conversation.account);
        if (conversation.unread > 0 && conversation.account !== state.selected) {
          const badge = document.createElement("span");
          badge.className = "unread";
          badge.textContent = String(conversation.unread);
          button.append(badge);
        }
        button.addEventListener("click", () => {
          state.open(conversation.account);
          this.render();
        });
        item.append(button);
        return item;
      }),
    );
    const selected = state.selected === null ? undefined : state.conversations.get(state.selected);
    view.peerTitle.textContent = selected === undefined ? "Pick someone to talk to" : state.label(selected.account);
    view.messageText.disabled = selected === undefined;
    view.sendButton.disabled = selected === undefined;
    view.messages.replaceChildren(...(selected?.messages ?? []).map((message) => this.messageItem(message)));
    view.messages.lastElementChild?.scrollIntoView({ block: "end" });
    this.sendReadReceipts();
  }

  private messageItem(message: ChatMessage): HTMLLIElement {
    const item = document.createElement("li");
    item.className = message.mine ? "message mine" : "message";
    item.dataset.id = String(message.id);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    item.append(text);
    if (message.mine) {
      item.dataset.mark = message.mark;
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = message.error === null ? markText[message.mark] : `${markText.failed}: ${message.error}`;
      mark.title = message.mark;
      item.append(mark);
    }
    return item;
  }
}

async function main(): Promise<void> {
  const store = await KeyStore.open();
  await new WebChat(serverUrl(location), store).start();
}

if (typeof document !== "undefined") {
  main().catch((error: unknown) => {
    const notice = document.getElementById("notice");
    if (notice !== null) {
      notice.textContent = `The chat could not start: ${describe(error)}`;
      notice.dataset.level = "error";
      notice.hidden = false;
    }
  });
}
