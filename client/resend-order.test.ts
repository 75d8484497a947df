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
