// The key directory (PROTOCOL.md, "Key directory"; issue 15): devices publish the public keys others need to start
// a Signal session with them, and fetch each other's bundles. It stores public keys only, in the device's partition,
// and never sees a message. Both requests run on the owner of the account whose keys they touch (connection.ts and
// routing-mesh.ts send them there): an upload on the owner of the uploading device, a fetch on the owner of the
// target account, so the one-time prekeys of a device are consumed by one process, in one transaction each.

import { ErrorCode, type KeysFetchStanza, type KeysUploadStanza, type PublicPreKey } from "../protocol/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import { KeyFetchLimiter } from "./keys-fetch-limiter.ts";
import { identityChangeReceiptType } from "./keys-identity-event.ts";
import { djbKeyType, signedPreKeyValid } from "./keys-signature.ts";
import type { Session } from "./session.ts";

/** Signal's registration ids are 14 bits (KeyHelper.generateRegistrationId). */
const registrationIdMax = 0x3fff;
/** The dictionary version that has keysLow (tokens.ts). */
const keysLowDictionary = 3;

export class KeyDirectory {
  private readonly limiter = new KeyFetchLimiter();

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
  ) {}

  /** keysUpload from the session's own device (run by the owner of the session's account). */
  async upload(session: Session, stanza: KeysUploadStanza): Promise<void> {
    const { io, limits, metrics, storage, now } = this.context;
    const invalid = (message: string) => {
      metrics.keyUploads.incLabel("invalid");
      metrics.errors.incLabel("keysInvalid");
      io.send(session, { kind: "error", code: ErrorCode.keysInvalid, clientId: stanza.clientId, message });
    };
    const problem = shapeProblem(stanza);
    if (problem !== null) return invalid(problem);
    if (!(await signedPreKeyValid(stanza.identityKey, stanza.signedPreKey.publicKey, stanza.signedPreKey.signature))) {
      return invalid("the signed prekey's signature does not verify with the identity key");
    }
    const lastResort = stanza.lastResortKey;
    if (
      lastResort !== null &&
      !(await signedPreKeyValid(stanza.identityKey, lastResort.publicKey, lastResort.signature))
    ) {
      return invalid("the last-resort key's signature does not verify with the identity key");
    }
    const key = { account: session.account, device: session.device };
    const result = await storage.keys.publish(key, stanza, limits.keysStoredPreKeysMax, now());
    if (result.status === "noDevice") {
      io.send(session, { kind: "error", code: ErrorCode.unknownDevice, clientId: stanza.clientId, message: null });
      return;
    }
    if (result.status === "tooMany") {
      metrics.keyUploads.incLabel("tooMany");
      metrics.errors.incLabel("keysInvalid");
      io.send(session, {
        kind: "error",
        code: ErrorCode.keysInvalid,
        clientId: stanza.clientId,
        message: `the server keeps at most ${limits.keysStoredPreKeysMax} one-time prekeys (${result.oneTimePreKeysLeft} stored)`,
      });
      return;
    }
    metrics.keyUploads.incLabel("stored");
    io.send(session, {
      kind: "keysUploaded",
      clientId: stanza.clientId,
      oneTimePreKeysLeft: result.oneTimePreKeysLeft,
    });
    if (result.identityChangedFor !== null) {
      metrics.identityChanges.inc();
      this.context.log.info("identity_changed", { ...key, fetchers: result.identityChangedFor.length });
      for (const fetcher of result.identityChangedFor) await this.queueIdentityChange(fetcher, key.account, key.device);
    }
  }

  /** An identity-change event for every device of `fetcher`, through the durable queues (keys-identity-event.ts). */
  private async queueIdentityChange(fetcher: number, account: number, device: number): Promise<void> {
    const intent = {
      type: identityChangeReceiptType,
      fromAccount: account,
      fromDevice: device,
      senderDevice: device,
      clientIds: [],
      createdAtMs: this.context.now(),
    };
    const routing = this.context.routing;
    if (routing !== null && !routing.owns(fetcher)) routing.receipt(fetcher, intent);
    else await this.delivery.queueReceipts(fetcher, intent);
  }

  /** keysFetch for `stanza.account` (run by the owner of that account). */
  async fetch(session: Session, stanza: KeysFetchStanza): Promise<void> {
    const { io, limits, metrics, storage, now, directory } = this.context;
    if (!this.limiter.take(session.account, session.device, stanza.account, now(), limits)) {
      metrics.keyFetches.incLabel("rateLimited");
      metrics.errors.incLabel("keysRateLimited");
      io.send(session, {
        kind: "error",
        code: ErrorCode.keysRateLimited,
        clientId: stanza.clientId,
        message: `at most ${limits.keysFetchBurst} bundle fetches per account, then one every ${limits.keysFetchRefillMs / 1000} s`,
      });
      return;
    }
    const devices = await directory.load(stanza.account);
    if (devices === undefined) {
      metrics.keyFetches.incLabel("unknownAccount");
      io.send(session, { kind: "error", code: ErrorCode.unknownAccount, clientId: stanza.clientId, message: null });
      return;
    }
    const taken = await storage.keys.take(
      stanza.account,
      devices,
      session.account,
      limits.keysFetchersPerDeviceMax,
      now(),
    );
    metrics.keyFetches.incLabel("ok");
    io.send(session, {
      kind: "keyBundles",
      clientId: stanza.clientId,
      account: stanza.account,
      bundles: taken.map(({ oneTimePreKeysLeft: _, ...bundle }) => bundle),
    });
    for (const bundle of taken) {
      metrics.keyBundlesServed.incLabel(bundle.lastResort ? "lastResort" : bundle.preKey === null ? "none" : "oneTime");
      // Told once on the way down (crossing the threshold) and once more when the last one went.
      const left = bundle.oneTimePreKeysLeft;
      if (bundle.lastResort || bundle.preKey === null) continue;
      if (left !== limits.keysLowThreshold - 1 && left !== 0) continue;
      const owner = this.context.router.find(stanza.account, bundle.device);
      if (owner === undefined || !owner.isOpen || owner.dictionaryVersion < keysLowDictionary) continue;
      io.send(owner, { kind: "keysLow", oneTimePreKeysLeft: left, threshold: limits.keysLowThreshold });
    }
  }
}

/** What is wrong with an upload's keys besides their signatures (the codec checked the field types and sizes). */
function shapeProblem(stanza: KeysUploadStanza): string | null {
  if (stanza.registrationId < 1 || stanza.registrationId > registrationIdMax) {
    return `registrationId must be 1..${registrationIdMax}`;
  }
  const keys: PublicPreKey[] = [stanza.signedPreKey, ...stanza.oneTimePreKeys];
  if (stanza.lastResortKey !== null) keys.push(stanza.lastResortKey);
  if (stanza.identityKey[0] !== djbKeyType) return "identityKey must be a Curve25519 key (type byte 0x05)";
  for (const key of keys) if (key.publicKey[0] !== djbKeyType) return `key ${key.keyId} is not a Curve25519 key`;
  const ids = new Set(stanza.oneTimePreKeys.map((key) => key.keyId));
  if (ids.size !== stanza.oneTimePreKeys.length) return "one-time prekey ids must be distinct";
  if (stanza.lastResortKey !== null && ids.has(stanza.lastResortKey.keyId)) {
    return "the last-resort key's id must differ from the one-time prekeys'";
  }
  return null;
}
