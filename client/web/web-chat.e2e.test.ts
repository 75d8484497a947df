// The web chat end to end in a real browser: Debian's Chromium (/usr/bin/chromium) driven by playwright-core, against
// a server in this process with the WebSocket listener and the web client on, registration by invite. Two users
// register in two browser contexts (separate storage), chat both ways, and the page shows ✓ sent (the peer is
// offline), ✓✓ delivered (the peer's page is open on another conversation) and read (the peer opened it); the peer
// logs in again with the non-extractable key its browser kept in IndexedDB. At a phone's width (390 px) the page is
// one column at a time and never wider than the screen; senders are named by handle, messages carry times and survive
// a reload, a lost server shows a live countdown whose "retry now" reconnects at once, registration errors are in
// words, and forgetting the device asks first. End to end encrypted: the SDK (E2eSession) in this process and the page
// talk through an in-process server; and the real programs, two terminal chats (`switchboard chat`) and the page,
// talk through a server process whose data directory and log output hold none of their texts. Screenshots go to
// test-artifacts/.
// Without Chromium the tests skip and print why (`npm run setup:browser` installs it); with
// REQUIRE_BROWSER_TESTS=1, as .ci/run sets after that setup step, a missing Chromium fails them instead.

import { afterEach, test as bunTest, describe, expect } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { freePort } from "../../server/test-kit.ts";
import { cleanups, limits, runCleanups, startInProcessServer, temporaryDataDir } from "../delivery-suite.ts";
import { E2eSession } from "../e2e-session.ts";
import { MemoryE2eStore } from "../e2e-store.ts";
import { SwitchboardClient } from "../switchboard-client.ts";

const chromiumPath = "/usr/bin/chromium";
const browserSkipped = !existsSync(chromiumPath) && process.env.REQUIRE_BROWSER_TESTS !== "1";
if (browserSkipped) {
  console.warn(
    `SKIPPED: the web chat's end-to-end tests: no browser at ${chromiumPath} (npm run setup:browser installs Debian's chromium)`,
  );
}
const test = bunTest.skipIf(browserSkipped);
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const artifactsDirectory = new URL("../../test-artifacts/", import.meta.url).pathname;
const testTimeoutMs = 30_000;
/** Each browser wait (a selector, a navigation, the launch). */
const stepTimeoutMs = 8000;

afterEach(runCleanups);

/** A page of the chat with its errors collected (a page error fails the test). */
interface ChatPage {
  readonly page: Page;
  readonly errors: string[];
}

async function openChat(context: BrowserContext, url: string): Promise<ChatPage> {
  const page = await context.newPage();
  page.setDefaultTimeout(stepTimeoutMs);
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console error: ${message.text()}`);
  });
  await page.goto(url);
  return { page, errors };
}

async function register(chat: ChatPage, handle: string, invite: string): Promise<void> {
  const { page } = chat;
  await page.locator("#setup").waitFor({ state: "visible" });
  await page.fill("#register-handle", handle);
  await page.fill("#register-invite", invite);
  await page.click("#register-button");
  await online(page);
  await page.locator("#chat").waitFor({ state: "visible" });
  // Its Signal keys are in the server's directory: a message to it can be encrypted for it.
  await page.locator('#key-info[data-e2e="published"]').waitFor({ state: "attached" });
}

async function online(page: Page): Promise<void> {
  await page.locator('#status[data-state="online"]').waitFor();
}

async function openPeer(page: Page, handle: string): Promise<void> {
  await page.fill("#peer-handle", handle);
  await page.press("#peer-handle", "Enter");
  await page.locator("#peer-title", { hasText: handle }).waitFor();
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#message-text", text);
  await page.press("#message-text", "Enter");
}

/** Waits until our message `text` carries `mark` and returns the mark's visible text. */
async function markOf(page: Page, text: string, mark: string): Promise<string> {
  const message = page.locator(`li.message.mine[data-mark="${mark}"]`, { hasText: text });
  await message.waitFor();
  return (await message.locator(".mark").textContent()) ?? "";
}

/** What the page's IndexedDB holds for the device key (read in the page: the key never leaves the browser). */
function storedKey(page: Page): Promise<{ algorithm: string; extractable: boolean; usages: string[] } | null> {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("switchboard-web-chat");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const request = open.result.transaction("identity").objectStore("identity").get("device");
          request.onerror = () => reject(request.error);
          request.onsuccess = () => {
            const key = (request.result as { keyPair?: { privateKey?: CryptoKey } } | undefined)?.keyPair?.privateKey;
            open.result.close();
            resolve(
              key === undefined
                ? null
                : { algorithm: key.algorithm.name, extractable: key.extractable, usages: [...key.usages] },
            );
          };
        };
      }),
  );
}

/** Debian's Chromium with a fresh, empty profile (closed after the test). Missing: the test fails, it is not skipped. */
async function launchChromium(): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `${chromiumPath} is missing: the web chat's end-to-end test drives Debian's Chromium; install Debian's chromium: apt-get install -y chromium`,
    );
  }
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, timeout: stepTimeoutMs });
  cleanups.push(() => browser.close());
  return browser;
}

