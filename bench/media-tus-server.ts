#!/usr/bin/env bun
// The second baseline of the media bench: @tus/server 2.4.5 with @tus/file-store inside Bun.serve (handleWeb), the
// off-the-shelf tus 1.0 server the issue names. No token, no hash: what tus alone costs. GET /files/<id> answers the
// stored file with Bun.file. Prints {"event":"listening","port":N}; runs until stdin closes.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStore } from "@tus/file-store";
import { Server } from "@tus/server";

const directory = mkdtempSync(join(tmpdir(), "media-tus-"));
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  maxRequestBodySize: 0xffff_ffff,
  fetch(request) {
    const url = new URL(request.url);
    if (request.method === "GET") return new Response(Bun.file(join(directory, url.pathname.split("/").pop()!)));
    return tus.handleWeb(request);
  },
});
process.stdout.write(`${JSON.stringify({ event: "listening", port: server.port })}\n`);
for await (const _ of Bun.stdin.stream()) {
  // Runs until the parent closes stdin.
}
server.stop(true);
rmSync(directory, { recursive: true, force: true });
