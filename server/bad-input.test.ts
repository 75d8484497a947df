// A peer's bad input gets an error frame with a code and a closed session; other sessions keep working and nothing
// acknowledged is lost. Real sockets on 127.0.0.1.

import { afterEach, describe, expect, test } from "bun:test";
import { ErrorCode } from "../protocol/index.ts";
import { bytesOf, RawClient, registeredClient, startTestServer, type TestServer, textOf, waitFor } from "./test-kit.ts";

let running: TestServer | null = null;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await running?.stop();
  running = null;
});

async function pairAndBystander(server: TestServer) {
  const alice = (await registeredClient(server.port, "alice")).client;
  const bob = (await registeredClient(server.port, "bob")).client;
  clients.push(alice, bob);
  return { alice, bob };
}

/** Alice and Bob still talk after someone else misbehaved, and Bob's unacked message survives. */
async function stillWorks(alice: RawClient, bob: RawClient, text: string): Promise<void> {
  alice.send(bob.account, bytesOf(text));
  await alice.next("serverAck");
  expect(textOf((await bob.next("deliver", (deliver) => textOf(deliver.payload) === text)).payload)).toBe(text);
}

const badFrames: Array<{ name: string; bytes: () => Uint8Array; code: number; loggedIn?: boolean }> = [
  { name: "a wrong preamble", bytes: () => bytesOf("GET / HTTP/1.1\r\n\r\n"), code: ErrorCode.badPreamble },
  {
    name: "an unsupported protocol version",
    bytes: () => Uint8Array.of(0x53, 0x42, 9, 1),
    code: ErrorCode.versionUnsupported,
  },
  // Length 0x0f_ff_ff (3-byte varint) passes the 1 KiB test frame limit.
  {
    name: "an oversize declared length",
    bytes: () => Uint8Array.of(0xff, 0xff, 0x3f),
    code: ErrorCode.frameTooLarge,
    loggedIn: true,
  },
  {
    name: "a varint longer than 3 bytes",
    bytes: () => Uint8Array.of(0x80, 0x80, 0x80, 0x01),
    code: ErrorCode.malformedFrame,
    loggedIn: true,
  },
  {
    name: "an unknown stanza kind",
    bytes: () => Uint8Array.of(0x02, 0x3f, 0x90),
    code: ErrorCode.unknownKind,
    loggedIn: true,
  },
  {
    name: "a body that is not MessagePack",
    bytes: () => Uint8Array.of(0x02, 0x06, 0xc1),
    code: ErrorCode.malformedBody,
    loggedIn: true,
  },
  // send with a string where the client id belongs: [ "x", 1, bin(1) ]
  {
    name: "a field of the wrong type",
    bytes: () => Uint8Array.of(0x08, 0x06, 0x93, 0xa1, 0x78, 0x01, 0xc4, 0x01, 0x00),
    code: ErrorCode.wrongFieldType,
    loggedIn: true,
  },
  {
    name: "nesting deeper than the limit",
    bytes: () => Uint8Array.of(0x07, 0x06, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90),
    code: ErrorCode.nestingTooDeep,
    loggedIn: true,
  },
  {
    name: "a server-only stanza (deliver) from a client",
    bytes: () => Uint8Array.of(0x02, 0x0d, 0x90),
    code: ErrorCode.unexpectedStanza,
    loggedIn: true,
  },
];

