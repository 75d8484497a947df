// The density regression test: an idle logged-in session must hold no JavaScript object of the server's own
// (session-slots.ts: its fields are columns of typed arrays, its socket's data a slot number). A server in its own
// process (fixtures/density-server.ts) takes a few thousand sessions that log in over loopback with signed challenges;
// its heap objects are counted (Bun's heapStats().objectTypeCounts, after a full GC) before and after, and the growth
// per session may not pass what the design allows: the runtime's own objects of one socket, which a bare Bun socket
// has too, and nothing of ours.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { devicePrivateKey, rawPublicKey } from "../bench/device-keys.ts";
import { seedAccounts } from "../bench/seed-accounts.ts";
import { RawClient, temporaryDirectory, waitFor } from "./test-kit.ts";

/** Sessions opened: enough that a per-session object shows as a whole number, few enough for a few seconds. */
const sessions = 2000;
/** Logins in flight at once. */
const loginsInFlight = 100;
/**
 * Heap objects an idle logged-in TCP session may add to the server's heap, per session: the JS wrapper Bun makes
 * for each accepted socket (a bare Bun.listen socket has it too), and a margin below one for the noise of a heap
 * that is not only sessions (caches warming, timers). An object of ours per session (a Session, a Map or Set entry,
 * a closure) makes it fail.
 */
const idleSessionObjectsMax = 1.5;

interface Counts {
  readonly sessions: number;
  readonly objects: number;
  readonly types: Record<string, number>;
  readonly heapBytes: number;
}

const runSeed = "density-test";
let dataDir = "";
let fixture: Subprocess | null = null;
let port = 0;
const answers: Array<(counts: Counts) => void> = [];

async function count(): Promise<Counts> {
  const answer = new Promise<Counts>((resolve) => answers.push(resolve));
  fixture!.send("count");
  return answer;
}

async function logIn(clients: RawClient[], accounts: readonly number[], from: number, to: number): Promise<void> {
  let next = from;
  const worker = async () => {
    while (next < to) {
      const index = next++;
      const privateKey = devicePrivateKey(runSeed, index);
      const client = await RawClient.connect(port);
      await client.login(accounts[index]!, 1, { privateKey, publicKey: rawPublicKey(privateKey) });
      clients.push(client);
    }
  };
  await Promise.all(Array.from({ length: loginsInFlight }, worker));
}

describe("session density", () => {
  let accounts: readonly number[] = [];
  beforeAll(async () => {
    dataDir = temporaryDirectory();
    accounts = (await seedAccounts({ dataDir, runSeed, count: sessions + loginsInFlight })).accounts;
    let listening: (value: number) => void = () => {};
    const started = new Promise<number>((resolve) => {
      listening = resolve;
    });
    fixture = Bun.spawn([process.execPath, join(import.meta.dir, "fixtures", "density-server.ts"), dataDir], {
      stdio: ["ignore", "inherit", "inherit"],
      ipc(message: Counts | { port: number }) {
        if ("port" in message) listening(message.port);
        else answers.shift()?.(message);
      },
    });
    // A fixture that dies before it listens fails the test at once, with its exit code.
    const died = fixture.exited.then((code) => Promise.reject(new Error(`density fixture exited with ${code}`)));
    died.catch(() => {}); // its normal exit at the end is no error
    port = await Promise.race([started, died]);
  });

  afterAll(async () => {
    fixture?.send("stop");
    await Promise.race([fixture?.exited, Bun.sleep(3000)]);
    fixture?.kill();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("an idle logged-in session holds no object of the server's", async () => {
    const clients: RawClient[] = [];
    // Warm-up: the first sessions pay one-time costs (compiled code, the store's caches, the first slot chunk).
    await logIn(clients, accounts, 0, loginsInFlight);
    // Idle: each device's delivery state is released once it has been quiet for deviceStateIdleReleaseMs.
    await Bun.sleep(500);
    const before = await count();
    await logIn(clients, accounts, loginsInFlight, loginsInFlight + sessions);
    for (const client of clients) expect(client.closed).toBe(false);
    await Bun.sleep(500);
    let after = await count();
    // Settling: states still quiet-waiting at the first count are released by the next.
    await waitFor(() => after.sessions === loginsInFlight + sessions, 2000, "every session open");
    after = await count();
    const perSession = (after.objects - before.objects) / sessions;
    const grown = Object.entries(after.types)
      .map(([type, n]) => [type, (n - (before.types[type] ?? 0)) / sessions] as const)
      .filter(([, n]) => n >= 0.1)
      .sort((a, b) => b[1] - a[1]);
    expect(after.sessions).toBe(loginsInFlight + sessions);
    // The types that grew (0.1 per session or more): what to look at when it fails.
    console.log(
      `objects per idle session: ${perSession.toFixed(2)}`,
      JSON.stringify(grown),
      `heap after a full GC: ${Math.round((after.heapBytes - before.heapBytes) / sessions)} B per session`,
    );
    expect(perSession).toBeLessThanOrEqual(idleSessionObjectsMax);
    for (const client of clients) client.close();
  }, 30_000);
});
