// Known Noise server keys in a text file, one `server key` line each (server as host:port, key in hex), like ssh's
// known_hosts. Node/Bun only (imported by path, not from client/index.ts). Written with mode 0600: the file says whom
// the user talks to.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { type KnownServerKeys, parseServerKey, serverKeyHex } from "./known-server-keys.ts";

export class FileServerKeys implements KnownServerKeys {
  constructor(readonly where: string) {}

  private read(): Map<string, Uint8Array> {
    const keys = new Map<string, Uint8Array>();
    if (!existsSync(this.where)) return keys;
    for (const line of readFileSync(this.where, "utf8").split("\n")) {
      const [server, key] = line.trim().split(/\s+/);
      if (server === undefined || key === undefined || server.startsWith("#")) continue;
      try {
        keys.set(server, parseServerKey(key));
      } catch {
        // A damaged line pins nothing: the server is then met as new, and its key written again.
      }
    }
    return keys;
  }

  get(server: string): Uint8Array | null {
    return this.read().get(server) ?? null;
  }

  remember(server: string, key: Uint8Array): void {
    const keys = this.read();
    keys.set(server, key);
    const lines = [...keys].map(([name, value]) => `${name} ${serverKeyHex(value)}`);
    writeFileSync(this.where, `${lines.join("\n")}\n`, { mode: 0o600 });
  }
}
