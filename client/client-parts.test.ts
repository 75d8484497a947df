// The SDK's small parts on their own: backoff, the duplicate filter, keys, the outbox bound, the TCP transport's
// partial writes. No server needed (the transport test listens on 127.0.0.1 port 0 itself).

import { describe, expect, test } from "bun:test";
import { loginMessage } from "../protocol/index.ts";
import { verifyEd25519 } from "../server/signature.ts";
import { AckCoalescer } from "./ack-coalescer.ts";
import { Backoff } from "./backoff.ts";
import { DuplicateFilter, duplicateWindowIds } from "./duplicate-filter.ts";
import {
  ClientClosedError,
  ClientError,
  exportKeyPairJwk,
  exportPrivateKeyPkcs8,
  generateKeyPair,
  importKeyPairJwk,
  importKeyPairPkcs8,
  OutboxFullError,
  SwitchboardClient,
  sign,
  TcpTransport,
  verify,
} from "./index.ts";

describe("Backoff", () => {
  test("doubles from initialMs up to maxMs, jittered below the base, honouring a floor; reset starts over", () => {
    const lowest = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5 }, () => 0);
    expect([1, 2, 3, 4, 5].map(() => lowest.next())).toEqual([50, 100, 200, 400, 500]);
    const highest = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5 }, () => 0.999999);
    expect([1, 2, 3, 4, 5].map(() => highest.next())).toEqual([100, 200, 400, 800, 1000]);
    expect(highest.next(5000)).toBe(5000); // a goaway's retry-after is a floor
    highest.reset();
    expect(highest.next()).toBe(100);
  });
});

describe("DuplicateFilter", () => {
  test("recognises exact client ids per sender device, within a bounded memory", () => {
    const filter = new DuplicateFilter(2);
    expect(filter.isDuplicate(1, 1, 5)).toBe(false);
    expect(filter.isDuplicate(1, 1, 5)).toBe(true);
    // A lower id not seen yet is new: a send refused for now and retried with its own id after later ones.
    expect(filter.isDuplicate(1, 1, 4)).toBe(false);
    expect(filter.isDuplicate(1, 1, 4)).toBe(true);
    expect(filter.isDuplicate(1, 2, 5)).toBe(false); // another device of the same account
    expect(filter.isDuplicate(1, 1, 6)).toBe(false); // 1:1 is now the most recent
    expect(filter.isDuplicate(2, 1, 1)).toBe(false); // forgets 1:2, the least recent
    expect(filter.senderDevices).toBe(2);
    expect(filter.isDuplicate(1, 2, 5)).toBe(false); // forgotten: seen as new
    expect(filter.isDuplicate(1, 1, 6)).toBe(false); // and 2:1 pushed out 1:1 in turn
  });

  test("the window covers the server's resend window; an id below it cannot be new, so it is a duplicate", () => {
    const filter = new DuplicateFilter(4);
    expect(filter.isDuplicate(7, 1, 100)).toBe(false);
    expect(filter.isDuplicate(7, 1, 100 - duplicateWindowIds + 1)).toBe(false); // the oldest id in the window
    expect(filter.isDuplicate(7, 1, 100 - duplicateWindowIds + 1)).toBe(true);
    expect(filter.isDuplicate(7, 1, 100 - duplicateWindowIds)).toBe(true); // below: never stored new by the server
    // A jump past the window forgets the old bits but not the rule.
    expect(filter.isDuplicate(7, 1, 100 + 3 * duplicateWindowIds)).toBe(false);
    expect(filter.isDuplicate(7, 1, 101)).toBe(true);
    expect(filter.isDuplicate(7, 1, 100 + 3 * duplicateWindowIds - 1)).toBe(false);
  });

  test("a duplicate of a message whose listeners still run hands back their work (its ack must wait)", async () => {
    const filter = new DuplicateFilter(4);
    expect(filter.admit(3, 1, 9).duplicate).toBe(false);
    let finish: () => void = () => {};
    const storing = new Promise<void>((resolve) => {
      finish = resolve;
    });
    filter.track(3, 1, 9, storing);
    const again = filter.admit(3, 1, 9);
    expect(again.duplicate).toBe(true);
    expect(again.duplicate && again.pending).toBe(storing);
    finish();
    await storing;
    await Bun.sleep(0);
    const later = filter.admit(3, 1, 9);
    expect(later.duplicate && later.pending).toBe(null);
    expect(filter.pendingMessages).toBe(0);
  });
});

describe("AckCoalescer", () => {
  test("an ack of one session is never written on the next, and later acks still wait for earlier listeners", async () => {
    const written: number[] = [];
    const acks = new AckCoalescer(
      (seq) => written.push(seq),
      () => {},
    );
    acks.newSession();
    let finish: () => void = () => {};
    const storing = new Promise<void>((resolve) => {
      finish = resolve;
    });
    acks.note(40, [storing]); // a slow store in the first session
    await Bun.sleep(5);
    expect(written).toEqual([]);
    acks.newSession(); // the connection dropped; the server restarted and numbered its queue anew
    acks.note(3, []);
    await Bun.sleep(5);
    // The new session's ack waits behind the first session's listener, and 40 is never written.
    expect(written).toEqual([]);
    finish();
    await Bun.sleep(5);
    expect(written).toEqual([3]);
  });
});

