// A send refused for now (queueFull) and retried later with its own client id, as PROTOCOL.md allows, is stored
// behind a higher id of the same sender. An outside review found the SDK's duplicate filter (one "highest id" per
// sender device) dropped it although the sender had its server-ack: 22 of 22 such retries never reached the app.
// The sender here is a raw-protocol client that follows PROTOCOL.md; the recipient is the SDK. Real sockets on
// 127.0.0.1 and a real SQLite file.

import { afterEach, expect, test } from "bun:test";
import { ErrorCode } from "../protocol/index.ts";
import { bytesOf, RawClient, startTestServer, type TestServer, textOf, waitFor } from "../server/test-kit.ts";
import { generateKeyPair, type MessageEvent, SwitchboardClient } from "./index.ts";

let running: TestServer | null = null;
const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await running?.stop();
  running = null;
});

test("a refused send retried with its own id after a higher id is stored reaches the recipient's app", async () => {
  running = await startTestServer();
  const server = running;
  const queueMax = server.config.limits.queueMessagesMax;
  const alice = await RawClient.connect(server.port);
  closers.push(() => alice.close());
  await alice.register("alice");
  await alice.next("queueEmpty");

  // Bob registers through the SDK, then goes offline.
  const bobKey = await generateKeyPair();
  const register = new SwitchboardClient({
    host: "127.0.0.1",
    port: server.port,
    limits: server.config.limits,
    register: { handle: "bob", invite: null },
    keyPair: bobKey,
  });
  await register.connect();
  const credentials = register.credentials!;
  await register.close();

  // Fill Bob's queue; the next send (id `refused`) is refused for now.
  for (let index = 0; index < queueMax; index++) alice.send(credentials.account, bytesOf(`fill ${index}`));
  await waitFor(() => alice.all("serverAck").length === queueMax, 3000, "server-acks");
  const refused = alice.send(credentials.account, bytesOf("retried later"));
  const error = await alice.next("error");
  expect(error).toMatchObject({ code: ErrorCode.queueFull, clientId: refused });

  // Bob comes online and empties his queue.
  const received: MessageEvent[] = [];
  const bob = new SwitchboardClient({
    host: "127.0.0.1",
    port: server.port,
    limits: server.config.limits,
    credentials,
  });
  closers.push(() => bob.close());
  bob.on("message", (message) => {
    received.push(message);
  });
  await bob.connect();
  await waitFor(() => received.length === queueMax, 5000, "the queue drained");

  // A later message gets a higher id; then the refused one is sent again with its own id, as PROTOCOL.md allows.
  const later = alice.send(credentials.account, bytesOf("later"));
  await alice.next("serverAck", (ack) => ack.clientId === later);
  alice.sendStanza({ kind: "send", clientId: refused, to: credentials.account, payload: bytesOf("retried later") });
  await alice.next("serverAck", (ack) => ack.clientId === refused);

  await waitFor(() => received.length === queueMax + 2, 3000, "both messages in the app");
  expect(received.slice(queueMax).map((message) => [message.clientId, textOf(message.payload)])).toEqual([
    [later, "later"],
    [refused, "retried later"],
  ]);
});

test("a sender app that dies before its server-ack sends again under the reserved id: the recipient gets it once", async () => {
  // A commit delay long enough that the first client is gone before its server-ack.
  running = await startTestServer({ limits: { commitDelayMs: 300 } });
  const server = running;
  const options = { host: "127.0.0.1", port: server.port, limits: server.config.limits };
  const alice = new SwitchboardClient({ ...options, register: { handle: "alice", invite: null } });
  await alice.connect();
  const aliceCredentials = alice.credentials!;
  const bob = new SwitchboardClient({ ...options, register: { handle: "bob", invite: null } });
  closers.push(() => bob.close());
  const received: MessageEvent[] = [];
  // Bob's app stores slowly, so his ack cannot end Alice's wait before her app dies.
  bob.on("message", async (message) => {
    received.push(message);
    await Bun.sleep(500);
  });
  await bob.connect();

  // A first message makes the server reserve sequence numbers for Bob, so the next one is pushed before its commit.
  await alice.send(bob.credentials!.account, bytesOf("warm-up"));
  await waitFor(() => received.length === 1, 2000, "the warm-up");
  received.length = 0;

  // The app keeps (id, recipient, payload) before sending, as PROTOCOL.md section 11 asks of a client.
  const kept = { clientId: alice.reserveClientId(), to: bob.credentials!.account, payload: bytesOf("sent once") };
  const firstTry = alice.send(kept.to, kept.payload, { clientId: kept.clientId });
  firstTry.catch(() => {});
  await waitFor(() => received.length === 1, 2000, "the live push before the commit");
  const nextRun = alice.nextClientId;
  await alice.close(); // the app dies: no server-ack reached it
  await expect(firstTry).rejects.toThrow();

  const again = new SwitchboardClient({ ...options, credentials: aliceCredentials, firstClientId: nextRun });
  closers.push(() => again.close());
  await again.connect();
  const result = await again.send(kept.to, kept.payload, { clientId: kept.clientId });
  expect(result.clientId).toBe(kept.clientId);
  const later = await again.send(kept.to, bytesOf("a new message"));
  expect(later.clientId).toBeGreaterThan(kept.clientId);
  await waitFor(() => received.length === 2, 2000, "the new message");
  await Bun.sleep(100);
  expect(received.map((message) => textOf(message.payload))).toEqual(["sent once", "a new message"]);
});
