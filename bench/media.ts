#!/usr/bin/env bun
// Media throughput on loopback: upload and download MB/s through the media listener of a real server process, and
// the same bytes through a bare Bun.serve file handler (bench/media-bare-server.ts) and through @tus/server with its
// file store inside Bun.serve (bench/media-tus-server.ts) in the same run, with each server's CPU seconds per MB read
// from /proc. Uploads go in PATCHes of --chunk-mb (8 MiB, as the SDK sends);
// downloads are one GET each. Every transfer is checked: the upload ends with the server's 204 at the full size,
// the download's SHA-256 is the file's.
//
//   bun bench/media.ts [--size-mb 256] [--chunk-mb 8] [--rounds 3]
//
// Prints one table and one JSON line. Figures are medians over rounds; ratios are Switchboard / bare.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { startServerProcess } from "../server/fixtures/server-process.ts";
import { askDownload, askUpload, bearer, granted, hex } from "../server/media-test-kit.ts";
import { freePort, registeredClient } from "../server/test-kit.ts";
import { processCpuSeconds } from "./proc-stats.ts";

const mebibyte = 1024 * 1024;
const { values } = parseArgs({
  options: {
    "size-mb": { type: "string", default: "256" },
    "chunk-mb": { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
  },
});
const sizeBytes = Number(values["size-mb"]) * mebibyte;
const chunkBytes = Number(values["chunk-mb"]) * mebibyte;
const rounds = Number(values.rounds);

interface Measure {
  readonly seconds: number;
  readonly cpuSeconds: number;
}

function randomFile(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(length, offset + 65_536)));
  }
  return bytes;
}

async function measured(pid: number, work: () => Promise<void>): Promise<Measure> {
  const cpuBefore = processCpuSeconds(pid) ?? 0;
  const started = performance.now();
  await work();
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: (processCpuSeconds(pid) ?? 0) - cpuBefore };
}

async function readAndHash(response: Response): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of response.body!) hasher.update(chunk);
  return hasher.digest("hex");
}

async function startBare(
  script = "./media-bare-server.ts",
): Promise<{ port: number; child: Subprocess<"pipe", "pipe", "inherit"> }> {
  const child = Bun.spawn([process.execPath, new URL(script, import.meta.url).pathname], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  const line = new TextDecoder().decode(value);
  reader.releaseLock();
  return { port: (JSON.parse(line.split("\n")[0]!) as { port: number }).port, child };
}

const bytes = randomFile(sizeBytes);
const expectedHex = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const hash = new Uint8Array(Buffer.from(expectedHex, "hex"));

// --- the bare file handler ---
const bare = await startBare();
const bareRuns: Array<{ upload: Measure; download: Measure }> = [];
for (let round = 0; round < rounds; round++) {
  const url = `http://127.0.0.1:${bare.port}/file-${round}`;
  const upload = await measured(bare.child.pid, async () => {
    for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
      const response = await fetch(`${url}?offset=${offset}`, {
        method: "PATCH",
        body: bytes.subarray(offset, Math.min(bytes.length, offset + chunkBytes)) as Uint8Array<ArrayBuffer>,
      });
      if (response.status !== 204) throw new Error(`bare upload: ${response.status}`);
    }
  });
  const download = await measured(bare.child.pid, async () => {
    if ((await readAndHash(await fetch(url))) !== expectedHex) throw new Error("bare download: wrong bytes");
  });
  bareRuns.push({ upload, download });
}
bare.child.stdin.end();
await bare.child.exited;

// --- @tus/server with @tus/file-store (tus 1.0: POST creates, PATCHes append) ---
const tus = await startBare("./media-tus-server.ts");
const tusRuns: Array<{ upload: Measure; download: Measure }> = [];
for (let round = 0; round < rounds; round++) {
  let location = "";
  const upload = await measured(tus.child.pid, async () => {
    const created = await fetch(`http://127.0.0.1:${tus.port}/files`, {
      method: "POST",
      headers: { "Tus-Resumable": "1.0.0", "Upload-Length": String(bytes.length) },
    });
    if (created.status !== 201) throw new Error(`tus create: ${created.status}`);
    location = created.headers.get("location")!;
    for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
      const response = await fetch(location, {
        method: "PATCH",
        headers: {
          "Tus-Resumable": "1.0.0",
          "Content-Type": "application/offset+octet-stream",
          "Upload-Offset": String(offset),
        },
        body: bytes.subarray(offset, Math.min(bytes.length, offset + chunkBytes)) as Uint8Array<ArrayBuffer>,
      });
      if (response.status !== 204) throw new Error(`tus upload: ${response.status}`);
    }
  });
  const download = await measured(tus.child.pid, async () => {
    if ((await readAndHash(await fetch(location))) !== expectedHex) throw new Error("tus download: wrong bytes");
  });
  tusRuns.push({ upload, download });
}
tus.child.stdin.end();
await tus.child.exited;