describe("keys", () => {
  test("signatures verify on the server's side; JWK and PKCS8 round trips keep the key", async () => {
    const keyPair = await generateKeyPair();
    expect(keyPair.publicKey).toHaveLength(32);
    const message = loginMessage(new Uint8Array(32).fill(7), "chat.example.com", 12, 3);
    const signature = await sign(keyPair, message);
    expect(signature).toHaveLength(64);
    expect(verifyEd25519(keyPair.publicKey, message, signature)).toBe(true);
    expect(await verify(keyPair.publicKey, message, signature)).toBe(true);

    const fromJwk = await importKeyPairJwk(JSON.parse(JSON.stringify(await exportKeyPairJwk(keyPair))));
    expect(fromJwk.publicKey).toEqual(keyPair.publicKey);
    expect(verifyEd25519(keyPair.publicKey, message, await sign(fromJwk, message))).toBe(true);
    const fromPkcs8 = await importKeyPairPkcs8(await exportPrivateKeyPkcs8(keyPair), keyPair.publicKey);
    expect(verifyEd25519(keyPair.publicKey, message, await sign(fromPkcs8, message))).toBe(true);

    const other = await generateKeyPair();
    expect(verifyEd25519(other.publicKey, message, signature)).toBe(false);
    await expect(importKeyPairJwk({ kty: "EC" })).rejects.toThrow(TypeError);
  });

  test("a non-extractable key (as a browser keeps it) signs, but its bytes cannot be exported", async () => {
    const keyPair = await generateKeyPair({ extractable: false });
    expect(keyPair.privateKey.extractable).toBe(false);
    expect(keyPair.publicKey).toHaveLength(32);
    const message = loginMessage(new Uint8Array(32).fill(9), "localhost", 4, 1);
    expect(verifyEd25519(keyPair.publicKey, message, await sign(keyPair, message))).toBe(true);
    await expect(exportKeyPairJwk(keyPair)).rejects.toThrow();
    await expect(exportPrivateKeyPkcs8(keyPair)).rejects.toThrow();
    expect((await generateKeyPair()).privateKey.extractable).toBe(true); // the default stays exportable
  });
});

describe("outbox and validation", () => {
  test("sends wait in the bounded outbox while disconnected; close() rejects them", async () => {
    const client = new SwitchboardClient({
      credentials: { account: 1, device: 1, keyPair: await generateKeyPair() },
      clientLimits: { outboxMessagesMax: 2 },
    });
    const first = client.send(2, new Uint8Array(3)).catch((error: unknown) => error);
    const second = client.send(2, new Uint8Array(3)).catch((error: unknown) => error);
    expect(await client.send(2, new Uint8Array(3)).catch((error: unknown) => error)).toBeInstanceOf(OutboxFullError);
    expect(client.pendingSends).toBe(2);
    const invalid = await client.send(0, new Uint8Array(1)).catch((error: unknown) => error);
    expect(invalid).toBeInstanceOf(ClientError);
    expect(() => client.receipt(2, 1, [0])).toThrow(ClientError);
    await expect(client.lookup("x".repeat(100))).rejects.toThrow(ClientError);
    await client.close();
    expect(await first).toBeInstanceOf(ClientClosedError);
    expect(await second).toBeInstanceOf(ClientClosedError);
    expect(client.pendingSends).toBe(0);
  });

  test("options need exactly one way to authenticate", () => {
    expect(() => new SwitchboardClient({})).toThrow(TypeError);
    expect(() => new SwitchboardClient({ register: { handle: "ab" }, link: { code: "x" } })).toThrow(TypeError);
  });
});

describe("TcpTransport", () => {
  test("keeps what the socket does not take and flushes it on drain, in order", async () => {
    const totalBytes = 8 * 1024 * 1024;
    let received = 0;
    let mismatch = false;
    const listener = Bun.listen<undefined>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        binaryType: "uint8array",
        data(_socket, chunk: Uint8Array) {
          for (let index = 0; index < chunk.length; index++) {
            if (chunk[index] !== (received + index) % 251) mismatch = true;
          }
          received += chunk.length;
        },
      },
    });
    try {
      const transport = new TcpTransport({ host: "127.0.0.1", port: listener.port, bufferedBytesMax: totalBytes });
      let closed = false;
      await transport.connect({
        data: () => {},
        close: () => {
          closed = true;
        },
      });
      const bytes = new Uint8Array(totalBytes);
      for (let index = 0; index < bytes.length; index++) bytes[index] = index % 251;
      const half = totalBytes / 2;
      expect(transport.write(bytes.subarray(0, half))).toBe(true);
      expect(transport.write(bytes.subarray(half))).toBe(true);
      expect(transport.bufferedBytes).toBeGreaterThan(0); // the kernel did not take it all at once
      bytes.fill(0); // the transport copied what it kept
      const deadline = Date.now() + 5000;
      while (received < totalBytes && Date.now() < deadline) await Bun.sleep(5);
      expect(received).toBe(totalBytes);
      expect(mismatch).toBe(false);
      expect(transport.bufferedBytes).toBe(0);
      transport.close();
      expect(closed).toBe(true);
      expect(transport.write(new Uint8Array(1))).toBe(false);
    } finally {
      listener.stop(true);
    }
  });

  test("a connection refused rejects connect", async () => {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    const transport = new TcpTransport({ host: "127.0.0.1", port, bufferedBytesMax: 1024 });
    await expect(transport.connect({ data: () => {}, close: () => {} })).rejects.toThrow();
  });
});
