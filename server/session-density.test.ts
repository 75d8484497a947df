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
import { importKeyPairPkcs8, SwitchboardClient } from "../client/index.ts";
import { noiseTransport } from "../client/transport-noise.ts";
import { tcpTransport } from "../client/transport-tcp.ts";
import { defaultLimits } from "../protocol/limits.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { RawClient, temporaryDirectory, waitFor } from "./test-kit.ts";

/** Sessions opened: enough that a per-session object shows as a whole number, few enough for a few seconds. */
const sessions = 2000;
/** Over Noise: fewer, as each costs a handshake on both sides (the test's clients and the server share the host). */
const noiseSessions = 1000;
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

/** A logged-in client of the test's process, whatever its transport. */
interface DensityClient {
  readonly open: boolean;
  close(): void;
}

/** Logs in the seeded accounts' devices from..to-1 over one transport; `loginsInFlight` at a time. */
type LogIn = (port: number, account: number, index: number) => Promise<DensityClient>;

const plainLogIn: LogIn = async (port, account, index) => {
  const privateKey = devicePrivateKey(runSeed, index);
  const client = await RawClient.connect(port);
  await client.login(account, 1, { privateKey, publicKey: rawPublicKey(privateKey) });
  return {
    get open() {
      return !client.closed;
    },
    close: () => client.close(),
  };
};

/** The SDK over Noise (node:crypto primitives, as a Bun client would): the login signs the handshake hash. */
const noiseLogIn: LogIn = async (port, account, index) => {
  const privateKey = devicePrivateKey(runSeed, index);
  const pkcs8 = new Uint8Array(privateKey.export({ format: "der", type: "pkcs8" }));
  const keyPair = await importKeyPairPkcs8(pkcs8, rawPublicKey(privateKey));
  const tcp = tcpTransport({ host: "127.0.0.1", port, bufferedBytesMax: 1 << 16 });
  const client = new SwitchboardClient({
    credentials: { account, device: 1, keyPair },
    transport: noiseTransport(tcp, `127.0.0.1:${port}`, { aead: nodeAead, dh: nodeDh }),
    limits: defaultLimits,
    pingIntervalMs: 600_000,
  });
  let open = true;
  client.on("disconnected", () => {
    open = false;
  });
  await client.connect();
  return {
    get open() {
      return open;
    },
    close: () => void client.close(),
  };
};

/**
 * The density test over one transport: a server in its own process (fixtures/density-server.ts) takes `sessions`
 * logged-in sessions after a warm-up, and the growth of its heap objects per session, after a full GC, may not pass
 * idleSessionObjectsMax.
 */
function describeDensity(name: string, encryption: "none" | "noise", sessions: number, logIn: LogIn): void {
  describe(`session density over ${name}`, () => {
    let dataDir = "";
    let fixture: Subprocess | null = null;
    let port = 0;
    let accounts: readonly number[] = [];
    const answers: Array<(counts: Counts) => void> = [];

    const count = async (): Promise<Counts> => {
      const answer = new Promise<Counts>((resolve) => answers.push(resolve));
      fixture!.send("count");
      return answer;
    };

    const logInRange = async (clients: DensityClient[], from: number, to: number): Promise<void> => {
      let next = from;
      const worker = async () => {
        while (next < to) {
          const index = next++;
          clients.push(await logIn(port, accounts[index]!, index));
        }
      };
      await Promise.all(Array.from({ length: loginsInFlight }, worker));
    };

    beforeAll(async () => {
      dataDir = temporaryDirectory();
      accounts = (await seedAccounts({ dataDir, runSeed, count: sessions + loginsInFlight })).accounts;
      let listening: (value: number) => void = () => {};
      const started = new Promise<number>((resolve) => {
        listening = resolve;
      });
      fixture = Bun.spawn(
        [process.execPath, join(import.meta.dir, "fixtures", "density-server.ts"), dataDir, encryption],
        {
          stdio: ["ignore", "inherit", "inherit"],
          ipc(message: Counts | { port: number }) {
            if ("port" in message) listening(message.port);
            else answers.shift()?.(message);
          },
        },
      );
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
      const clients: DensityClient[] = [];
      // Warm-up: the first sessions pay one-time costs (compiled code, the store's caches, the first slot chunk).
      await logInRange(clients, 0, loginsInFlight);
      // Idle: each device's delivery state is released once it has been quiet for deviceStateIdleReleaseMs.
      await Bun.sleep(500);
      const before = await count();
      await logInRange(clients, loginsInFlight, loginsInFlight + sessions);
      for (const client of clients) expect(client.open).toBe(true);
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
        `${name}: objects per idle session: ${perSession.toFixed(2)}`,
        JSON.stringify(grown),
        `heap after a full GC: ${Math.round((after.heapBytes - before.heapBytes) / sessions)} B per session`,
      );
      expect(perSession).toBeLessThanOrEqual(idleSessionObjectsMax);
      for (const client of clients) client.close();
    }, 30_000);
  });
}

describeDensity("tcp", "none", sessions, plainLogIn);
// Noise: the handshake's state is gone once it completed, the keys and counters are columns by slot
// (transport-noise.ts): an idle Noise session holds no more objects than a plaintext one.
describeDensity("noise tcp", "noise", noiseSessions, noiseLogIn);
