// A device's identity in a JSON file, for the terminal chat and tools (Bun/Node only: the SDK core does not import
// it). The file holds the private key: written and read as a private file (private-file.ts: 0600, atomic, a looser
// mode tightened on reading), so a crash never leaves half a key behind.

import { existsSync, readFileSync } from "node:fs";
import type { LoginCredentials } from "./client-options.ts";
import { exportKeyPairJwk, importKeyPairJwk } from "./keys.ts";
import { privateFileMode, tightenPrivateFile, writePrivateFile } from "./private-file.ts";

export const keyFileVersion = 1;
export const keyFileMode = privateFileMode;

/** What the file stores, as JSON. */
interface KeyFileJson {
  readonly version: number;
  readonly account: number;
  readonly device: number;
  readonly handle: string | null;
  /** Ed25519 private key (with its public half, `x`). */
  readonly privateKeyJwk: JsonWebKey;
  /** Next client id to use: keeps ids increasing across runs (the server's welcome raises it further if needed). */
  readonly nextClientId: number;
}

export interface DeviceIdentity {
  readonly credentials: LoginCredentials;
  readonly handle: string | null;
  readonly nextClientId: number;
}

export class KeyFileError extends Error {
  override readonly name = "KeyFileError";
}

export function keyFileExists(path: string): boolean {
  return existsSync(path);
}

export async function readKeyFile(path: string): Promise<DeviceIdentity> {
  let parsed: KeyFileJson;
  try {
    tightenPrivateFile(path);
    parsed = JSON.parse(readFileSync(path, "utf8")) as KeyFileJson;
  } catch (error) {
    throw new KeyFileError(`cannot read key file ${path}: ${(error as Error).message}`);
  }
  const isId = (value: unknown) => typeof value === "number" && Number.isInteger(value) && value > 0;
  if (parsed.version !== keyFileVersion || !isId(parsed.account) || !isId(parsed.device)) {
    throw new KeyFileError(`key file ${path}: not a version ${keyFileVersion} Switchboard key file`);
  }
  let keyPair: LoginCredentials["keyPair"];
  try {
    keyPair = await importKeyPairJwk(parsed.privateKeyJwk);
  } catch (error) {
    throw new KeyFileError(`key file ${path}: bad private key: ${(error as Error).message}`);
  }
  return {
    credentials: { account: parsed.account, device: parsed.device, keyPair },
    handle: typeof parsed.handle === "string" ? parsed.handle : null,
    nextClientId: isId(parsed.nextClientId) ? parsed.nextClientId : 1,
  };
}

export async function writeKeyFile(path: string, identity: DeviceIdentity): Promise<void> {
  const json: KeyFileJson = {
    version: keyFileVersion,
    account: identity.credentials.account,
    device: identity.credentials.device,
    handle: identity.handle,
    privateKeyJwk: await exportKeyPairJwk(identity.credentials.keyPair),
    nextClientId: identity.nextClientId,
  };
  writePrivateFile(path, `${JSON.stringify(json, null, 2)}\n`);
}
