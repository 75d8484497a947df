#!/usr/bin/env bun
// The baseline of the media bench: a bare Bun.serve file handler in its own process, doing the least the media
// listener does — PATCH appends the body to a file at ?offset=N (no token, no hash, no index), GET answers the file
// (Bun.file, with Bun's own Range handling not used). It prints {"event":"listening","port":N} and runs until stdin
// closes.

import { mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const directory = mkdtempSync(join(tmpdir(), "media-bare-"));
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  maxRequestBodySize: 0xffff_ffff,
  async fetch(request) {
    const url = new URL(request.url);
    const path = join(directory, url.pathname.replaceAll("/", "_"));
    if (request.method === "PATCH") {
      const handle = await open(path, "a");
      try {
        for await (const chunk of request.body!) await handle.write(chunk);
      } finally {
        await handle.close();
      }
      return new Response(null, { status: 204 });
    }
    return new Response(Bun.file(path));
  },
});
process.stdout.write(`${JSON.stringify({ event: "listening", port: server.port })}\n`);
for await (const _ of Bun.stdin.stream()) {
  // Runs until the parent closes stdin.
}
server.stop(true);
rmSync(directory, { recursive: true, force: true });
