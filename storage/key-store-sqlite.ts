import type { Database, Statement } from "bun:sqlite";
import type { DeviceKey } from "./device-store.ts";
import type { KeyStore, PublishedKeys, PublishResult, StoredSignedPreKey, TakenBundle } from "./key-store.ts";

// Every call is one synchronous bun:sqlite transaction: nothing else runs on this process between its statements,
// and the partition has one writer (its owner), so a one-time prekey deleted by one fetch is never handed to another.

interface DeviceKeysRow {
  registration_id: number;
  identity_key: Uint8Array;
  signed_prekey_id: number;
  signed_prekey: Uint8Array;
  signed_prekey_signature: Uint8Array;
  last_resort_id: number | null;
  last_resort_key: Uint8Array | null;
  last_resort_signature: Uint8Array | null;
}

export class SqliteKeyStore implements KeyStore {
  readonly #count: Statement<{ count: number }, [number, number]>;
  readonly #keys: Statement<DeviceKeysRow, [number, number]>;
  readonly #publish: (key: DeviceKey, keys: PublishedKeys, storedMax: number, nowMs: number) => PublishResult;
  readonly #take: (
    account: number,
    devices: readonly number[],
    fetcher: number,
    fetchersMax: number,
    nowMs: number,
  ) => TakenBundle[];

  constructor(database: Database) {
    this.#count = database.prepare(
      "select count(*) as count from one_time_prekeys where account_id = ? and device_id = ?",
    );
    this.#keys = database.prepare("select * from device_keys where account_id = ? and device_id = ?");
    const deviceExists = database.prepare<{ found: number }, [number, number]>(
      "select 1 as found from devices where account_id = ? and device_id = ?",
    );
    const upsertKeys = database.prepare<
      unknown,
      [
        number,
        number,
        number,
        Uint8Array,
        number,
        Uint8Array,
        Uint8Array,
        number | null,
        Uint8Array | null,
        Uint8Array | null,
        number,
      ]
    >(
      `insert into device_keys (account_id, device_id, registration_id, identity_key, signed_prekey_id, signed_prekey,
         signed_prekey_signature, last_resort_id, last_resort_key, last_resort_signature, updated_at)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       on conflict (account_id, device_id) do update set registration_id = excluded.registration_id,
         identity_key = excluded.identity_key, signed_prekey_id = excluded.signed_prekey_id,
         signed_prekey = excluded.signed_prekey, signed_prekey_signature = excluded.signed_prekey_signature,
         last_resort_id = coalesce(excluded.last_resort_id, last_resort_id),
         last_resort_key = coalesce(excluded.last_resort_key, last_resort_key),
         last_resort_signature = coalesce(excluded.last_resort_signature, last_resort_signature),
         updated_at = excluded.updated_at`,
    );
    const insertPreKey = database.prepare<unknown, [number, number, number, Uint8Array]>(
      `insert into one_time_prekeys (account_id, device_id, key_id, public_key) values (?, ?, ?, ?)
       on conflict do update set public_key = excluded.public_key`,
    );
    const deletePreKeys = database.prepare<unknown, [number, number]>(
      "delete from one_time_prekeys where account_id = ? and device_id = ?",
    );
    const fetchers = database.prepare<{ fetcher_account: number }, [number, number]>(
      "select fetcher_account from key_fetchers where account_id = ? and device_id = ? order by fetched_at",
    );
    const takePreKey = database.prepare<{ key_id: number; public_key: Uint8Array }, [number, number, number, number]>(
      `delete from one_time_prekeys where account_id = ? and device_id = ? and key_id =
         (select key_id from one_time_prekeys where account_id = ? and device_id = ? order by key_id limit 1)
       returning key_id, public_key`,
    );
    const noteFetcher = database.prepare<unknown, [number, number, number, number]>(
      `insert into key_fetchers (account_id, device_id, fetcher_account, fetched_at) values (?, ?, ?, ?)
       on conflict do update set fetched_at = excluded.fetched_at`,
    );
    const trimFetchers = database.prepare<unknown, [number, number, number, number, number]>(
      `delete from key_fetchers where account_id = ? and device_id = ? and fetcher_account in
         (select fetcher_account from key_fetchers where account_id = ? and device_id = ?
          order by fetched_at desc limit -1 offset ?)`,
    );

    this.#publish = database.transaction(
      (key: DeviceKey, keys: PublishedKeys, storedMax: number, nowMs: number): PublishResult => {
        if (deviceExists.get(key.account, key.device) === null) return { status: "noDevice" };
        const before = this.#keys.get(key.account, key.device);
        const changed = before !== null && !sameBytes(before.identity_key, keys.identityKey);
        // One-time prekeys of an old identity are useless to anyone: they go with it.
        if (changed) deletePreKeys.run(key.account, key.device);
        const stored = this.#count.get(key.account, key.device)!.count;
        if (stored + keys.oneTimePreKeys.length > storedMax) return { status: "tooMany", oneTimePreKeysLeft: stored };
        const lastResort = keys.lastResortKey;
        upsertKeys.run(
          key.account,
          key.device,
          keys.registrationId,
          keys.identityKey,
          keys.signedPreKey.keyId,
          keys.signedPreKey.publicKey,
          keys.signedPreKey.signature,
          lastResort?.keyId ?? null,
          lastResort?.publicKey ?? null,
          lastResort?.signature ?? null,
          nowMs,
        );
        for (const preKey of keys.oneTimePreKeys)
          insertPreKey.run(key.account, key.device, preKey.keyId, preKey.publicKey);
        const identityChangedFor = changed
          ? fetchers.all(key.account, key.device).map((row) => row.fetcher_account)
          : null;
        return {
          status: "stored",
          oneTimePreKeysLeft: this.#count.get(key.account, key.device)!.count,
          identityChangedFor,
        };
      },
    ).immediate;

    this.#take = database.transaction(
      (account: number, devices: readonly number[], fetcher: number, fetchersMax: number, nowMs: number) => {
        const bundles: TakenBundle[] = [];
        for (const device of devices) {
          const row = this.#keys.get(account, device);
          if (row === null) continue;
          const taken = takePreKey.get(account, device, account, device);
          const lastResort = lastResortOf(row);
          noteFetcher.run(account, device, fetcher, nowMs);
          trimFetchers.run(account, device, account, device, fetchersMax);
          bundles.push({
            device,
            registrationId: row.registration_id,
            identityKey: row.identity_key,
            signedPreKey: {
              keyId: row.signed_prekey_id,
              publicKey: row.signed_prekey,
              signature: row.signed_prekey_signature,
            },
            preKey: taken !== null ? { keyId: taken.key_id, publicKey: taken.public_key } : lastResort,
            lastResort: taken === null && lastResort !== null,
            oneTimePreKeysLeft: this.#count.get(account, device)!.count,
          });
        }
        return bundles;
      },
    ).immediate;
  }

  async publish(key: DeviceKey, keys: PublishedKeys, storedMax: number, nowMs: number): Promise<PublishResult> {
    return this.#publish(key, keys, storedMax, nowMs);
  }

  async take(
    account: number,
    devices: readonly number[],
    fetcher: number,
    fetchersMax: number,
    nowMs: number,
  ): Promise<TakenBundle[]> {
    return this.#take(account, devices, fetcher, fetchersMax, nowMs);
  }

  async count(key: DeviceKey): Promise<number> {
    return this.#count.get(key.account, key.device)!.count;
  }

  async has(key: DeviceKey): Promise<boolean> {
    return this.#keys.get(key.account, key.device) !== null;
  }
}

function lastResortOf(row: DeviceKeysRow): StoredSignedPreKey | null {
  if (row.last_resort_id === null || row.last_resort_key === null || row.last_resort_signature === null) return null;
  return { keyId: row.last_resort_id, publicKey: row.last_resort_key, signature: row.last_resort_signature };
}

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false;
  for (let index = 0; index < left.length; index++) if (left[index] !== right[index]) return false;
  return true;
}