/** A server with the web client on and registration by invite; returns the page URL and `count` invite codes. */
async function webServer(
  count: number,
  config: { mediaPort?: number } = {},
): Promise<{ url: string; invites: string[] }> {
  const dataDir = temporaryDataDir();
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const server = await startInProcessServer({
    dataDir,
    config: { registration: "invite", webClient: "on", ...config },
  });
  cleanups.push(() => server.stop({ timeoutMs: 1000 }));
  const invites = Array.from({ length: count }, () => `e2e-${crypto.randomUUID()}`);
  const now = Date.now();
  for (const code of invites) await server.server.context.storage.invites.issue(code, now, now + 3_600_000);
  return { url: `http://127.0.0.1:${server.wsPort}/`, invites };
}

describe("web chat in headless Chromium", () => {
  test(
    "two users register in two browser contexts, chat both ways, and see sent, delivered and read marks",
    async () => {
      const browser = await launchChromium();
      const { url, invites } = await webServer(2);
      const aliceContext = await browser.newContext({ viewport: { width: 900, height: 560 } });
      const bobContext = await browser.newContext({ viewport: { width: 900, height: 560 } });
      const alice = await openChat(aliceContext, url);
      let bob = await openChat(bobContext, url);

      await register(alice, "alice", invites[0]!);
      await register(bob, "bob", invites[1]!);
      expect(await alice.page.textContent("#me")).toContain("alice");
      expect(await alice.page.textContent("#key-info")).toContain("non-extractable, stored in this browser");
      expect(await storedKey(alice.page)).toEqual({ algorithm: "Ed25519", extractable: false, usages: ["sign"] });

      // Bob is away: alice's message is stored by the server, ✓ sent.
      await bob.page.close();
      await openPeer(alice.page, "bob");
      await say(alice.page, "hello bob");
      expect(await markOf(alice.page, "hello bob", "sent")).toBe("✓");

      // Bob comes back: the page logs in with the key kept in IndexedDB, no registration. The message lands in a
      // conversation bob has not opened: ✓✓ delivered, not read.
      bob = await openChat(bobContext, url);
      await online(bob.page);
      expect(await bob.page.isVisible("#setup")).toBe(false);
      expect(await bob.page.textContent("#me")).toContain("bob");
      await bob.page.locator("#conversations .unread", { hasText: "1" }).waitFor();
      expect(await markOf(alice.page, "hello bob", "delivered")).toBe("✓✓");

      // Bob opens the conversation (by handle: the same account): the message is on screen, alice sees read.
      await openPeer(bob.page, "alice");
      await bob.page.locator("li.message:not(.mine)", { hasText: "hello bob" }).waitFor();
      expect(await markOf(alice.page, "hello bob", "read")).toBe("✓✓ read");
      expect(await bob.page.locator("#conversations li").count()).toBe(1);

      // And back: alice has bob's conversation open, so bob's reply is read at once.
      await say(bob.page, "hi alice");
      await alice.page.locator("li.message:not(.mine)", { hasText: "hi alice" }).waitFor();
      expect(await markOf(bob.page, "hi alice", "read")).toBe("✓✓ read");
      await say(alice.page, "see you");
      await bob.page.locator("li.message:not(.mine)", { hasText: "see you" }).waitFor();
      await markOf(alice.page, "see you", "read");

      mkdirSync(artifactsDirectory, { recursive: true });
      await alice.page.screenshot({ path: join(artifactsDirectory, "web-chat.png") });
      await bob.page.screenshot({ path: join(artifactsDirectory, "web-chat-bob.png") });
      expect([...alice.errors, ...bob.errors]).toEqual([]);
    },
    testTimeoutMs,
  );

  test(
    "fallbacks with a visible note: no IndexedDB keeps the key in the tab; no Ed25519 blocks registration",
    async () => {
      const browser = await launchChromium();
      const { url, invites } = await webServer(1);

      const noStorage = await browser.newContext();
      await noStorage.addInitScript(() => Object.defineProperty(window, "indexedDB", { value: undefined }));
      const carol = await openChat(noStorage, url);
      await register(carol, "carol", invites[0]!);
      expect(await carol.page.textContent("#notice")).toContain("lives in this tab only");
      expect(await carol.page.textContent("#key-info")).toContain("kept in this tab only");

      const noEd25519 = await browser.newContext();
      await noEd25519.addInitScript(() => {
        const generateKey = crypto.subtle.generateKey.bind(crypto.subtle);
        crypto.subtle.generateKey = ((algorithm: AlgorithmIdentifier, ...rest: unknown[]) =>
          (typeof algorithm === "string" ? algorithm : algorithm.name) === "Ed25519"
            ? Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError"))
            : (generateKey as (...args: unknown[]) => Promise<unknown>)(algorithm, ...rest)) as never;
      });
      const dave = await openChat(noEd25519, url);
      await dave.page.locator('#notice[data-level="error"]', { hasText: "no Ed25519 in WebCrypto" }).waitFor();
      expect(await dave.page.isDisabled("#register-button")).toBe(true);
      expect([...carol.errors, ...dave.errors]).toEqual([]);
    },
    testTimeoutMs,
  );

  test(
    "an image: encrypted and uploaded to the media listener by one page, downloaded, decrypted and shown by the other",
    async () => {
      const browser = await launchChromium();
      const { url, invites } = await webServer(2, { mediaPort: freePort() });
      const alice = await openChat(await browser.newContext(), url);
      const bob = await openChat(await browser.newContext(), url);
      await register(alice, "alice", invites[0]!);
      await register(bob, "bob", invites[1]!);
      await openPeer(alice.page, "bob");
      await openPeer(bob.page, "alice");
      // A 2x2 PNG, red.
      const png = Buffer.from(
        "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==",
        "base64",
      );
      await alice.page.setInputFiles("#image-input", { name: "red.png", mimeType: "image/png", buffer: png });
      await markOf(alice.page, "[image] red.png", "read");
      const shown = bob.page.locator("li.message:not(.mine) img[alt='red.png']");
      await shown.waitFor();
      const width = await shown.evaluate(
        (image) =>
          new Promise<number>((resolve) => {
            const element = image as HTMLImageElement;
            if (element.complete) resolve(element.naturalWidth);
            else element.onload = () => resolve(element.naturalWidth);
          }),
      );
      expect(width).toBe(2);
      expect(await alice.page.locator("li.message.mine img").count()).toBe(1);
      expect([...alice.errors, ...bob.errors]).toEqual([]);
    },
    testTimeoutMs,
  );

  test("a phone and a desktop: one column at a time, names, times, history across a reload, retry now, words, forget", async () => {
    const browser = await launchChromium();
    const dataDir = temporaryDataDir();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const wsPort = freePort();
    const config = { registration: "invite", webClient: "on" } as const;
    let server = await startInProcessServer({ dataDir, wsPort, config });
    cleanups.push(() => server.stop({ timeoutMs: 1000 }));
    const url = `http://127.0.0.1:${server.wsPort}/`;
    const invites = [`e2e-${crypto.randomUUID()}`, `e2e-${crypto.randomUUID()}`];
    const now = Date.now();
    for (const code of invites) await server.server.context.storage.invites.issue(code, now, now + 3_600_000);
    const phone = { width: 390, height: 844 };
    const aliceContext = await browser.newContext({ viewport: phone });
    const bobContext = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const alice = await openChat(aliceContext, url);
    const bob = await openChat(bobContext, url);
    mkdirSync(artifactsDirectory, { recursive: true });

    // Registration refused: in words, not `inviteInvalid (106): ...`.
    await alice.page.locator("#setup").waitFor({ state: "visible" });
    await alice.page.fill("#register-handle", "alice");
    await alice.page.click("#register-button");
    await alice.page.locator("#setup-error", { hasText: "needs an invite to register" }).waitFor();
    await alice.page.fill("#register-invite", "not-a-code");
    await alice.page.click("#register-button");
    await alice.page.locator("#setup-error", { hasText: "this invite code is unknown or already used" }).waitFor();
    expect(await alice.page.textContent("#setup-error")).not.toContain("inviteInvalid");
    await alice.page.screenshot({ path: join(artifactsDirectory, "web-chat-phone-setup.png") });
    await register(alice, "alice", invites[0]!);
    await register(bob, "bob", invites[1]!);

    // The phone shows the list alone, nothing wider than the screen.
    const widths = () =>
      alice.page.evaluate(() => ({
        page: document.documentElement.scrollWidth,
        composerRight: document.getElementById("composer")!.getBoundingClientRect().right,
        inputWidth: document.getElementById("message-text")!.getBoundingClientRect().width,
      }));
    expect(await alice.page.isVisible("#conversations")).toBe(true);
    expect(await alice.page.isVisible("#messages")).toBe(false);
    expect((await widths()).page).toBeLessThanOrEqual(phone.width);
    await alice.page.screenshot({ path: join(artifactsDirectory, "web-chat-phone-list.png") });

    // Then the conversation alone, its message box within the screen and wide enough to type in.
    await openPeer(alice.page, "bob");
    expect(await alice.page.isVisible("#conversations")).toBe(false);
    await say(alice.page, "hi from the phone");
    await markOf(alice.page, "hi from the phone", "delivered");
    const open = await widths();
    expect(open.page).toBeLessThanOrEqual(phone.width);
    expect(open.composerRight).toBeLessThanOrEqual(phone.width);
    expect(open.inputWidth).toBeGreaterThan(200);

    // Bob never looked alice up: the page names her by the server's reverse lookup, not #account.
    const fromAlice = bob.page.locator("#conversations li", { hasText: "alice" });
    await fromAlice.waitFor();
    expect(await bob.page.locator("#conversations li").first().textContent()).not.toMatch(/#\d/);
    await fromAlice.locator("button").click();
    const received = bob.page.locator("li.message:not(.mine)", { hasText: "hi from the phone" });
    await received.waitFor();
    expect(await received.locator(".sender").textContent()).toBe("alice");
    expect(await received.locator("time").textContent()).toMatch(/\d{1,2}.\d{2}/);
    await markOf(alice.page, "hi from the phone", "read");
    await say(bob.page, "hello phone");
    await alice.page.locator("li.message:not(.mine)", { hasText: "hello phone" }).waitFor();
    await alice.page.screenshot({ path: join(artifactsDirectory, "web-chat-phone-conversation.png") });
    await bob.page.screenshot({ path: join(artifactsDirectory, "web-chat-desktop.png") });

    // A reload keeps the messages, their marks and the open conversation.
    await bob.page.waitForTimeout(700); // the history is written half a second after a change
    await bob.page.reload();
    await bob.page.locator("#peer-title", { hasText: "alice" }).waitFor();
    await bob.page.locator("li.message:not(.mine)", { hasText: "hi from the phone" }).waitFor();
    expect(await markOf(bob.page, "hello phone", "read")).toBe("✓✓ read");
    await online(bob.page);

    // The server goes away: a live countdown, and "retry now" reconnects at once once it is back.
    await server.stop({ timeoutMs: 1000 });
    const status = bob.page.locator("#status");
    await bob.page.locator("#retry").waitFor({ state: "visible" });
    const secondsLeft = async () => Number((await status.textContent())?.match(/in (\d+) s/)?.[1] ?? 0);
    const waitUntil = Date.now() + 15_000;
    while ((await secondsLeft()) < 4 && Date.now() < waitUntil) await bob.page.waitForTimeout(100);
    const before = await secondsLeft();
    expect(before).toBeGreaterThanOrEqual(4);
    await bob.page.waitForTimeout(1100);
    expect(await secondsLeft()).toBeLessThan(before); // it counts down
    await bob.page.screenshot({ path: join(artifactsDirectory, "web-chat-desktop-offline.png") });
    server = await startInProcessServer({ dataDir, wsPort, config });
    const clickedAt = Date.now();
    await bob.page.click("#retry");
    await online(bob.page);
    expect(Date.now() - clickedAt).toBeLessThan(1500); // well before the countdown's end
    expect(await bob.page.isVisible("#retry")).toBe(false);

    // Forgetting the device asks first; "Keep" keeps it, "Forget" deletes the key and the history.
    await alice.page.click("#back");
    await alice.page.click("#forget");
    await alice.page.locator("#forget-confirm").waitFor({ state: "visible" });
    await alice.page.screenshot({ path: join(artifactsDirectory, "web-chat-phone-forget.png") });
    await alice.page.click("#forget-no");
    expect(await alice.page.isVisible("#forget-confirm")).toBe(false);
    expect(await storedKey(alice.page)).not.toBeNull();
    await alice.page.click("#forget");
    await alice.page.click("#forget-yes");
    await alice.page.locator("#setup").waitFor({ state: "visible" });
    expect(await storedKey(alice.page)).toBeNull();

    // Chromium logs each refused WebSocket connection while the server was away: expected here.
    const unexpected = (errors: string[]) => errors.filter((error) => !error.includes("WebSocket connection to"));
    expect([...unexpected(alice.errors), ...unexpected(bob.errors)]).toEqual([]);
  }, 60_000);

  test("terminal SDK <-> web page <-> terminal SDK, end to end encrypted: all decrypt, the same safety number, no plaintext on the server", async () => {
    const browser = await launchChromium();
    const dataDir = temporaryDataDir();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const server = await startInProcessServer({ dataDir, config: { registration: "open", webClient: "on" } });
    cleanups.push(() => server.stop({ timeoutMs: 1000 }));
    const url = `http://127.0.0.1:${server.wsPort}/`;
    // Two terminal users: the SDK with Signal sessions over TCP, as the terminal chat runs it.
    const terminal = async (handle: string) => {
      const client = new SwitchboardClient({ port: server.port, limits, register: { handle } });
      cleanups.push(() => client.close());
      const e2e = new E2eSession(client, new MemoryE2eStore(), { preKeysPerUpload: 8 });
      const texts: string[] = [];
      e2e.on("plaintext", (event) => void texts.push(new TextDecoder().decode(event.plaintext)));
      await client.connect();
      await e2e.whenPublished();
      return { client, e2e, texts, account: client.credentials!.account };
    };
    const carol = await terminal("carol");
    const dave = await terminal("dave");
    const context = await browser.newContext({ viewport: { width: 900, height: 560 } });
    const web = await openChat(context, url);
    await web.page.locator("#setup").waitFor({ state: "visible" });
    await web.page.fill("#register-handle", "webby");
    await web.page.click("#register-button");
    await online(web.page);
    await web.page.locator('#key-info[data-e2e="published"]').waitFor({ state: "attached" });
    const webAccount = (await carol.client.lookup("webby")).account!;

    // Terminal -> web: the page decrypts it.
    await carol.e2e.send(webAccount, new TextEncoder().encode("from the terminal, carol"));
    await web.page.locator("#conversations li", { hasText: "carol" }).click();
    await web.page.locator("li.message:not(.mine)", { hasText: "from the terminal, carol" }).waitFor();
    // Web -> terminal, both of them.
    await say(web.page, "from the page to carol");
    await waitUntil(() => carol.texts.includes("from the page to carol"));
    await openPeer(web.page, "dave");
    await say(web.page, "from the page to dave");
    await waitUntil(() => dave.texts.includes("from the page to dave"));
    await dave.e2e.send(webAccount, new TextEncoder().encode("dave answers"));
    await web.page.locator("li.message:not(.mine)", { hasText: "dave answers" }).waitFor();

    // The page shows the conversation's safety number, the same digits dave's SDK computes.
    const shown = web.page.locator("#safety-number", { hasText: /\d{5} \d{5}/ });
    await shown.waitFor({ timeout: 15_000 });
    const digits = ((await shown.textContent()) ?? "").replace(/\D/g, "");
    expect(digits).toBe((await dave.e2e.safetyNumber(webAccount)) ?? "none");
    expect(await web.page.textContent("footer")).toContain("end-to-end encrypted");

    // Nothing in the server's data directory holds a message's text.
    for (const text of ["from the terminal", "from the page", "dave answers"]) {
      expect(filesHolding(dataDir, text)).toEqual([]);
    }
    expect(web.errors).toEqual([]);
  }, 60_000);

  test("terminal chat <-> web page <-> terminal chat, real processes: every leg decrypts, the server's files and logs hold no text", async () => {
    const browser = await launchChromium();
    const dataDir = scratchDirectory("switchboard-e2e-server-");
    // The chats' key files live apart from the server's data directory: everything in that one is the server's.
    const keyDir = scratchDirectory("switchboard-e2e-keys-");
    const server = await serverProcess(dataDir);
    const port = String(server.port);
    // Unique texts per run, so that nothing else (a handle, a log field) can match them by chance.
    const run = crypto.randomUUID().slice(0, 8);
    const texts = {
      carolToPage: `carol types in her terminal to the page ${run}`,
      pageToDave: `the page writes to dave while he is away ${run}`,
      daveToCarol: `dave answers carol from terminal to terminal ${run}`,
      pageToCarol: `the page replies to carol ${run}`,
    };
    // Sent in plaintext on purpose, past the chats, by a bare SDK client: the control that shows the search below finds
    // a payload the server stored as it came, and that a terminal chat does not show an unencrypted message.
    const canary = `plaintext canary, not encrypted ${run}`;

    // Two terminal chats, each a `switchboard chat` process on the server's TCP port.
    const carolArgs = ["--prekeys", "4", "--port", port, "--key-file", join(keyDir, "carol.json")];
    const daveArgs = ["--prekeys", "4", "--port", port, "--key-file", join(keyDir, "dave.json")];
    const carol = terminalChat("carol", [...carolArgs, "--register", "carol"]);
    let dave = terminalChat("dave", [...daveArgs, "--register", "dave"]);
    for (const [chat, handle] of [
      [carol, "carol"],
      [dave, "dave"],
    ] as const) {
      await chat.expectLine(`as ${handle} (account`);
      await chat.expectLine("end-to-end keys published");
    }

    // The web page on the server's WebSocket listener.
    const context = await browser.newContext({ viewport: { width: 900, height: 560 } });
    const web = await openChat(context, `http://127.0.0.1:${server.wsPort}/`);
    await web.page.locator("#setup").waitFor({ state: "visible" });
    await web.page.fill("#register-handle", "webby");
    await web.page.click("#register-button");
    await online(web.page);
    await web.page.locator('#key-info[data-e2e="published"]').waitFor({ state: "attached" });

    // Terminal carol -> the page.
    carol.type("/to webby");
    await carol.expectLine("* talking to webby");
    carol.type(texts.carolToPage);
    await web.page.locator("#conversations li", { hasText: "carol" }).click();
    await web.page.locator("li.message:not(.mine)", { hasText: texts.carolToPage }).waitFor();

    // The page -> terminal dave, who is away: the server stores the message until dave comes back.
    dave.type("/quit");
    expect(await dave.exited()).toBe(0);
    await openPeer(web.page, "dave");
    await say(web.page, texts.pageToDave);
    expect(await markOf(web.page, texts.pageToDave, "sent")).toBe("✓");
    const bare = new SwitchboardClient({ host: "127.0.0.1", port: server.port, register: { handle: "canary" } });
    cleanups.push(() => bare.close());
    await bare.connect();
    await bare.send((await bare.lookup("dave")).account!, new TextEncoder().encode(canary));
    await bare.close();
    // Both wait in dave's queue now (the database or its write-ahead log): the canary as it came, the page's
    // message as ciphertext.
    expect(filesHolding(dataDir, canary).length).toBeGreaterThan(0);
    expect(plaintextsIn(dataDir, texts)).toEqual([]);

    // Dave's terminal again, from its key files: the page's message decrypts; the canary is announced as
    // undecryptable, never shown as a message.
    dave = terminalChat("dave", daveArgs);
    await dave.expectLine("as dave (account");
    await dave.expectLine(`webby: ${texts.pageToDave}`);
    await dave.expectLine("could not be decrypted");
    expect(dave.output()).not.toContain(canary);

    // Terminal dave -> terminal carol, and the page -> carol.
    dave.type("/to carol");
    await dave.expectLine("* talking to carol");
    dave.type(texts.daveToCarol);
    await carol.expectLine(`dave: ${texts.daveToCarol}`);
    await web.page.locator("#conversations li", { hasText: "carol" }).click();
    await web.page.locator("#peer-title", { hasText: "carol" }).waitFor();
    await say(web.page, texts.pageToCarol);
    await carol.expectLine(`webby: ${texts.pageToCarol}`);

    // Carol's terminal and the page show the same safety number for their conversation.
    carol.type("/safety");
    await carol.expectLine("safety number with webby:", 15_000);
    const terminalNumber = carol
      .output()
      .match(/safety number with webby: ([\d ]+)/)![1]!
      .replace(/\D/g, "");
    const shown = web.page.locator("#safety-number", { hasText: /\d{5} \d{5}/ });
    await shown.waitFor({ timeout: 15_000 });
    expect(((await shown.textContent()) ?? "").replace(/\D/g, "")).toBe(terminalNumber);
    expect(terminalNumber).toMatch(/^\d{60}$/);

    carol.type("/quit");
    dave.type("/quit");
    expect(await carol.exited()).toBe(0);
    expect(await dave.exited()).toBe(0);
    await context.close();
    // No text in the server's files while it runs (the write-ahead log still holds recent pages) ...
    expect(plaintextsIn(dataDir, texts)).toEqual([]);
    // ... nor after a graceful stop, nor in anything it wrote on stdout or stderr, at the debug level.
    expect(await server.stop()).toBe(0);
    expect(plaintextsIn(dataDir, texts)).toEqual([]);
    const log = Buffer.concat([server.stdout.bytes(), server.stderr.bytes()]);
    expect(log.includes("server_started")).toBe(true);
    expect(log.includes("server_stopped")).toBe(true);
    // The canary too: the server logs no payload, encrypted or not.
    expect(textsFoundIn(log, { ...texts, canary })).toEqual([]);
    expect([...carol.errors(), ...dave.errors()]).toEqual([]);
    expect(web.errors).toEqual([]);
  }, 60_000);
});

/** Files under `dir` whose bytes contain `text`. */
function filesHolding(dir: string, text: string | Uint8Array): string[] {
  const bytes = typeof text === "string" ? Buffer.from(text) : text;
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return filesHolding(path, bytes);
    return readFileSync(path).includes(bytes) ? [path] : [];
  });
}

