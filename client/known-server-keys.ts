// Trust on first use for Noise server keys (PROTOCOL.md section 19, key pinning): the first handshake with a server
// remembers its static key; every later one must show the same key, or the client stops with serverKeyMismatch.
// The store is an interface so that an app keeps it where it keeps its other secrets; known-server-keys-file.ts keeps
// it in a file (like ssh's known_hosts), MemoryServerKeys for one client's life.

export interface KnownServerKeys {
  /** The key remembered for `server` (host:port as dialed), or null for a server never met. */
  get(server: string): Uint8Array | null;
  /** Remembers the key of a server met for the first time. */
  remember(server: string, key: Uint8Array): void;
  /** Where the keys live, for the change warning ("remove the line for X from ..."). */
  readonly where: string;
}

export class MemoryServerKeys implements KnownServerKeys {
  private readonly keys = new Map<string, Uint8Array>();
  readonly where = "this client's memory (it is forgotten when the program ends)";

  get(server: string): Uint8Array | null {
    return this.keys.get(server) ?? null;
  }

  remember(server: string, key: Uint8Array): void {
    this.keys.set(server, key.slice());
  }
}

export function serverKeyHex(key: Uint8Array): string {
  return Array.from(key, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A 64-hex-digit key as configured (the output of `switchboard noise-key`); a TypeError otherwise. */
export function parseServerKey(text: string): Uint8Array {
  const hex = text.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError("a Noise server key is 64 hex digits (switchboard noise-key)");
  return Uint8Array.from(hex.match(/../g)!, (pair) => Number.parseInt(pair, 16));
}
