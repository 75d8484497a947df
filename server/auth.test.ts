// Authentication through real sockets: signatures, unknown devices, replayed signatures, registration modes,
// invites, the login timeout, and a second login replacing the first.

import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ErrorCode, linkMessage, loginMessage, ProtocolError, registerMessage } from "../protocol/index.ts";
import { openSqliteStorage } from "../storage/index.ts";
import { handleProblem, reservedHandles } from "./handle-rules.ts";
import { InviteRefunds } from "./invite-refunds.ts";
import {
  type DeviceKey,
  newDeviceKey,
  RawClient,
  type Relay,
  registeredClient,
  signWith,
  startRelay,
  startTestServer,
  type TestServer,
  waitFor,
} from "./test-kit.ts";

let running: TestServer | null = null;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await running?.stop();
  running = null;
});

async function connect(server: TestServer, options?: { preamble?: boolean }): Promise<RawClient> {
  const client = await RawClient.connect(server.port, options);
  clients.push(client);
  return client;
}

/** Sends a register stanza with any combination of names and signatures; does not wait for the answer. */
function sendRegister(
  client: RawClient,
  options: { handle: string; key?: DeviceKey; invite?: string | null; serverName?: string | null; signedName?: string },
): void {
  const key = options.key ?? newDeviceKey();
  const serverName = options.serverName === undefined ? client.serverName : options.serverName;
  const signedName = options.signedName ?? serverName ?? client.serverName;
  client.sendStanza({
    kind: "register",
    invite: options.invite ?? null,
    handle: options.handle,
    publicKey: key.publicKey,
    signature: signWith(key, registerMessage(client.nonce!, signedName, options.handle)),
    serverName,
  });
}

/** The next welcome or error, whichever comes first. */
async function outcome(client: RawClient): Promise<"welcome" | number> {
  await waitFor(
    () => client.received.some((stanza) => stanza.kind === "welcome" || stanza.kind === "error"),
    5000,
    "welcome or error",
  );
  const first = client.received.find((stanza) => stanza.kind === "welcome" || stanza.kind === "error")!;
  client.received.splice(client.received.indexOf(first), 1);
  return first.kind === "error" ? first.code : "welcome";
}

async function issueInvites(server: TestServer, ...codes: string[]): Promise<void> {
  const storage = await openSqliteStorage({ path: join(server.dataDir, "switchboard.sqlite") });
  for (const code of codes) await storage.invites.issue(code, Date.now(), Date.now() + 60_000);
  await storage.close();
}