/** Each text's bytes as UTF-8, and the hex and base64 of them (a payload logged as a string), named. */
function encodingsOf(texts: Record<string, string>): Array<{ name: string; bytes: Buffer }> {
  return Object.entries(texts).flatMap(([name, text]) => {
    const utf8 = Buffer.from(text);
    return [
      { name, bytes: utf8 },
      { name: `${name} (hex)`, bytes: Buffer.from(utf8.toString("hex")) },
      { name: `${name} (base64)`, bytes: Buffer.from(utf8.toString("base64")) },
    ];
  });
}

/** The names of `texts` found, in any of their encodings, in `content`. */
function textsFoundIn(content: Buffer, texts: Record<string, string>): string[] {
  return encodingsOf(texts)
    .filter(({ bytes }) => content.includes(bytes))
    .map(({ name }) => name);
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** "<text name> in <file>" for each of `texts` found in a file under `dir` (every file, read once, as bytes). */
function plaintextsIn(dir: string, texts: Record<string, string>): string[] {
  return filesUnder(dir).flatMap((path) => textsFoundIn(readFileSync(path), texts).map((name) => `${name} in ${path}`));
}

/** Polls `predicate` (every 10 ms, at most `timeoutMs`); the error says what was awaited. */
async function waitUntil(
  predicate: () => boolean,
  timeoutMs = stepTimeoutMs,
  what = () => "a condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await Bun.sleep(10);
  }
}

