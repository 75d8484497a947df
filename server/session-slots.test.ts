// Session slots: a handle whose slot was released, and then given to another session, is stale and acts as a closed
// session of no account, so a handler that resumes after an await cannot reach the session that reused its slot.

import { afterEach, describe, expect, test } from "bun:test";
import { FrameCodec, testLimits } from "../protocol/index.ts";
import { Metrics } from "./metrics.ts";
import { SessionState, sameSession, sessionAt } from "./session.ts";
import { SessionIo } from "./session-io.ts";
import { SessionSlots, TransportKind } from "./session-slots.ts";
import { registeredClient, startTestServer, type TestServer, waitFor } from "./test-kit.ts";
import type { TransportSocket } from "./transport.ts";

/** A socket that records what it is given (for the slot table alone, without a server). */
function recordingSocket(): TransportSocket & { written: number; ended: boolean } {
  return {
    written: 0,
    ended: false,
    write(bytes: Uint8Array) {
      this.written += bytes.length;
      return bytes.length;
    },
    end() {
      this.ended = true;
    },
    pause() {},
    resume() {},
    remoteAddress: "127.0.0.1",
  };
}

describe("session slots", () => {
  test("a released slot is reused, and the old handle reads as closed and writes nothing", async () => {
    const slots = new SessionSlots(4, () => 1_000);
    const first = recordingSocket();
    const slot = slots.allocate(first, TransportKind.object, 1_000, 10);
    const old = sessionAt(slots, slot);
    old.state = SessionState.ready;
    old.account = 7;
    old.device = 1;
    slots.release(slot);

    const second = recordingSocket();
    const reused = slots.allocate(second, TransportKind.object, 1_000, 10);
    expect(reused).toBe(slot);
    const current = sessionAt(slots, reused);
    current.state = SessionState.ready;
    current.account = 9;
    current.device = 2;

    expect(old.live).toBe(false);
    expect(old.state as number).toBe(SessionState.closed);
    expect(old.account).toBe(0);
    expect(sameSession(old, current)).toBe(false);
    // Writes through the stale handle go nowhere.
    old.account = 5;
    old.state = SessionState.preamble;
    old.deviceState = null;
    expect(current.account).toBe(9);
    expect(current.state).toBe(SessionState.ready);
    const io = new SessionIo(new FrameCodec({ limits: testLimits }), testLimits, new Metrics());
    expect(io.send(old, { kind: "pong" })).toBe(false);
    io.close(old, 1, "stale");
    io.flushAll();
    expect(second.written).toBe(0);
    expect(second.ended).toBe(false);
    expect(io.send(current, { kind: "pong" })).toBe(true);
    io.flushAll();
    expect(second.written).toBeGreaterThan(0);
  });

  test("the columns grow by a chunk when every slot is taken, keeping what they hold", () => {
    const slots = new SessionSlots(2, () => 0);
    let grownTo = 0;
    slots.onGrow = (capacity) => {
      grownTo = capacity;
    };
    const taken = [0, 1, 2].map((index) => {
      const slot = slots.allocate(recordingSocket(), TransportKind.object, 0, 10);
      slots.account[slot] = 100 + index;
      return slot;
    });
    expect(grownTo).toBeGreaterThan(2);
    expect(taken.map((slot) => slots.account[slot])).toEqual([100, 101, 102]);
    expect(new Set(taken).size).toBe(3);
  });
});

describe("a slot reused while a handler awaits the store", () => {
  let running: TestServer | null = null;
  afterEach(async () => {
    await running?.stop();
    running = null;
  });

  test("the handler's answer does not reach the new session of its slot", async () => {
    running = await startTestServer();
    const { server, port } = running;
    const { client: alice } = await registeredClient(port, "alice");
    const aliceSession = [...server.connections.all()].find((session) => session.account === alice.account)!;

    // The store read of alice's lookup waits until the test lets it go.
    let entered = false;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const accounts = server.context.storage.accounts;
    const byHandle = accounts.byHandle.bind(accounts);
    accounts.byHandle = async (handle: string) => {
      if (handle === "gated") {
        entered = true;
        await gate;
      }
      return byHandle(handle);
    };

    alice.sendStanza({ kind: "lookup", clientId: alice.clientId(), handle: "gated" });
    await waitFor(() => entered, 5000, "the lookup to reach the store");
    // Alice goes while her handler waits: her slot is released, and the next connection takes it.
    alice.close();
    await waitFor(() => server.connections.count === 0, 5000, "alice's session to close");
    const { client: bob } = await registeredClient(port, "bob");
    const bobSession = [...server.connections.all()].find((session) => session.account === bob.account)!;
    expect(bobSession.slot).toBe(aliceSession.slot);
    expect(sameSession(bobSession, aliceSession)).toBe(false);

    release();
    // Bob asks something himself: when his answer comes, alice's resumed handler has long run (and written nothing).
    bob.sendStanza({ kind: "ping" });
    await bob.next("pong");
    await Bun.sleep(50);
    expect(bob.all("lookupResult")).toEqual([]);
    expect(bob.all("error")).toEqual([]);
    expect(bob.closed).toBe(false);
    expect(bobSession.state).toBe(SessionState.ready);
    expect(bobSession.account).toBe(bob.account);
    expect(aliceSession.state).toBe(SessionState.closed);
    bob.close();
  });
});
