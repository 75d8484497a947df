// The server's Noise static key (PROTOCOL.md section 19): generated at first start into the data directory, mode
// 0600, and kept for the directory's life, since clients pin its public half. `switchboard noise-key` prints the public
// key for the operator to publish. Workers of one supervisor share the file: the first to start creates it
// atomically (written under a temporary name, then linked into place), the others read it.

import { chmodSync, existsSync, linkSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type NoiseKeyPair, noiseKeyPair } from "../protocol/noise-handshake.ts";

export const noiseStaticKeyFileName = "noise-static-key";
export const noiseStaticKeyFileMode = 0o600;

export class NoiseStaticKeyError extends Error {
  override readonly name = "NoiseStaticKeyError";
}

const hexLength = 64;

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Reads the key of `dataDir`; null when there is none yet. A damaged file or loose permissions stop the start. */
export function readNoiseStaticKey(dataDir: string): NoiseKeyPair | null {
  const path = join(dataDir, noiseStaticKeyFileName);
  if (!existsSync(path)) return null;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new NoiseStaticKeyError(`${path} is readable by others (mode ${mode.toString(8)}): chmod 600 it`);
  }
  const text = readFileSync(path, "utf8").trim();
  if (!new RegExp(`^[0-9a-f]{${hexLength}}$`).test(text)) {
    throw new NoiseStaticKeyError(`${path} is not a Noise private key (64 hex digits); restore it from a backup`);
  }
  return noiseKeyPair(fromHex(text));
}

/** The key of `dataDir`, generated (0600) when the directory has none. */
export function loadNoiseStaticKey(dataDir: string): NoiseKeyPair {
  const existing = readNoiseStaticKey(dataDir);
  if (existing !== null) return existing;
  const generated = noiseKeyPair();
  const path = join(dataDir, noiseStaticKeyFileName);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${hex(generated.privateKey)}\n`, { mode: noiseStaticKeyFileMode });
  chmodSync(temporary, noiseStaticKeyFileMode);
  try {
    linkSync(temporary, path);
  } catch (error) {
    // Another worker linked its key first: use that one.
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    unlinkSync(temporary);
  }
  return readNoiseStaticKey(dataDir)!;
}
