// Authentication through real sockets: signatures, unknown devices, replayed signatures, registration modes,
// invites, the login timeout, and a second login replacing the first.

import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ErrorCode, loginMessage, ProtocolError } from "../protocol/index.ts";
import { openSqliteStorage } from "../storage/index.ts";
import { newDeviceKey, RawClient, registeredClient, signWith, startTestServer, type TestServer } from "./test-kit.ts";

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
      signature: signWith(wrongKey, loginMessage(intruder.nonce!, alice.account, 1)),
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
        signature: signWith(key, loginMessage(stranger.nonce!, account, device)),
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
    const signature = signWith(key, loginMessage(first.nonce!, alice.account, 1));
    first.sendStanza({ kind: "login", account: alice.account, device: 1, signature });
    await first.next("welcome");

    const replay = await connect(running);
    expect(replay.nonce).not.toEqual(first.nonce);
    replay.sendStanza({ kind: "login", account: alice.account, device: 1, signature });
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
      signature: signWith(newDeviceKey(), loginMessage(thief.nonce!, alice.account, 1)),
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