describe("login", () => {
  test("a device logs in with a signature of the server's nonce", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const again = await connect(running);
    const welcome = await again.login(alice.account, alice.device, key);
    expect(welcome).toMatchObject({ account: alice.account, device: alice.device });
  });

  test("a wrong key gets badCredentials and the session is closed", async () => {
    running = await startTestServer();
    const { client: alice } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const intruder = await connect(running);
    const wrongKey = newDeviceKey();
    intruder.sendStanza({
      kind: "login",
      account: alice.account,
      device: 1,
      signature: signWith(wrongKey, loginMessage(intruder.nonce!, intruder.serverName, alice.account, 1)),
      serverName: intruder.serverName,
    });
    expect((await intruder.next("error")).code).toBe(ErrorCode.badCredentials);
    await intruder.waitClosed();
    expect(intruder.all("welcome")).toHaveLength(0);
  });

  test("an unknown device or account gets the same badCredentials", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    for (const [account, device] of [
      [alice.account, 7],
      [999, 1],
    ] as const) {
      const stranger = await connect(running);
      stranger.sendStanza({
        kind: "login",
        account,
        device,
        signature: signWith(key, loginMessage(stranger.nonce!, stranger.serverName, account, device)),
        serverName: stranger.serverName,
      });
      expect((await stranger.next("error")).code).toBe(ErrorCode.badCredentials);
      await stranger.waitClosed();
    }
  });

  test("a replayed login signature (from another connection's nonce) is refused", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const first = await connect(running);
    const serverName = first.serverName;
    const signature = signWith(key, loginMessage(first.nonce!, serverName, alice.account, 1));
    first.sendStanza({ kind: "login", account: alice.account, device: 1, signature, serverName });
    await first.next("welcome");

    const replay = await connect(running);
    expect(replay.nonce).not.toEqual(first.nonce);
    replay.sendStanza({ kind: "login", account: alice.account, device: 1, signature, serverName });
    expect((await replay.next("error")).code).toBe(ErrorCode.badCredentials);
    await replay.waitClosed();
  });

  test("a stolen database holds no secret: the stored public key alone cannot log in", async () => {
    running = await startTestServer();
    const { client: alice } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const storage = await openSqliteStorage({ path: join(running.dataDir, "switchboard.sqlite") });
    const record = await storage.devices.get({ account: alice.account, device: 1 });
    await storage.close();
    expect(record?.publicKey.length).toBe(32);
    // What the thief has is the public key; signing with anything else fails.
    const thief = await connect(running);
    thief.sendStanza({
      kind: "login",
      account: alice.account,
      device: 1,
      signature: signWith(newDeviceKey(), loginMessage(thief.nonce!, thief.serverName, alice.account, 1)),
      serverName: thief.serverName,
    });
    expect((await thief.next("error")).code).toBe(ErrorCode.badCredentials);
  });

  test("no login within loginTimeoutMs closes the session with loginTimeout", async () => {
    running = await startTestServer({ limits: { loginTimeoutMs: 200 } });
    const idle = await connect(running);
    const error = await idle.next("error", () => true, 2000);
    expect(error.code).toBe(ErrorCode.loginTimeout);
    await idle.waitClosed();
    // A connection that never sends the preamble is closed by the same deadline.
    const silent = await connect(running, { preamble: false });
    await silent.waitClosed(2000);
  });

  test("a second login of the same device replaces the first with a goaway", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const second = await connect(running);
    await second.login(alice.account, 1, key);
    const goaway = await alice.next("goaway");
    expect(goaway.code).toBe(ErrorCode.replaced);
    await alice.waitClosed();
    expect(second.closed).toBe(false);
  });
});