/** A fresh directory under the system's temporary one, removed after the test. */
function scratchDirectory(prefix: string): string {
  const directory = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

const repoRoot = new URL("../../", import.meta.url).pathname;
/** `switchboard`, the program an operator and a terminal user run: `start` for the server, `chat` for the chat. */
const cliPath = join(repoRoot, "server", "cli.ts");
/** How long a child process may take to start, or to exit once asked. */
const processTimeoutMs = 15_000;

/** Everything a child process writes on one stream, kept as bytes. */
class StreamCapture {
  private readonly chunks: Uint8Array[] = [];
  /** Settles when the stream ends (the process closed it, or exited). */
  readonly ended: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.ended = (async () => {
      for await (const chunk of stream) this.chunks.push(chunk);
    })().catch(() => {});
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.bytes().toString("utf8");
  }
}

/** Kills `child` after the test if it is still running. */
function killAfterTest(child: Subprocess): void {
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
}

/** The exit code of `child`, or a thrown error naming `what` after processTimeoutMs. */
async function exitOf(child: Subprocess, what: string): Promise<number | null> {
  const timedOut = Symbol("timed out");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof timedOut>((resolve) => {
    timer = setTimeout(() => resolve(timedOut), processTimeoutMs);
  });
  const code = await Promise.race([child.exited, timeout]).finally(() => clearTimeout(timer));
  if (code === timedOut) throw new Error(`${what} did not exit within ${processTimeoutMs} ms`);
  return code;
}