// --- Switchboard's media listener ---
const dataDir = mkdtempSync(join(tmpdir(), "media-bench-"));
const mediaPort = freePort();
const server = await startServerProcess({
  registration: "open",
  "admin-port": 0,
  "data-dir": dataDir,
  "media-port": mediaPort,
  "media-file-bytes-max": Math.max(sizeBytes, 16 * mebibyte),
  "media-account-bytes-max": Math.max(sizeBytes, 16 * mebibyte) * (rounds + 1),
  "log-level": "warn",
});
const base = `http://127.0.0.1:${mediaPort}`;
const mediaRuns: Array<{ upload: Measure; download: Measure }> = [];
try {
  for (let round = 0; round < rounds; round++) {
    // A fresh pair per round: the blob of the round before is deduplicated otherwise.
    const alice = (await registeredClient(server.port, `alice${round}`)).client;
    const bob = (await registeredClient(server.port, `bob${round}`)).client;
    // Each round uploads different bytes (one changed byte), so nothing is deduplicated.
    bytes[0] = round;
    const roundHex = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
    const roundHash = new Uint8Array(Buffer.from(roundHex, "hex"));
    const grant = granted(await askUpload(alice, roundHash, bytes.length, [bob.account]));
    const upload = await measured(server.process.pid, async () => {
      for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
        const response = await fetch(`${base}/media/v1/uploads/${roundHex}`, {
          method: "PATCH",
          headers: {
            ...bearer(grant.token),
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": String(offset),
          },
          body: bytes.subarray(offset, Math.min(bytes.length, offset + chunkBytes)) as Uint8Array<ArrayBuffer>,
        });
        if (response.status !== 204) throw new Error(`media upload: ${response.status}`);
      }
    });
    const download = granted(await askDownload(bob, roundHash));
    const downloadMeasure = await measured(server.process.pid, async () => {
      const response = await fetch(`${base}/media/v1/blobs/${hex(roundHash)}`, { headers: bearer(download.token) });
      if ((await readAndHash(response)) !== roundHex) throw new Error("media download: wrong bytes");
    });
    mediaRuns.push({ upload, download: downloadMeasure });
    alice.close();
    bob.close();
  }
} finally {
  server.process.kill("SIGTERM");
  await server.waitExit(10_000);
  rmSync(dataDir, { recursive: true, force: true });
}
void hash;

const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
const megabytes = sizeBytes / 1e6;
function summary(runs: Array<{ upload: Measure; download: Measure }>) {
  return {
    uploadMBps: median(runs.map((run) => megabytes / run.upload.seconds)),
    downloadMBps: median(runs.map((run) => megabytes / run.download.seconds)),
    uploadCpuMsPerMB: median(runs.map((run) => (run.upload.cpuSeconds * 1000) / megabytes)),
    downloadCpuMsPerMB: median(runs.map((run) => (run.download.cpuSeconds * 1000) / megabytes)),
  };
}
const bareSummary = summary(bareRuns);
const tusSummary = summary(tusRuns);
const mediaSummary = summary(mediaRuns);
const rows: Array<[string, keyof typeof bareSummary, boolean]> = [
  ["upload MB/s", "uploadMBps", true],
  ["download MB/s", "downloadMBps", true],
  ["upload server CPU ms/MB", "uploadCpuMsPerMB", false],
  ["download server CPU ms/MB", "downloadCpuMsPerMB", false],
];
console.log(
  `media bench: ${sizeBytes / mebibyte} MiB file, PATCHes of ${chunkBytes / mebibyte} MiB, ${rounds} rounds (medians)`,
);
console.log(
  "| measure | Switchboard media | @tus/server + file store | bare Bun.serve file handler | ratio to bare | ratio to tus |",
);
console.log("|---|---|---|---|---|---|");
for (const [label, key] of rows) {
  const [media, tusValue, bareValue] = [mediaSummary[key], tusSummary[key], bareSummary[key]];
  console.log(
    `| ${label} | ${media.toFixed(1)} | ${tusValue.toFixed(1)} | ${bareValue.toFixed(1)} | ${(media / bareValue).toFixed(2)} | ${(media / tusValue).toFixed(2)} |`,
  );
}
console.log(JSON.stringify({ sizeBytes, chunkBytes, rounds, media: mediaSummary, tus: tusSummary, bare: bareSummary }));
