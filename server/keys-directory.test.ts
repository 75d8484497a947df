// The key directory through the real path: startTestServer on loopback, real SQLite partitions, raw protocol
// clients, and real Signal keys from the SDK's library (so the server's signature check sees what clients send).

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { KeyHelper } from "@privacyresearch/libsignal-protocol-typescript";
import { ErrorCode, encodePreamble, type KeysUploadStanza } from "../protocol/index.ts";
import { partitionFileOfAccount } from "./partitions.ts";
import { newDeviceKey, RawClient, registeredClient, startTestServer, type TestServer } from "./test-kit.ts";

const servers: TestServer[] = [];
const clients: RawClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const server of servers.splice(0)) await server.stop();
});

async function server(limits: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const started = await startTestServer(limits);
  servers.push(started);
  return started;
}

async function user(port: number, handle: string): Promise<RawClient> {
  const { client } = await registeredClient(port, handle);
  clients.push(client);
  return client;
}

const bytes = (buffer: ArrayBuffer) => new Uint8Array(buffer);

/** A device's keys as the SDK makes them: identity, signed prekey, `count` one-time prekeys from `firstId`. */
async function deviceKeys(count: number, firstId = 1, lastResort = true) {
  const identity = await KeyHelper.generateIdentityKeyPair();
  const signed = await KeyHelper.generateSignedPreKey(identity, 1);
  const last = await KeyHelper.generateSignedPreKey(identity, 0xff_ffff);
  const preKeys = await Promise.all(
    Array.from({ length: count }, (_, index) => KeyHelper.generatePreKey(firstId + index)),
  );
  const upload = (clientId: number, oneTime = preKeys): KeysUploadStanza => ({
    kind: "keysUpload",
    clientId,
    registrationId: KeyHelper.generateRegistrationId() || 1,
    identityKey: bytes(identity.pubKey),
    signedPreKey: { keyId: 1, publicKey: bytes(signed.keyPair.pubKey), signature: bytes(signed.signature) },
    oneTimePreKeys: oneTime.map((key) => ({ keyId: key.keyId, publicKey: bytes(key.keyPair.pubKey) })),
    lastResortKey: lastResort
      ? { keyId: last.keyId, publicKey: bytes(last.keyPair.pubKey), signature: bytes(last.signature) }
      : null,
  });
  return { identity, preKeys, upload };
}

async function publish(client: RawClient, stanza: KeysUploadStanza): Promise<number> {
  client.sendStanza(stanza);
  const answer = await client.next("keysUploaded", (s) => s.clientId === stanza.clientId);
  return answer.oneTimePreKeysLeft;
}

async function fetchBundles(client: RawClient, account: number) {
  const clientId = client.clientId();
  client.sendStanza({ kind: "keysFetch", clientId, account });
  return client.next("keyBundles", (s) => s.clientId === clientId);
}