describe("the signed server name (relays)", () => {
  let relay: Relay | null = null;
  afterEach(() => {
    relay?.stop();
    relay = null;
  });

  test("a login through a relay dialed by another name gets wrongServer; direct, the same key logs in", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    relay = startRelay(running.port);

    const relayed = await RawClient.connect(relay.port, { serverName: "relay.example" });
    clients.push(relayed);
    expect(relay.bytesFromServer()).toBeGreaterThan(0); // the challenge came from the real server, through the relay
    void relayed.login(alice.account, 1, key).catch(() => {});
    const refused = await relayed.next("error");
    expect(refused.code).toBe(ErrorCode.wrongServer);
    expect(refused.message).toContain("relay.example");
    await relayed.waitClosed();
    expect(relayed.all("welcome")).toHaveLength(0);

    // The relay is transparent: dialed by a name the server has, the same bytes pass. Only the name differs.
    const named = await RawClient.connect(relay.port, { serverName: "localhost" });
    clients.push(named);
    expect((await named.login(alice.account, 1, key)).account).toBe(alice.account);

    const direct = await connect(running);
    expect((await direct.login(alice.account, 1, key)).account).toBe(alice.account);
  });

  test("register and link through the relay get wrongServer, and the link code stays unused", async () => {
    running = await startTestServer();
    const { client: alice } = await registeredClient(running.port, "alice");
    clients.push(alice);
    relay = startRelay(running.port);

    const registering = await RawClient.connect(relay.port, { serverName: "relay.example" });
    clients.push(registering);
    void registering.register("bob").catch(() => {});
    expect((await registering.next("error")).code).toBe(ErrorCode.wrongServer);
    await registering.waitClosed();

    alice.sendStanza({ kind: "linkCreate", clientId: alice.clientId() });
    const { code } = await alice.next("linkCode");
    const linking = await RawClient.connect(relay.port, { serverName: "relay.example" });
    clients.push(linking);
    void linking.link(code, newDeviceKey()).catch(() => {});
    expect((await linking.next("error")).code).toBe(ErrorCode.wrongServer);
    await linking.waitClosed();

    const phone = await connect(running);
    expect((await phone.link(code, newDeviceKey())).device).toBe(2);
    const bob = await connect(running);
    expect((await bob.register("bob")).device).toBe(1);
  });

  test("the name is bound by the signature: signed for one of the server's names, sent as another", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const swapped = await connect(running);
    swapped.sendStanza({
      kind: "login",
      account: alice.account,
      device: 1,
      signature: signWith(key, loginMessage(swapped.nonce!, "localhost", alice.account, 1)),
      serverName: "127.0.0.1",
    });
    expect((await swapped.next("error")).code).toBe(ErrorCode.badCredentials);
    await swapped.waitClosed();
  });

  test("a login without a server name (a client from before it) gets wrongServer", async () => {
    running = await startTestServer();
    const { client: alice, key } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const old = await connect(running);
    // What a v1 client signed: the label, the nonce and the ids, no name.
    const v1 = new Uint8Array([
      ...new TextEncoder().encode("switchboard-login-v1"),
      ...old.nonce!,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      1,
    ]);
    old.sendStanza({
      kind: "login",
      account: alice.account,
      device: 1,
      signature: signWith(key, v1),
      serverName: null,
    });
    expect((await old.next("error")).code).toBe(ErrorCode.wrongServer);
    await old.waitClosed();
  });

  test("serverNames replaces the loopback defaults; the listen address stays a name", async () => {
    running = await startTestServer({ serverNames: "Chat.Example.com" });
    const { client: alice, key } = await registeredClient(running.port, "alice"); // signs 127.0.0.1: the host
    clients.push(alice);
    const public_ = await RawClient.connect(running.port, { serverName: "chat.example.com." });
    clients.push(public_);
    expect(public_.serverName).toBe("chat.example.com");
    expect((await public_.login(alice.account, 1, key)).account).toBe(alice.account);
    const local = await RawClient.connect(running.port, { serverName: "localhost" });
    clients.push(local);
    void local.login(alice.account, 1, key).catch(() => {});
    expect((await local.next("error")).code).toBe(ErrorCode.wrongServer);
  });

  test("the signed messages name the server (golden bytes in PROTOCOL.md section 9)", () => {
    const nonce = Uint8Array.from({ length: 32 }, (_, index) => index);
    const login = loginMessage(nonce, "chat.example.com", 1_000_001, 1);
    expect(Buffer.from(login).toString("hex")).toBe(
      "737769746368626f6172642d6c6f67696e2d7632" +
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
        "10636861742e6578616d706c652e636f6d000f424100000001",
    );
    // The length byte keeps name and tail apart: "ab" + "c" and "a" + "bc" sign different bytes.
    expect(registerMessage(nonce, "ab", "cde")).not.toEqual(registerMessage(nonce, "abc", "de"));
    expect(linkMessage(nonce, "ab", "c")).not.toEqual(linkMessage(nonce, "a", "bc"));
    expect(() => loginMessage(nonce, "", 1, 1)).toThrow(RangeError);
    expect(() => loginMessage(nonce, "x".repeat(254), 1, 1)).toThrow(RangeError);
  });
});