interface ServerProcess {
  readonly port: number;
  readonly wsPort: number;
  readonly stdout: StreamCapture;
  readonly stderr: StreamCapture;
  /** SIGTERM, a graceful stop; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * `switchboard start` as a child process on 127.0.0.1: TCP on a port of its choosing, the WebSocket listener with the
 * web page on a free one, open registration, every log line (debug) captured from its stdout and stderr.
 */
async function serverProcess(dataDir: string): Promise<ServerProcess> {
  for (let attempt = 1; ; attempt++) {
    const wsPort = freePort();
    const flags = ["--port", "0", "--admin-port", "0", "--ws-port", String(wsPort), "--web-client", "on"];
    const child = Bun.spawn(
      [process.execPath, cliPath, "start", ...flags, "--registration", "open", "--log-level", "debug"].concat([
        "--data-dir",
        dataDir,
      ]),
      {
        cwd: repoRoot,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, JOURNAL_STREAM: undefined },
      },
    );
    killAfterTest(child);
    const stdout = new StreamCapture(child.stdout);
    const stderr = new StreamCapture(child.stderr);
    // Its log lines are JSON, one a line; the last, unfinished line is not read yet.
    const started = () =>
      stdout
        .text()
        .split("\n")
        .slice(0, -1)
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((entry) => entry.event === "server_started");
    await waitUntil(
      () => started() !== undefined || child.exitCode !== null,
      processTimeoutMs,
      () => `server_started (stdout:\n${stdout.text()}\nstderr:\n${stderr.text()})`,
    );
    const line = started();
    if (line !== undefined) {
      return {
        port: Number(line.port),
        wsPort: Number(line.wsPort),
        stdout,
        stderr,
        stop: async () => {
          child.kill("SIGTERM");
          const code = await exitOf(child, "the server");
          // The last bytes of its pipes, read to their end (bounded: a pipe a grandchild kept open would not end).
          await Promise.race([Promise.all([stdout.ended, stderr.ended]), Bun.sleep(stepTimeoutMs)]);
          return code;
        },
      };
    }
    await exitOf(child, "the server");
    // The free WebSocket port was taken in between: another one.
    if (attempt < 3 && stderr.text().includes("in use")) continue;
    throw new Error(`the server did not start:\n${stdout.text()}\n${stderr.text()}`);
  }
}