describe("bad input", () => {
  for (const bad of badFrames) {
    test(`${bad.name}: error ${bad.code}, session closed, others unaffected`, async () => {
      running = await startTestServer();
      const { alice, bob } = await pairAndBystander(running);
      // Bob holds an unacknowledged delivery while the bad peer misbehaves.
      alice.send(bob.account, bytesOf("before"));
      await bob.next("deliver");

      let attacker: RawClient;
      if (bad.loggedIn) {
        attacker = (await registeredClient(running.port, "mallory")).client;
      } else {
        attacker = await RawClient.connect(running.port, { preamble: false });
      }
      clients.push(attacker);
      attacker.write(bad.bytes());
      const error = await attacker.next("error");
      expect(error.code).toBe(bad.code);
      await attacker.waitClosed();
      await stillWorks(alice, bob, `after ${bad.name}`);
    });
  }

  test("a frame split into single bytes is still understood", async () => {
    running = await startTestServer();
    const { alice, bob } = await pairAndBystander(running);
    const frame = alice.codec.encode({
      kind: "send",
      clientId: alice.clientId(),
      to: bob.account,
      payload: bytesOf("drip"),
    });
    for (const byte of frame) {
      alice.write(Uint8Array.of(byte));
      await Bun.sleep(1);
    }
    await alice.next("serverAck");
    expect(textOf((await bob.next("deliver")).payload)).toBe("drip");
  });

  test("a peer over its budget gets rateLimited errors, then is closed as a flood", async () => {
    running = await startTestServer({
      limits: { rateStanzasPerSecond: 20, rateBurstStanzas: 10, rateViolationsMax: 5 },
    });
    const { alice, bob } = await pairAndBystander(running);
    const flooder = (await registeredClient(running.port, "flooder")).client;
    clients.push(flooder);
    const lookups = (count: number) =>
      new Uint8Array(
        Buffer.concat(
          Array.from({ length: count }, () =>
            flooder.codec.encode({ kind: "lookup", clientId: flooder.clientId(), handle: "alice" }),
          ),
        ),
      );
    // The burst (10) and 3 over it: within the violations allowed, so every frame is handled, the 3 refused.
    flooder.write(lookups(13));
    const limited = await flooder.next("error", (error) => error.code === ErrorCode.rateLimited);
    expect(limited.code).toBe(ErrorCode.rateLimited);
    expect(flooder.closed).toBe(false);
    // More over the budget, a few frames at a time, until the violations in a row pass rateViolationsMax.
    for (let round = 0; round < 20 && !flooder.closed; round++) {
      flooder.write(lookups(2));
      await Bun.sleep(5);
    }
    const closing = await flooder.next("error", (error) => error.code === ErrorCode.flood);
    expect(closing.code).toBe(ErrorCode.flood);
    await flooder.waitClosed();
    // Only the burst (and what refilled meanwhile) was answered.
    expect(flooder.all("lookupResult").length).toBeLessThanOrEqual(13);
    expect(flooder.all("error").filter((error) => error.code === ErrorCode.rateLimited).length).toBeGreaterThan(0);
    await stillWorks(alice, bob, "after the flood");
  });

  // Charged frame by frame, a flooder got its whole burst handled (128 sends stored, or 128 lookups read) before its
  // close, and every other session waited behind that work. The frames of one read are charged together now.
  test("a read that holds more than the whole budget is closed as a flood with none of its frames handled", async () => {
    running = await startTestServer({
      limits: { rateStanzasPerSecond: 20, rateBurstStanzas: 10, rateViolationsMax: 5 },
    });
    const { alice, bob } = await pairAndBystander(running);
    const flooder = (await registeredClient(running.port, "flooder")).client;
    clients.push(flooder);
    const frames: Uint8Array[] = [];
    for (let index = 0; index < 40; index++) {
      frames.push(
        flooder.codec.encode({ kind: "send", clientId: flooder.clientId(), to: bob.account, payload: bytesOf("f") }),
      );
    }
    // 40 sends in one write: 10 within the burst, then 30 refusals in a row, more than the 5 allowed.
    flooder.write(new Uint8Array(Buffer.concat(frames)));
    const closing = await flooder.next("error", (error) => error.code === ErrorCode.flood);
    expect(closing.code).toBe(ErrorCode.flood);
    await flooder.waitClosed();
    // Nothing of that read was handled: no send acknowledged (so none stored), none refused one by one.
    expect(flooder.all("serverAck")).toHaveLength(0);
    expect(flooder.all("error").filter((error) => error.code === ErrorCode.rateLimited)).toHaveLength(0);
    await stillWorks(alice, bob, "after the flood");
    // Bob got only the pair's own traffic, none of the flooder's sends.
    expect(bob.all("deliver").filter((deliver) => deliver.from === flooder.account)).toHaveLength(0);
  });

  // Acks, pings and pongs were once free: one connection writing pongs kept the server at 100 % CPU and was never
  // closed. Every frame kind counts now (acks and pongs at a fraction of a token, a ping, which is answered, at one).
  for (const kind of ["pong", "ping", "ack"] as const) {
    test(`a flood of ${kind} frames is closed as a flood, without an answer per frame`, async () => {
      running = await startTestServer({
        limits: { rateStanzasPerSecond: 20, rateBurstStanzas: 10, rateViolationsMax: 5, rateControlStanzasPerToken: 4 },
      });
      const { alice, bob } = await pairAndBystander(running);
      const flooder = (await registeredClient(running.port, `${kind}-flooder`)).client;
      clients.push(flooder);
      const frame =
        kind === "ack" ? flooder.codec.encode({ kind: "ack", seq: 1 }) : flooder.codec.encode({ kind } as never);
      const frames: Uint8Array[] = [];
      // The burst (10 tokens) holds 40 acks or pongs, or 10 pings; 200 are well past it.
      for (let index = 0; index < 200; index++) frames.push(frame);
      const startedAt = Date.now();
      flooder.write(new Uint8Array(Buffer.concat(frames)));
      const closing = await flooder.next("error", (error) => error.code === ErrorCode.flood);
      expect(closing.code).toBe(ErrorCode.flood);
      await flooder.waitClosed(1000);
      expect(Date.now() - startedAt).toBeLessThan(1000);
      // Over the budget a control frame is dropped, never answered with an error of its own.
      expect(flooder.all("error").filter((error) => error.code === ErrorCode.rateLimited)).toHaveLength(0);
      // A ping costs a whole token: the burst of 10 (and what refills meanwhile) is all that is answered. At a
      // quarter of a token, 40 pings were answered, and four flooders' pongs doubled everyone's p99 (RELIABILITY.md).
      if (kind === "ping") expect(flooder.all("pong").length).toBeLessThanOrEqual(11);
      await stillWorks(alice, bob, `after the ${kind} flood`);
    });
  }

  test("a partial frame dripped a byte at a time is closed at frameCompletionMs (bytes are not life)", async () => {
    running = await startTestServer({ limits: { frameCompletionMs: 600, idleTimeoutMs: 5000 } });
    const { alice, bob } = await pairAndBystander(running);
    const dripper = (await registeredClient(running.port, "dripper")).client;
    clients.push(dripper);
    const frame = dripper.codec.encode({
      kind: "send",
      clientId: dripper.clientId(),
      to: bob.account,
      payload: bytesOf("x".repeat(200)),
    });
    const startedAt = Date.now();
    let sent = 0;
    // All but the last byte, one byte every 50 ms: each byte used to reset the idle clock forever.
    while (!dripper.closed && sent < frame.length - 1 && Date.now() - startedAt < 3000) {
      dripper.write(frame.subarray(sent, sent + 1));
      sent++;
      await Bun.sleep(50);
    }
    const error = await dripper.next("error", (error) => error.code === ErrorCode.frameTimeout);
    expect(error.code).toBe(ErrorCode.frameTimeout);
    await dripper.waitClosed();
    const closedAfterMs = Date.now() - startedAt;
    expect(closedAfterMs).toBeGreaterThanOrEqual(550);
    // The deadline plus at most two wheel ticks and the drip step.
    expect(closedAfterMs).toBeLessThan(600 + 2 * running.config.limits.timerTickMs + 200);
    await stillWorks(alice, bob, "after the dripper");
  });

  test("a slow frame that completes within frameCompletionMs is handled; whole frames keep a session alive", async () => {
    running = await startTestServer({ limits: { frameCompletionMs: 1000, idleTimeoutMs: 1200 } });
    const { alice, bob } = await pairAndBystander(running);
    const frame = alice.codec.encode({
      kind: "send",
      clientId: alice.clientId(),
      to: bob.account,
      payload: bytesOf("slow"),
    });
    for (const byte of frame) {
      alice.write(Uint8Array.of(byte));
      await Bun.sleep(20);
    }
    await alice.next("serverAck");
    expect(textOf((await bob.next("deliver")).payload)).toBe("slow");
    expect(alice.closed).toBe(false);
  });

  test("a sender over the rate gets rateLimited with its client id and can retry later", async () => {
    running = await startTestServer({
      limits: { rateStanzasPerSecond: 10, rateBurstStanzas: 3, rateViolationsMax: 50 },
    });
    const { alice, bob } = await pairAndBystander(running);
    const ids = [1, 2, 3, 4, 5].map(() => alice.send(bob.account, bytesOf("r")));
    const error = await alice.next("error");
    expect(error.code).toBe(ErrorCode.rateLimited);
    expect(ids).toContain(error.clientId!);
    await Bun.sleep(400);
    const retried = alice.send(bob.account, bytesOf("r"));
    expect((await alice.next("serverAck", (ack) => ack.clientId === retried)).clientId).toBe(retried);
  });
});

