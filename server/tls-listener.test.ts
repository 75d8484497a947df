// TLS on the TCP and WebSocket listeners with a certificate made at test time: the SDK logs in over both, a
// reload (SIGHUP) serves a renewed certificate to new connections while open sessions go on, a broken certificate
// file keeps the running one, and the config refuses plaintext on a public address without insecure = true.

import { afterEach, describe, expect, test } from "bun:test";
import { copyFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tls from "node:tls";
import { SwitchboardClient, tcpTransport, webSocketTransport } from "../client/index.ts";
import { testLimits } from "../protocol/index.ts";
import { ConfigError, loadConfig, plaintextExposed } from "./config.ts";
import { freePort, startTestServer, type TestServer, waitFor, waitTimeoutMs } from "./test-kit.ts";
import { makeTestCertificate } from "./tls-test-certificate.ts";

const first = makeTestCertificate();
const second = makeTestCertificate();
const live = makeTestCertificate();
let server: TestServer | null = null;
const clients: SwitchboardClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  await server?.stop();
  server = null;
});

process.on("exit", () => {
  for (const certificate of [first, second, live]) rmSync(certificate.directory, { recursive: true, force: true });
});

/** The SHA-256 fingerprint of the certificate a TLS listener presents now. */
function presented(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on("error", reject);
  });
}

describe("TLS listeners", () => {
  test("TLS TCP and wss: the SDK registers over each; a reload serves a renewed certificate, open sessions stay", async () => {
    copyFileSync(first.certFile, join(live.directory, "cert.pem"));
    copyFileSync(first.keyFile, join(live.directory, "key.pem"));
    server = await startTestServer({
      config: {
        tcpEncryption: "tls",
        wsEncryption: "tls",
        tlsCertFile: live.certFile,
        tlsKeyFile: live.keyFile,
        wsPort: freePort(),
      },
    });
    const { port } = server;
    const ws = server.server.wsPort;
    const overTcp = new SwitchboardClient({
      register: { handle: "tlstcp" },
      limits: testLimits,
      transport: tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax: 1 << 20, tls: { ca: first.cert } }),
    });
    const overWs = new SwitchboardClient({
      register: { handle: "tlsws" },
      limits: testLimits,
      url: `wss://127.0.0.1:${ws}/ws`,
      transport: webSocketTransport({ url: `wss://127.0.0.1:${ws}/ws`, bufferedBytesMax: 1 << 20, ca: first.cert }),
    });
    clients.push(overTcp, overWs);
    await overTcp.connect();
    await overWs.connect();
    const received: string[] = [];
    overWs.on("message", (event) => void received.push(new TextDecoder().decode(event.payload)));
    await overTcp.send(overWs.credentials!.account, new TextEncoder().encode("over tls"));
    await waitFor(() => received.length === 1, waitTimeoutMs, "the message over wss");

    const firstPrint = await presented(port);
    expect(await presented(ws)).toBe(firstPrint);
    // Renewed files, then a reload: new connections see the new certificate, the open sessions go on.
    copyFileSync(second.certFile, live.certFile);
    copyFileSync(second.keyFile, live.keyFile);
    await server.server.reload();
    const secondPrint = await presented(port);
    expect(secondPrint).not.toBe(firstPrint);
    expect(await presented(ws)).toBe(secondPrint);
    await overWs.send(overTcp.credentials!.account, new TextEncoder().encode("still here"));
    expect(overTcp.phase).toBe("ready");

    // A broken file: the reload keeps the certificate it has.
    writeFileSync(live.certFile, "not a certificate\n");
    await server.server.reload();
    expect(await presented(port)).toBe(secondPrint);
  });

  test("a client that does not trust the certificate fails to connect (and retries), never logs in", async () => {
    server = await startTestServer({
      config: { tcpEncryption: "tls", tlsCertFile: first.certFile, tlsKeyFile: first.keyFile },
    });
    const client = new SwitchboardClient({
      register: { handle: "untrusting" },
      limits: testLimits,
      reconnect: { initialMs: 50, maxMs: 100, jitter: 0 },
      transport: tcpTransport({ host: "127.0.0.1", port: server.port, bufferedBytesMax: 1 << 20, tls: true }),
    });
    clients.push(client);
    const reasons: string[] = [];
    client.on("disconnected", (event) => void reasons.push(event.reason));
    void client.connect().catch(() => {});
    await waitFor(() => reasons.length >= 1, waitTimeoutMs, "a failed attempt");
    expect(client.phase).not.toBe("ready");
    expect(reasons[0]).toMatch(/connect failed|certificate|self.signed|closed/i);
  });
});

describe("the insecure flag", () => {
  const base = { dataDir: "/nonexistent", limits: testLimits };
  test("plaintext on a non-loopback address is refused without insecure = true, allowed with it", () => {
    expect(() => loadConfig({ base: { ...base, host: "0.0.0.0" } })).toThrow(ConfigError);
    expect(() => loadConfig({ base: { ...base, host: "0.0.0.0", tcpEncryption: "noise" } })).not.toThrow();
    // `insecure = true` in a TOML file is a boolean; the environment says "true".
    const file = join(first.directory, "insecure.toml");
    writeFileSync(file, 'host = "0.0.0.0"\ninsecure = true\n');
    const allowed = loadConfig({ base, file });
    expect(allowed.insecure).toBe("true");
    // What the server warns about at start (plaintext_listener): the exposed listeners, loopback ones not.
    expect(plaintextExposed(allowed)).toEqual(["tcp 0.0.0.0"]);
    expect(plaintextExposed(loadConfig({ base }))).toEqual([]);
    expect(loadConfig({ base: { ...base, host: "0.0.0.0" }, env: { SWITCHBOARD_INSECURE: "true" } }).insecure).toBe(
      "true",
    );
    expect(() => loadConfig({ base: { ...base, wsHost: "0.0.0.0", wsPort: 7422 } })).toThrow(/wsEncryption/);
    expect(() => loadConfig({ base: { ...base, tcpEncryption: "tls" } })).toThrow(/tlsCertFile/);
    expect(() => loadConfig({ base: { ...base, host: "127.0.0.5" } })).not.toThrow();
  });
});