interface TerminalChat {
  /** Types a line, as at the keyboard. */
  type(line: string): void;
  /** Waits until a line of its output contains `fragment`. */
  expectLine(fragment: string, timeoutMs?: number): Promise<void>;
  output(): string;
  /** What it wrote on stderr, by line. */
  errors(): string[];
  exited(): Promise<number | null>;
}

/** `switchboard chat` as a child process, its input a pipe the test types into, its output captured. */
function terminalChat(name: string, args: readonly string[]): TerminalChat {
  const child = Bun.spawn([process.execPath, cliPath, "chat", ...args], {
    cwd: repoRoot,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env },
  });
  killAfterTest(child);
  const stdout = new StreamCapture(child.stdout);
  const stderr = new StreamCapture(child.stderr);
  return {
    type(line) {
      child.stdin.write(`${line}\n`);
      child.stdin.flush();
    },
    expectLine: (fragment, timeoutMs = stepTimeoutMs) =>
      waitUntil(
        () => stdout.text().includes(fragment),
        timeoutMs,
        () => `"${fragment}" from ${name}'s terminal chat (output:\n${stdout.text()}${stderr.text()})`,
      ),
    output: () => stdout.text(),
    errors: () =>
      stderr
        .text()
        .split("\n")
        .filter((line) => line !== ""),
    exited: () => exitOf(child, `${name}'s terminal chat`),
  };
}
