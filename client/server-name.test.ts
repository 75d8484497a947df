// The SDK signs the name of the server it dialed (PROTOCOL.md section 9): through a byte relay dialed by another name
// the server refuses it with wrongServer and the client stops (no reconnect loop); dialed directly, it logs in.

import { afterEach, describe, expect, test } from "bun:test";
import { ErrorCode } from "../protocol/index.ts";
import { type Relay, startRelay } from "../server/test-kit.ts";
import { ClientError } from "./client-errors.ts";
import { resolveOptions } from "./client-options.ts";
import { recordedClient, runCleanups, serverForTest } from "./delivery-suite.ts";

let relay: Relay | null = null;
afterEach(async () => {
  relay?.stop();
  relay = null;
  await runCleanups();
});

describe("the server name the client signs", () => {
  test("through a relay dialed as another name: wrongServer, and the client stops; directly: it logs in", async () => {
    const server = await serverForTest();
    const direct = recordedClient({ host: "127.0.0.1", port: server.port, register: { handle: "alice" } });
    await direct.client.connect();
    const credentials = direct.client.credentials!;
    direct.client.close();

    relay = startRelay(server.port);
    const relayed = recordedClient({ host: "127.0.0.1", port: relay.port, serverName: "relay.example", credentials });
    const refusal = await relayed.client.connect().then(
      () => null,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(ClientError);
    expect((refusal as ClientError).code).toBe(ErrorCode.wrongServer);
    expect(relayed.client.phase).toBe("closed");
    expect(relay.bytesFromServer()).toBeGreaterThan(0);

    const again = recordedClient({ host: "127.0.0.1", port: server.port, credentials });
    expect((await again.client.connect()).account).toBe(credentials.account);
  });

  test("the default name is the host of url, else host, in canonical form", () => {
    const register = { handle: "alice" };
    expect(resolveOptions({ register }).serverName).toBe("127.0.0.1");
    expect(resolveOptions({ register, host: "Chat.Example.com." }).serverName).toBe("chat.example.com");
    expect(resolveOptions({ register, url: "wss://Chat.Example.com:8443/ws" }).serverName).toBe("chat.example.com");
    expect(resolveOptions({ register, url: "ws://[::1]:7422/ws" }).serverName).toBe("::1");
    expect(resolveOptions({ register, host: "10.0.0.5", serverName: "chat.example.com" }).serverName).toBe(
      "chat.example.com",
    );
  });
});
