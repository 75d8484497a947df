// The delivery suite (delivery-suite.ts) over both transports, and a TCP client and a WebSocket client talking to
// each other through the same server.

import { afterEach, describe, expect, test } from "bun:test";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import {
  cleanups,
  describeDeliverySuite,
  recordedClient,
  runCleanups,
  serverForTest,
  suiteTestTimeoutMs,
  text,
  waitFor,
  waitTimeoutMs,
} from "./delivery-suite.ts";
import type { ClientOptions } from "./index.ts";
import { tcpTransport, webSocketTransport } from "./index.ts";
import { noiseTransport } from "./transport-noise.ts";

const bufferedBytesMax = 1 << 20;

describeDeliverySuite("tcp", ({ port }) => tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax }));
describeDeliverySuite("ws", ({ wsPort }) =>
  webSocketTransport({ url: `ws://127.0.0.1:${wsPort}/ws`, bufferedBytesMax }),
);
// Noise on the TCP listener (PROTOCOL.md section 19): every byte of the suite sealed and opened, logins signing the
// handshake hash, the server's key trusted on first use and checked on every reconnect (a restart keeps it).
describeDeliverySuite(
  "noise tcp",
  ({ port }) =>
    noiseTransport(tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax }), `127.0.0.1:${port}`, {
      aead: nodeAead,
      dh: nodeDh,
    }),
  { config: { tcpEncryption: "noise" } },
);
// TLS on the TCP listener and wss:// on the WebSocket listener: delivery-suite-tls.test.ts (a file of its own, so
// that the test shards run it beside this one).
// The same suite against `switchboard start --workers 4`: a test's clients land on workers as the kernel spreads
// them, so senders and recipients sit on different workers and on the same one (server/workers.test.ts makes sure
// of both).
describeDeliverySuite("tcp", ({ port }) => tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax }), { workers: 4 });
describeDeliverySuite(
  "ws",
  ({ wsPort }) => webSocketTransport({ url: `ws://127.0.0.1:${wsPort}/ws`, bufferedBytesMax }),
  { workers: 4 },
);

describe("TCP and WebSocket together", () => {
  afterEach(runCleanups);

  test(
    "a WebSocket client (option url) and a TCP client (host, port) exchange messages, receipts and lookups",
    async () => {
      const server = await serverForTest();
      const connect = async (handle: string, options: Partial<ClientOptions>) => {
        const recorder = recordedClient({ register: { handle }, ...options } as ClientOptions);
        await recorder.client.connect();
        return recorder;
      };
      const web = await connect("web", { url: `ws://127.0.0.1:${server.wsPort}/ws` });
      const tcp = await connect("tcp", { host: "127.0.0.1", port: server.port });

      const fromWeb = await web.client.send(tcp.account, text("from the browser"));
      await waitFor(() => tcp.messages.length === 1, waitTimeoutMs, "message over TCP");
      expect(tcp.messages[0]).toMatchObject({ from: web.account, fromDevice: web.device, clientId: fromWeb.clientId });
      await waitFor(() => web.receipts.length === 1, waitTimeoutMs, "delivered receipt over WebSocket");
      expect(web.receipts[0]).toMatchObject({ type: "delivered", from: tcp.account, clientIds: [fromWeb.clientId] });
      tcp.client.receipt(web.account, web.device, [fromWeb.clientId], "read");
      await waitFor(() => web.receipts.length === 2, waitTimeoutMs, "read receipt over WebSocket");
      expect(web.receipts[1]).toMatchObject({ type: "read", clientIds: [fromWeb.clientId] });

      const fromTcp = await tcp.client.send(web.account, text("to the browser"));
      await waitFor(() => web.messages.length === 1, waitTimeoutMs, "message over WebSocket");
      expect(web.texts()).toEqual(["to the browser"]);
      web.client.receipt(tcp.account, tcp.device, [fromTcp.clientId], "read");
      await waitFor(() => tcp.receipts.length === 2, waitTimeoutMs, "delivered and read receipts over TCP");
      expect(tcp.receipts.map((receipt) => receipt.type)).toEqual(["delivered", "read"]);

      // Offline across transports: the WebSocket device gets what TCP sent while it was away, in order.
      const webCredentials = web.client.credentials!;
      await web.client.close();
      for (const word of ["one", "two"]) await tcp.client.send(web.account, text(word));
      const back = recordedClient({ url: `ws://127.0.0.1:${server.wsPort}/ws`, credentials: webCredentials });
      await back.client.connect();
      await waitFor(() => back.queueEmpty === 1, waitTimeoutMs, "queueEmpty over WebSocket");
      expect(back.timeline).toEqual(["message:one", "message:two", "queueEmpty"]);
      expect(await back.client.lookup("tcp")).toMatchObject({ account: tcp.account });
      expect(cleanups.length).toBeGreaterThan(0);
    },
    suiteTestTimeoutMs,
  );
});
