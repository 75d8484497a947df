// The load workers over Noise and TLS (worker-noise.ts, worker-sessions.ts): a worker process registers and logs in
// its sessions against a real server on loopback whose TCP listener speaks that transport (a plaintext worker would
// be refused: encryptionRequired from Noise, a failed handshake from TLS), relays messages between them with the
// full ack chain, and logs in again after a drop (a new handshake on every connection).

import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import type { Config } from "../server/config.ts";
import { startTestServer, waitFor } from "../server/test-kit.ts";
import { makeTestCertificate } from "../server/tls-test-certificate.ts";
import { LoadFleet, sumCounters } from "./load-fleet.ts";
import type { ConnectReply, Transport, WorkerCounters } from "./worker-protocol.ts";

const sessions = 8;
const messagesPerSender = 10;
const pairs = sessions / 2;
/** Bounds of the waits: generous, the test shares a loaded host with its server and the worker process. */
const relayWaitMs = 20_000;
const testTimeoutMs = 45_000;
const certificate = makeTestCertificate();
afterAll(() => rmSync(certificate.directory, { recursive: true, force: true }));

const cases: ReadonlyArray<readonly [Transport, Partial<Omit<Config, "limits">>]> = [
  ["noise", { tcpEncryption: "noise" }],
  ["tls", { tcpEncryption: "tls", tlsCertFile: certificate.certFile, tlsKeyFile: certificate.keyFile }],
];

describe("load workers over an encrypted TCP listener", () => {
  for (const [transport, config] of cases) {
    test(
      `${transport}: sessions register, relay every message with its receipt, and log in again after a drop`,
      async () => {
        const server = await startTestServer({ config, limits: { idleTimeoutMs: 60_000 } });
        const fleet = await LoadFleet.start({
          host: "127.0.0.1",
          port: server.port,
          runSeed: `worker-${transport}`,
          sessionsPerWorker: [sessions],
          keyFirst: 0,
          accounts: null,
          connectTimeoutMs: 10_000,
          randomSeed: 1,
          transport,
          tlsCa: certificate.cert,
        });
        try {
          const connect = async () => {
            const [reply] = await fleet.all<ConnectReply>(
              { cmd: "connect", slots: null, concurrency: sessions, deadlineMs: 10_000 },
              15_000,
            );
            expect(reply!.failures).toEqual({});
            expect(reply!.ready).toBe(sessions);
          };
          await connect();
          await fleet.all(
            {
              cmd: "traffic",
              pairs: Array.from({ length: pairs }, (_, index) => [index, pairs + index] as const),
              window: 4,
              payloadBytes: 20,
              messagesPerSender,
            },
            5000,
          );
          const total = pairs * messagesPerSender;
          let counters: WorkerCounters = sumCounters(await fleet.report());
          const deadline = Date.now() + relayWaitMs;
          while (counters.receiptClientIds < total && Date.now() < deadline) {
            await Bun.sleep(50);
            counters = sumCounters(await fleet.report());
          }
          expect(counters.sent).toBe(total);
          expect(counters.serverAcked).toBe(total);
          expect(counters.delivered).toBe(total);
          expect(counters.receiptClientIds).toBe(total);
          expect(counters.errorCodes).toEqual({});
          await fleet.all({ cmd: "stopTraffic" }, 5000);

          await fleet.all({ cmd: "drop", slots: null, abort: false }, 5000);
          await waitFor(() => server.server.connections.count === 0, 5000, "every session closed");
          await connect();
          expect(sumCounters(await fleet.report()).logins).toBe(2 * sessions);
        } finally {
          await fleet.stop();
          await server.stop();
        }
      },
      testTimeoutMs,
    );
  }
});
