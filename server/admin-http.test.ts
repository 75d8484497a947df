// The admin listener's Host check over real sockets on 127.0.0.1: a DNS-rebinding page sends its own name as Host and
// gets 421; loopback names, the listener's own address, IP addresses and the names it is given pass.

import { afterEach, describe, expect, test } from "bun:test";
import { type AdminHttp, listenAdmin } from "./admin-http.ts";
import { rawHttpRequest } from "./test-kit.ts";

const listeners: AdminHttp[] = [];
afterEach(() => {
  for (const listener of listeners.splice(0)) listener.stop();
});

function admin(names?: string[]): AdminHttp {
  const listener = listenAdmin(
    { host: "127.0.0.1", port: 0, ...(names === undefined ? {} : { names }) },
    { metrics: async () => "switchboard_up 1\n", ready: () => true },
  );
  listeners.push(listener);
  return listener;
}

describe("admin listener Host check", () => {
  test("a forged Host gets 421 and no metrics; loopback names and IP addresses pass", async () => {
    const { port } = admin();
    for (const host of [`evil.example:${port}`, "evil.example", `localhost.evil.example:${port}`, "a:b"]) {
      const answer = await rawHttpRequest(port, { path: "/metrics", host });
      expect([host, answer.status]).toEqual([host, 421]);
      expect(answer.head).not.toContain("text/plain; version=0.0.4");
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, "10.1.2.3:9100", "Localhost"]) {
      expect([host, (await rawHttpRequest(port, { path: "/metrics", host })).status]).toEqual([host, 200]);
    }
    expect((await rawHttpRequest(port, { path: "/healthz", host: "rebound.example" })).status).toBe(421);
    expect((await rawHttpRequest(port, { path: "/healthz", host: `127.0.0.1:${port}` })).status).toBe(200);
  });

  test("names given to the listener pass too", async () => {
    const { port } = admin(["metrics.internal"]);
    expect((await rawHttpRequest(port, { path: "/readyz", host: `metrics.internal:${port}` })).status).toBe(200);
    expect((await rawHttpRequest(port, { path: "/readyz", host: `other.internal:${port}` })).status).toBe(421);
  });
});
