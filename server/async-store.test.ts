// The delivery pipeline against an asynchronous store: every store call resolves after a random delay (as a
// network database's would), while two senders send, the recipient acks, re-logs in at once (with an ack racing the
// re-login), and sends read receipts. At the end the contract is checked: every server-acked message reached the
// recipient, in server-ack order per sender, each sequence number meaning one entry. Real sockets on 127.0.0.1 and a
// real SQLite file behind the delays.

import { afterEach, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../protocol/fuzz.ts";
import { ReceiptType, type StanzaOf } from "../protocol/index.ts";
import { delayedStorage, openSqliteStorage, type Storage } from "../storage/index.ts";
import { createLogger } from "./log.ts";
import { type RunningServer, startServer } from "./server.ts";
import {
  bytesOf,
  type DeviceKey,
  newDeviceKey,
  RawClient,
  temporaryDirectory,
  testConfig,
  textOf,
  waitFor,
} from "./test-kit.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Steps of the random schedule; each is one action, so the run is bounded. */
const stepsMax = 240;

for (const seed of [1, 2, 3]) {
  test(`seed ${seed}: acked messages all arrive, in order, each seq one entry, with a store that answers late`, async () => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const inner = await openSqliteStorage({ path: join(dataDir, "switchboard.sqlite") });
    const storage: Storage = delayedStorage(inner, { random: mulberry32(seed), delayMsMax: 4 });
    const config = testConfig({
      dataDir,
      limits: { rateStanzasPerSecond: 1000, rateBurstStanzas: 1000, queueMessagesMax: 1000, commitDelayMs: seed },
    });
    const server: RunningServer = await startServer(config, {
      log: createLogger("warn", (line) => process.stderr.write(line)),
      storage,
    });
    cleanups.push(async () => {
      await server.stop({ timeoutMs: 1000 });
      await inner.close();
    });
    const random = mulberry32(seed + 1000);

    const connect = async () => {
      const client = await RawClient.connect(server.port);
      cleanups.push(() => client.close());
      return client;
    };
    const alice = await connect();
    await alice.register("alice");
    const carol = await connect();
    await carol.register("carol");
    const bobKey: DeviceKey = newDeviceKey();
    let bob = await connect();
    const bobWelcome = await bob.register("bob", bobKey);
    const bobAccount = bobWelcome.account;

    // What Bob's application stored, and what each seq meant the first time Bob saw it.
    const stored = new Map<string, number>(); // "account:clientId" -> first seq
    const seqMeaning = new Map<number, string>();
    const firstOrder: string[] = [];
    const seen = new Set<StanzaOf<"deliver">>();
    const absorb = (client: RawClient) => {
      for (const deliver of client.all("deliver")) {
        if (seen.has(deliver)) continue;
        seen.add(deliver);
        const id = `${deliver.from}:${deliver.clientId}`;
        const meaning = seqMeaning.get(deliver.seq);
        if (meaning === undefined) seqMeaning.set(deliver.seq, `${id}:${textOf(deliver.payload)}`);
        else expect(meaning).toBe(`${id}:${textOf(deliver.payload)}`);
        if (!stored.has(id)) {
          stored.set(id, deliver.seq);
          firstOrder.push(id);
        }
      }
    };
    const ackLatest = (client: RawClient) => {
      const delivers = client.all("deliver");
      if (delivers.length > 0) client.ack(delivers.at(-1)!.seq);
    };

    let aliceSent = 0;
    let carolSent = 0;
    for (let step = 0; step < stepsMax; step++) {
      const roll = random();
      if (roll < 0.3) {
        alice.send(bobAccount, bytesOf(`a${step}`));
        aliceSent++;
      } else if (roll < 0.6) {
        carol.send(bobAccount, bytesOf(`c${step}`));
        carolSent++;
      } else if (roll < 0.8) {
        absorb(bob);
        ackLatest(bob);
      } else if (roll < 0.9) {
        // The ack races the re-login: written, then the connection closes and a new one logs in at once.
        absorb(bob);
        if (random() < 0.5) ackLatest(bob);
        const highestSeen = Math.max(0, ...bob.all("deliver").map((deliver) => deliver.seq));
        bob.close();
        bob = await connect();
        await bob.login(bobAccount, bobWelcome.device, bobKey);
        // A client that carries its highest seq into the new connection (PROTOCOL.md says not to): everything up
        // to it was stored by the app, and a seq means one entry forever, so this deletes nothing unseen. (Acking
        // beyond what the app holds would be the client's own loss: entries in flight to it would be deleted.)
        if (random() < 0.3 && highestSeen > 0) bob.ack(highestSeen);
      } else {
        const fromAlice = bob.all("deliver").filter((deliver) => deliver.from === alice.account);
        const last = fromAlice.at(-1);
        if (last !== undefined) {
          bob.sendStanza({
            kind: "receipt",
            type: ReceiptType.read,
            to: alice.account,
            toDevice: 1,
            clientIds: [last.clientId],
          });
        }
      }
      if (step % 8 === 0) await Bun.sleep(1);
    }

    // Quiesce: every send answered, then Bob drains everything with acks.
    const answered = (client: RawClient, sent: number) =>
      client.all("serverAck").length + client.all("error").length >= sent;
    await waitFor(() => answered(alice, aliceSent) && answered(carol, carolSent), 10_000, "every send answered");
    absorb(bob);
    bob.close();
    const last = await connect();
    await last.login(bobAccount, bobWelcome.device, bobKey);
    const deadline = Date.now() + 10_000;
    while (last.all("queueEmpty").length === 0 && Date.now() < deadline) {
      absorb(last);
      ackLatest(last);
      await Bun.sleep(5);
    }
    absorb(last);
    expect(last.all("queueEmpty").length).toBe(1);

    // No error but the ones a receipt may get (none expected here) and none of the senders'.
    expect(alice.all("error")).toEqual([]);
    expect(carol.all("error")).toEqual([]);
    for (const [sender, name] of [
      [alice, "alice"],
      [carol, "carol"],
    ] as const) {
      const acked = sender.all("serverAck").map((ack) => `${sender.account}:${ack.clientId}`);
      for (const id of acked) expect(stored.has(id), `${name}'s ${id} reached Bob`).toBe(true);
      // Order: Bob first saw this sender's messages in the order of their server-acks.
      expect(firstOrder.filter((id) => id.startsWith(`${sender.account}:`))).toEqual(acked);
    }
  }, 30_000);
}