describe("key directory", () => {
  test("a device publishes its keys; a fetch returns its bundle with one one-time prekey, each key once", async () => {
    const { port } = await server();
    const alice = await user(port, "alice");
    const bob = await user(port, "bob");
    const keys = await deviceKeys(3);
    expect(await publish(bob, keys.upload(bob.clientId()))).toBe(3);
    const seen: number[] = [];
    for (let round = 0; round < 3; round++) {
      const answer = await fetchBundles(alice, bob.account);
      expect(answer.bundles).toHaveLength(1);
      const bundle = answer.bundles[0]!;
      expect(bundle.device).toBe(bob.device);
      expect(bundle.identityKey).toEqual(bytes(keys.identity.pubKey));
      expect(bundle.lastResort).toBe(false);
      seen.push(bundle.preKey!.keyId);
    }
    expect(seen.sort()).toEqual([1, 2, 3]);
    // Used up: the last-resort key, as often as asked, and it stays.
    for (let round = 0; round < 2; round++) {
      const bundle = (await fetchBundles(alice, bob.account)).bundles[0]!;
      expect(bundle.lastResort).toBe(true);
      expect(bundle.preKey!.keyId).toBe(0xff_ffff);
    }
  });

  test("a bad signature, a key that is not Curve25519 or too many one-time prekeys are refused with keysInvalid", async () => {
    const { port } = await server();
    const bob = await user(port, "bob");
    const keys = await deviceKeys(2);
    const good = keys.upload(bob.clientId());
    const badSignature = { ...good, signedPreKey: { ...good.signedPreKey, signature: new Uint8Array(64).fill(7) } };
    bob.sendStanza(badSignature);
    const refused = await bob.next("error", (s) => s.clientId === good.clientId);
    expect(refused.code).toBe(ErrorCode.keysInvalid);
    const notCurve = { ...keys.upload(bob.clientId()), identityKey: new Uint8Array(33).fill(9) };
    bob.sendStanza(notCurve);
    expect((await bob.next("error", (s) => s.clientId === notCurve.clientId)).code).toBe(ErrorCode.keysInvalid);
    // testLimits: keysStoredPreKeysMax 32, keysUploadPreKeysMax 16: two uploads of 16 fit, a third does not.
    const many = await deviceKeys(16, 100);
    const more = (first: number) =>
      many.upload(bob.clientId()).oneTimePreKeys.map((key, index) => ({ ...key, keyId: first + index }));
    expect(await publish(bob, { ...many.upload(bob.clientId()), oneTimePreKeys: more(100) })).toBe(16);
    expect(await publish(bob, { ...many.upload(bob.clientId()), oneTimePreKeys: more(200) })).toBe(32);
    const third = { ...many.upload(bob.clientId()), oneTimePreKeys: more(300) };
    bob.sendStanza(third);
    expect((await bob.next("error", (s) => s.clientId === third.clientId)).code).toBe(ErrorCode.keysInvalid);
  });

  test("two fetches at once from two devices never get the same one-time prekey", async () => {
    const { port } = await server({ limits: { keysFetchBurst: 50 } });
    const bob = await user(port, "bob");
    const keys = await deviceKeys(8);
    await publish(bob, keys.upload(bob.clientId()));
    const fetchers = [await user(port, "carol"), await user(port, "dave")];
    const answers = await Promise.all(
      fetchers.flatMap((fetcher) => Array.from({ length: 5 }, () => fetchBundles(fetcher, bob.account))),
    );
    const oneTime = answers.map((answer) => answer.bundles[0]!).filter((bundle) => !bundle.lastResort);
    const ids = oneTime.map((bundle) => bundle.preKey!.keyId);
    expect(ids).toHaveLength(8);
    expect(new Set(ids).size).toBe(8);
    expect(answers.filter((answer) => answer.bundles[0]!.lastResort)).toHaveLength(2);
  });

  test("fetches are limited per requesting device and target account: a burst, then keysRateLimited", async () => {
    const { port } = await server({ limits: { keysFetchBurst: 3 } });
    const alice = await user(port, "alice");
    const bob = await user(port, "bob");
    const carol = await user(port, "carol");
    await publish(bob, (await deviceKeys(1)).upload(bob.clientId()));
    for (let round = 0; round < 3; round++) await fetchBundles(alice, bob.account);
    const clientId = alice.clientId();
    alice.sendStanza({ kind: "keysFetch", clientId, account: bob.account });
    expect((await alice.next("error", (s) => s.clientId === clientId)).code).toBe(ErrorCode.keysRateLimited);
    // Another target has its own budget.
    expect((await fetchBundles(alice, carol.account)).bundles).toEqual([]);
  });

  test("welcome says how many one-time prekeys are left, and keysLow is pushed while online", async () => {
    const { port } = await server();
    const alice = await user(port, "alice");
    const key = newDeviceKey();
    const bob = await RawClient.connect(port);
    clients.push(bob);
    const welcome = await bob.register("bob", key);
    expect(welcome.oneTimePreKeysLeft).toBe(0);
    await publish(bob, (await deviceKeys(4)).upload(bob.clientId()));
    // testLimits: keysLowThreshold 3. 4 -> 3 -> 2 (crossing: told) -> 1 -> 0 (told again).
    for (let round = 0; round < 4; round++) await fetchBundles(alice, bob.account);
    const notices = bob.all("keysLow");
    expect(notices.map((notice) => notice.oneTimePreKeysLeft)).toEqual([2, 0]);
    expect(notices[0]!.threshold).toBe(3);
    bob.close();
    const again = await RawClient.connect(port);
    clients.push(again);
    expect((await again.login(bob.account, bob.device, key)).oneTimePreKeysLeft).toBe(0);
  });

  test("a client of dictionary version 2 gets welcome without the new field, and no identityChange kind", async () => {
    const { port } = await server();
    const old = await RawClient.connect(port, { preamble: false });
    clients.push(old);
    old.write(encodePreamble({ protocolVersion: 1, dictionaryVersion: 2 }));
    old.nonce = (await old.next("challenge")).nonce;
    const welcome = await old.register("old");
    expect("oneTimePreKeysLeft" in welcome).toBe(false);
    // And it never gets a version-3 kind: an identity change it has to hear of comes as an empty delivered receipt.
    await old.next("queueEmpty");
    const bob = await user(port, "bob");
    await publish(bob, (await deviceKeys(1)).upload(bob.clientId()));
    const clientId = old.clientId();
    old.sendStanza({ kind: "keysFetch", clientId, account: bob.account });
    await old.next("keyBundles");
    await publish(bob, (await deviceKeys(1, 9)).upload(bob.clientId()));
    const standIn = await old.next("deliverReceipt");
    expect(standIn.clientIds).toEqual([]);
    expect(standIn.from).toBe(bob.account);
    expect(old.all("identityChange")).toHaveLength(0);
  });

  test("removing a device deletes its keys from its partition", async () => {
    const { port, dataDir, server: running } = await server();
    const bob = await user(port, "bob");
    const key = newDeviceKey();
    bob.sendStanza({ kind: "linkCreate", clientId: bob.clientId() });
    const code = await bob.next("linkCode");
    const second = await RawClient.connect(port);
    clients.push(second);
    await second.link(code.code, key);
    await publish(second, (await deviceKeys(3)).upload(second.clientId()));
    const countRows = () => {
      const database = new Database(partitionFileOfAccount(dataDir, bob.account), { readonly: true });
      try {
        const keys = database.query("select count(*) as n from device_keys where device_id = ?").get(second.device);
        const oneTime = database
          .query("select count(*) as n from one_time_prekeys where device_id = ?")
          .get(second.device);
        return [(keys as { n: number }).n, (oneTime as { n: number }).n];
      } finally {
        database.close();
      }
    };
    expect(countRows()).toEqual([1, 3]);
    bob.sendStanza({ kind: "deviceRemove", clientId: bob.clientId(), device: second.device });
    await second.waitClosed();
    await Bun.sleep(50);
    expect(countRows()).toEqual([0, 0]);
    expect(running).toBeDefined();
  });

  test("a new identity key queues identityChange for the accounts that fetched, delivered after they reconnect", async () => {
    const { port } = await server();
    const aliceKey = newDeviceKey();
    const alice = await RawClient.connect(port);
    clients.push(alice);
    await alice.register("alice", aliceKey);
    await alice.next("queueEmpty");
    const bob = await user(port, "bob");
    await publish(bob, (await deviceKeys(2)).upload(bob.clientId()));
    await fetchBundles(alice, bob.account);
    alice.close();
    await alice.waitClosed();
    // Bob re-registers the device's keys with a new identity (a reinstall): alice is offline.
    await publish(bob, (await deviceKeys(2, 50)).upload(bob.clientId()));
    const back = await RawClient.connect(port);
    clients.push(back);
    await back.login(alice.account, alice.device, aliceKey);
    const event = await back.next("identityChange");
    expect(event.account).toBe(bob.account);
    expect(event.device).toBe(bob.device);
    back.ack(event.seq);
    // The same keys again are no change: nothing more is queued.
    await Bun.sleep(50);
    expect(back.all("identityChange")).toHaveLength(1);
  });
});
