// The web chat's files as the WebSocket listener serves them (webClient on): the page, its stylesheet, and the
// script bundled for browsers on the fly from app.ts and the SDK (no Bun/Node module in it, the listener's wsPath
// baked in). With webClient off, none of it is served.

import { afterEach, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { buildWebClient, webClientBundlePath } from "../../server/web-client-bundle.ts";
import { cleanups, runCleanups, startInProcessServer, temporaryDataDir } from "../delivery-suite.ts";

afterEach(runCleanups);

async function serverWith(config: { webClient: string; wsPath?: string }) {
  const dataDir = temporaryDataDir();
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const server = await startInProcessServer({ dataDir, config });
  cleanups.push(() => server.server.stop({ timeoutMs: 1000 }));
  return `http://127.0.0.1:${server.wsPort}`;
}

describe("web client files", () => {
  test("the bundle is browser code: no node: or bun imports, the WebSocket path baked in, built once", async () => {
    const first = await buildWebClient("/chat-socket");
    // Baked in as a string, or folded by the minifier into the URL template (`...${host}/chat-socket`).
    expect(first).toMatch(/["}]\/chat-socket["`]/);
    expect(first).not.toContain("__SWITCHBOARD_WS_PATH__");
    expect(first).not.toMatch(/\bfrom\s*["'](node:|bun)|require\(/);
    // Bun.connect is only reached by the TCP transport, which a page never uses (it passes `url`).
    expect(new Set(first.match(/\bBun\.\w+/g) ?? [])).toEqual(new Set(["Bun.connect"]));
    expect(await buildWebClient("/chat-socket")).toBe(first);
  }, 15_000);

  test("served at / with webClient on: page, stylesheet and /app.js", async () => {
    const base = await serverWith({ webClient: "on", wsPath: "/sb" });
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const html = await page.text();
    expect(html).toContain(`src="app.js"`);
    expect(html).toContain("register-form");
    expect((await fetch(`${base}/style.css`)).headers.get("content-type")).toContain("text/css");
    const script = await fetch(`${base}${webClientBundlePath}`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toContain("text/javascript");
    expect(await script.text()).toMatch(/["}]\/sb["`]/);
    expect((await fetch(`${base}/missing.html`)).status).toBe(404);
  }, 15_000);

  test("nothing is served with webClient off", async () => {
    const base = await serverWith({ webClient: "off" });
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}${webClientBundlePath}`)).status).toBe(404);
  });
});

describe("what the static handler serves", () => {
  test("only the page's own static files: no TypeScript sources or tests", async () => {
    const base = await serverWith({ webClient: "on" });
    expect((await fetch(`${base}/`)).status).toBe(200);
    expect((await fetch(`${base}/style.css`)).status).toBe(200);
    for (const path of [
      "/app.ts",
      "/chat-state.ts",
      "/web-chat.e2e.test.ts",
      "/ensure-chromium.sh",
      "/../../package.json",
    ]) {
      expect([path, (await fetch(`${base}${path}`)).status]).toEqual([path, 404]);
    }
  }, 15_000);
});