describe("fairness between sessions", () => {
  test("a backlog of costly frames is worked off over several turns with the socket paused, in order, nothing lost", async () => {
    running = await startTestServer({
      limits: {
        sessionTurnWorkMsMax: 1,
        rateStanzasPerSecond: 5000,
        rateBurstStanzas: 5000,
        inboundBytesMax: 64 * 1024,
      },
    });
    const { alice, bob } = await pairAndBystander(running);
    const busy = (await registeredClient(running.port, "busy")).client;
    clients.push(busy);
    const count = 1500;
    const frames: Uint8Array[] = [];
    const ids: number[] = [];
    for (let index = 0; index < count; index++) {
      const clientId = busy.clientId();
      ids.push(clientId);
      frames.push(busy.codec.encode({ kind: "lookup", clientId, handle: "alice" }));
    }
    const yielded = () =>
      running!.server.context.metrics.render().match(/^switchboard_session_turns_yielded_total (\d+)$/m);
    const yieldedBefore = Number(yielded()?.[1]);
    busy.write(new Uint8Array(Buffer.concat(frames)));
    // Meanwhile the bystanders are served.
    await stillWorks(alice, bob, "during the backlog");
    await waitFor(() => busy.all("lookupResult").length === count, 10_000, "every lookup answered");
    expect(busy.all("lookupResult").map((result) => result.clientId)).toEqual(ids);
    expect(busy.closed).toBe(false);
    expect(Number(yielded()?.[1])).toBeGreaterThan(yieldedBefore);
  });

  test("a session spending the second half of its burst gets a thinner share of each turn", async () => {
    // The same backlog of 300 lookups (three quarters of a burst of 400 tokens) worked off with the whole share
    // throughout, then with 10 % of it past half the burst: the thinner share takes more turns.
    const turnsFor = async (sharePercent: number): Promise<number> => {
      running = await startTestServer({
        limits: {
          sessionTurnWorkMsMax: 2,
          sessionTurnSharePercentBursting: sharePercent,
          rateStanzasPerSecond: 1,
          rateBurstStanzas: 400,
          rateViolationsMax: 1000,
          inboundBytesMax: 64 * 1024,
        },
      });
      const busy = (await registeredClient(running.port, "busy")).client;
      clients.push(busy);
      const frames: Uint8Array[] = [];
      for (let index = 0; index < 300; index++) {
        frames.push(busy.codec.encode({ kind: "lookup", clientId: busy.clientId(), handle: "busy" }));
      }
      const yielded = () =>
        Number(running!.server.context.metrics.render().match(/^switchboard_session_turns_yielded_total (\d+)$/m)?.[1]);
      const before = yielded();
      busy.write(new Uint8Array(Buffer.concat(frames)));
      await waitFor(() => busy.all("lookupResult").length === 300, 10_000, "every lookup answered");
      const turns = yielded() - before;
      busy.close();
      await running.stop();
      running = null;
      return turns;
    };
    const whole = await turnsFor(100);
    const thin = await turnsFor(10);
    expect(thin).toBeGreaterThan(whole);
  }, 30_000);
});