describe("registration", () => {
  test("invite mode needs a valid one-time code", async () => {
    running = await startTestServer({ registration: "invite" });
    const storage = await openSqliteStorage({ path: join(running.dataDir, "switchboard.sqlite") });
    await storage.invites.issue("invite-code-1", Date.now(), Date.now() + 60_000);
    await storage.close();

    const noInvite = await connect(running);
    noInvite.sendStanza({ kind: "ping" });
    await noInvite.next("pong");
    const key = newDeviceKey();
    const withoutCode = noInvite.register("alice", key, null);
    expect((await noInvite.next("error")).code).toBe(ErrorCode.inviteInvalid);
    void withoutCode.catch(() => {});

    const invited = await connect(running);
    const welcome = await invited.register("alice", key, "invite-code-1");
    expect(welcome.device).toBe(1);

    const reused = await connect(running);
    void reused.register("bob", newDeviceKey(), "invite-code-1").catch(() => {});
    expect((await reused.next("error")).code).toBe(ErrorCode.inviteInvalid);
  });

  test("closed mode refuses registration; taken and invalid handles are refused", async () => {
    running = await startTestServer({ registration: "closed" });
    const client = await connect(running);
    void client.register("alice").catch(() => {});
    expect((await client.next("error")).code).toBe(ErrorCode.registrationClosed);
    await client.waitClosed();
    await running.stop();

    running = await startTestServer({ registration: "open" });
    const { client: alice } = await registeredClient(running.port, "alice");
    clients.push(alice);
    const taken = await connect(running);
    void taken.register("alice").catch(() => {});
    expect((await taken.next("error")).code).toBe(ErrorCode.handleTaken);
    const invalid = await connect(running);
    void invalid.register("No Spaces!").catch(() => {});
    expect((await invalid.next("error")).code).toBe(ErrorCode.handleInvalid);
  });

  test("the invite is checked before the handle: without a valid invite nobody learns that a handle is taken", async () => {
    running = await startTestServer({ registration: "invite" });
    await issueInvites(running, "invite-a");
    const first = await connect(running);
    expect((await first.register("alice", newDeviceKey(), "invite-a")).device).toBe(1);

    const prober = await connect(running);
    sendRegister(prober, { handle: "alice", invite: "no-such-invite" });
    expect(await outcome(prober)).toBe(ErrorCode.inviteInvalid);
    sendRegister(prober, { handle: "alice", invite: null });
    expect(await outcome(prober)).toBe(ErrorCode.inviteInvalid);
    sendRegister(prober, { handle: "alice", invite: "invite-a" }); // used
    expect(await outcome(prober)).toBe(ErrorCode.inviteInvalid);
    sendRegister(prober, { handle: "nobody-has-this", invite: "no-such-invite" });
    expect(await outcome(prober)).toBe(ErrorCode.inviteInvalid);
    expect(prober.closed).toBe(false);
  });

  test("an invite used on a taken handle is not burned: it works again, on the same or a later connection", async () => {
    running = await startTestServer({ registration: "invite" });
    await issueInvites(running, "invite-a", "invite-b", "invite-c");
    const first = await connect(running);
    await first.register("alice", newDeviceKey(), "invite-a");

    const same = await connect(running);
    sendRegister(same, { handle: "alice", invite: "invite-b" });
    expect(await outcome(same)).toBe(ErrorCode.handleTaken);
    sendRegister(same, { handle: "alice", invite: "invite-b" }); // twice: still given back
    expect(await outcome(same)).toBe(ErrorCode.handleTaken);
    sendRegister(same, { handle: "bob", invite: "invite-b" });
    expect(await outcome(same)).toBe("welcome");

    const before = await connect(running);
    sendRegister(before, { handle: "bob", invite: "invite-c" });
    expect(await outcome(before)).toBe(ErrorCode.handleTaken);
    before.close();
    const later = await connect(running);
    sendRegister(later, { handle: "carol", invite: "invite-c" });
    expect(await outcome(later)).toBe("welcome");
    // ... and then it is used up.
    const after = await connect(running);
    sendRegister(after, { handle: "dave", invite: "invite-c" });
    expect(await outcome(after)).toBe(ErrorCode.inviteInvalid);
  });

  test("registrations racing for one invite: exactly one wins, given back or not", async () => {
    running = await startTestServer({ registration: "invite" });
    await issueInvites(running, "invite-race", "invite-taken");
    const first = await connect(running);
    await first.register("alice", newDeviceKey(), "invite-taken");
    // invite-taken is used; take it back through a failed registration so that the refund path races too.
    const racers = await Promise.all(Array.from({ length: 6 }, () => connect(running!)));
    racers.forEach((racer, index) => {
      sendRegister(racer, { handle: `racer-${index}`, invite: "invite-race" });
    });
    const results = await Promise.all(racers.map((racer) => outcome(racer)));
    expect(results.filter((result) => result === "welcome")).toHaveLength(1);
    expect(results.filter((result) => result === ErrorCode.inviteInvalid)).toHaveLength(5);

    const giver = await connect(running);
    await issueInvites(running, "invite-refund");
    sendRegister(giver, { handle: "alice", invite: "invite-refund" });
    expect(await outcome(giver)).toBe(ErrorCode.handleTaken);
    const again = await Promise.all(Array.from({ length: 4 }, () => connect(running!)));
    again.forEach((racer, index) => {
      sendRegister(racer, { handle: `again-${index}`, invite: "invite-refund" });
    });
    const second = await Promise.all(again.map((racer) => outcome(racer)));
    expect(second.filter((result) => result === "welcome")).toHaveLength(1);
    expect(second.filter((result) => result === ErrorCode.inviteInvalid)).toHaveLength(3);
  });

  test("reserved and punctuation-only handles are handleInvalid; the connection stays open", async () => {
    running = await startTestServer({ registration: "open" });
    const client = await connect(running);
    for (const handle of [
      "admin",
      "root",
      "support",
      "switchboard",
      "ad.min",
      "_root_",
      "s-u-p-p-o-r-t",
      "...",
      "-_-",
    ]) {
      sendRegister(client, { handle });
      expect([handle, await outcome(client)]).toEqual([handle, ErrorCode.handleInvalid]);
    }
    expect(client.closed).toBe(false);
    sendRegister(client, { handle: "admin2" });
    expect(await outcome(client)).toBe("welcome");
  });

  test("the order of the checks: closed, server name, signature, handle, invite, taken", async () => {
    running = await startTestServer({ registration: "closed" });
    const closed = await connect(running);
    sendRegister(closed, { handle: "admin", serverName: "relay.example" });
    expect(await outcome(closed)).toBe(ErrorCode.registrationClosed);
    await running.stop();

    running = await startTestServer({ registration: "invite" });
    const wrongName = await connect(running);
    sendRegister(wrongName, { handle: "admin", serverName: "relay.example" });
    expect(await outcome(wrongName)).toBe(ErrorCode.wrongServer);
    const badSignature = await connect(running);
    sendRegister(badSignature, { handle: "admin", signedName: "localhost" });
    expect(await outcome(badSignature)).toBe(ErrorCode.badCredentials);
    const reserved = await connect(running);
    sendRegister(reserved, { handle: "admin", invite: null });
    expect(await outcome(reserved)).toBe(ErrorCode.handleInvalid);
    sendRegister(reserved, { handle: "fine", invite: null });
    expect(await outcome(reserved)).toBe(ErrorCode.inviteInvalid);
  });

  test("handle rules and invite refunds, unit by unit", () => {
    expect(handleProblem("alice", 32)).toBeNull();
    expect(handleProblem("a.b", 32)).toBeNull();
    expect(handleProblem("Alice", 32)).toBe("pattern");
    expect(handleProblem("ab", 32)).toBe("pattern");
    expect(handleProblem("x".repeat(33), 32)).toBe("pattern");
    expect(handleProblem("._-", 32)).toBe("noLetterOrDigit");
    expect(handleProblem("web.master", 32)).toBe("reserved");
    for (const name of ["admin", "root", "support", "switchboard"]) expect(reservedHandles.has(name)).toBe(true);

    const refunds = new InviteRefunds(2);
    refunds.give("a", 100);
    expect(refunds.take("a", 99)).toBe(true);
    expect(refunds.take("a", 99)).toBe(false); // once
    refunds.give("b", 100);
    expect(refunds.take("b", 100)).toBe(false); // lapsed
    refunds.give("c", 100);
    refunds.give("d", 100);
    refunds.give("e", 100); // past entriesMax: the oldest (c) goes
    expect(refunds.size).toBe(2);
    expect(refunds.take("c", 0)).toBe(false);
    expect(refunds.take("e", 0)).toBe(true);
  });

  test("a link code works once", async () => {
    running = await startTestServer();
    const { client: alice } = await registeredClient(running.port, "alice");
    clients.push(alice);
    alice.sendStanza({ kind: "linkCreate", clientId: alice.clientId() });
    const { code } = await alice.next("linkCode");
    const phone = await connect(running);
    expect((await phone.link(code, newDeviceKey())).device).toBe(2);
    const again = await connect(running);
    void again.link(code, newDeviceKey()).catch(() => {});
    expect((await again.next("error")).code).toBe(ErrorCode.linkCodeInvalid);
  });

  test("ProtocolError carries its code and action", () => {
    const error = new ProtocolError(ErrorCode.badCredentials, "x");
    expect(error.action).toBe("stop");
  });
});
