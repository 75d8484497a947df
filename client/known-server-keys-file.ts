// Known Noise server keys in a text file, one `server key` line each (server as host:port, key in hex), like ssh's
// known_hosts. Node/Bun only (imported by path, not from client/index.ts). Written as a private file (private-file.ts:
// 0600, atomic): it says whom the user talks to, and a half-written file would lose the pins.

import { existsSync, readFileSync } from "node:fs";
import { type KnownServerKeys, parseServerKey, serverKeyHex } from "./known-server-keys.ts";
import { writePrivateFile } from "./private-file.ts";

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
    writePrivateFile(this.where, `${lines.join("\n")}\n`);
  }
}
