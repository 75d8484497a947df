import { describe, expect, test } from "bun:test";
import {
  decodeFrame,
  encodeClientFrame,
  handshakeBytesMax,
  readHandshake,
  readServerFrames,
  upgradeRequest,
  WsOpcode,
  websocketKey,
} from "./websocket-client-frames.ts";

const encoder = new TextEncoder();

function bytes(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, index) => (index * 31 + 7) & 0xff);
}

/** An unmasked server frame (FIN set unless told), as a server sends it. */
function serverFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length <= 0xffff ? 2 : 8;
  const frame = new Uint8Array(2 + lengthBytes + length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (lengthBytes === 0) frame[1] = length;
  else if (lengthBytes === 2) {
    frame[1] = 126;
    new DataView(frame.buffer).setUint16(2, length);
  } else {
    frame[1] = 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  frame.set(payload, 2 + lengthBytes);
  return frame;
}

function join(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

describe("client frames", () => {
  for (const length of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
    test(`a masked binary frame of ${length} bytes round-trips, with the right length form`, () => {
      const payload = bytes(length);
      const mask = Uint8Array.of(0x12, 0x34, 0x56, 0x78);
      const frame = encodeClientFrame(WsOpcode.binary, payload, mask);
      expect(frame[0]).toBe(0x82);
      expect(frame[1]! & 0x80).toBe(0x80);
      const form = frame[1]! & 0x7f;
      const header = length < 126 ? 2 : length <= 0xffff ? 4 : 10;
      expect(form).toBe(length < 126 ? length : length <= 0xffff ? 126 : 127);
      expect(frame.length).toBe(header + 4 + length);
      expect([...frame.subarray(header, header + 4)]).toEqual([0x12, 0x34, 0x56, 0x78]);
      // Masked on the wire: byte i is payload[i] XOR mask[i % 4].
      for (let index = 0; index < Math.min(length, 16); index++) {
        expect(frame[header + 4 + index]).toBe(payload[index]! ^ mask[index % 4]!);
      }
      const decoded = decodeFrame(frame.slice());
      expect(decoded.status).toBe("frame");
      if (decoded.status !== "frame") return;
      expect(decoded.consumed).toBe(frame.length);
      expect(decoded.frame.fin).toBe(true);
      expect(decoded.frame.opcode).toBe(WsOpcode.binary);
      expect(Buffer.from(decoded.frame.payload).equals(Buffer.from(payload))).toBe(true);
    });
  }

  test("every frame gets a fresh random mask", () => {
    const payload = bytes(8);
    const a = encodeClientFrame(WsOpcode.binary, payload);
    const b = encodeClientFrame(WsOpcode.binary, payload);
    expect(Buffer.from(a.subarray(2, 6)).equals(Buffer.from(b.subarray(2, 6)))).toBe(false);
  });

  test("a partial frame asks for more at every split point", () => {
    const frame = encodeClientFrame(WsOpcode.binary, bytes(300));
    for (const cut of [0, 1, 2, 3, 4, 7, 8, 100, frame.length - 1]) {
      expect(decodeFrame(frame.subarray(0, cut)).status).toBe("more");
    }
    expect(decodeFrame(serverFrame(WsOpcode.binary, bytes(70_000)).subarray(0, 9)).status).toBe("more");
  });

  test("reserved bits are refused", () => {
    const frame = serverFrame(WsOpcode.binary, bytes(3));
    frame[0] = frame[0]! | 0x40;
    expect(decodeFrame(frame)).toEqual({ status: "error", reason: "wsReservedBits" });
  });
});

describe("server frames", () => {
  test("binary and continuation payloads join into one stream; pings get a masked pong; pongs are ignored", () => {
    const input = join(
      serverFrame(WsOpcode.binary, encoder.encode("ab"), false),
      serverFrame(WsOpcode.ping, encoder.encode("hi")),
      serverFrame(WsOpcode.continuation, encoder.encode("cd")),
      serverFrame(WsOpcode.pong, encoder.encode("x")),
      serverFrame(WsOpcode.binary, encoder.encode("ef")),
    );
    const result = readServerFrames(input);
    expect(result.error).toBeNull();
    expect(result.closed).toBe(false);
    expect(result.consumed).toBe(input.length);
    expect(new TextDecoder().decode(result.data!)).toBe("abcdef");
    expect(result.replies).toHaveLength(1);
    const pong = decodeFrame(result.replies[0]!.slice());
    expect(pong.status).toBe("frame");
    if (pong.status !== "frame") return;
    expect(result.replies[0]![1]! & 0x80).toBe(0x80);
    expect(pong.frame.opcode).toBe(WsOpcode.pong);
    expect(new TextDecoder().decode(pong.frame.payload)).toBe("hi");
  });

  test("input split anywhere gives the same stream, keeping only the partial frame", () => {
    const small = [bytes(5), bytes(126), bytes(300)];
    const cases: Array<[Uint8Array[], number]> = [1, 3, 7].map((size) => [small, size]);
    const large = [...small, bytes(70_000)];
    for (const size of [130, 4096, 1_000_000]) cases.push([large, size]);
    for (const [payloads, chunkSize] of cases) {
      const input = join(...payloads.map((payload) => serverFrame(WsOpcode.binary, payload)));
      const expected = join(...payloads);
      const out: Uint8Array[] = [];
      let pending: Uint8Array | null = null;
      for (let at = 0; at < input.length; at += chunkSize) {
        const chunk = input.subarray(at, at + chunkSize);
        const source: Uint8Array = pending === null ? chunk : join(pending, chunk);
        const result = readServerFrames(source);
        expect(result.error).toBeNull();
        if (result.data !== null) out.push(result.data.slice());
        pending = result.consumed < source.length ? source.slice(result.consumed) : null;
      }
      expect(pending).toBeNull();
      expect(Buffer.from(join(...out)).equals(Buffer.from(expected))).toBe(true);
    }
  });

  test("a close frame ends the reading; a text message is an error", () => {
    const closing = readServerFrames(
      join(serverFrame(WsOpcode.binary, bytes(2)), serverFrame(WsOpcode.close, Uint8Array.of(0x03, 0xe8))),
    );
    expect(closing.closed).toBe(true);
    expect(closing.data?.length).toBe(2);
    expect(readServerFrames(serverFrame(WsOpcode.text, encoder.encode("hi"))).error).toBe("wsTextMessage");
  });
});

describe("handshake", () => {
  test("the upgrade request has the headers a server needs and no Origin or extensions", () => {
    const key = websocketKey();
    expect(Buffer.from(key, "base64")).toHaveLength(16);
    const text = new TextDecoder().decode(upgradeRequest("127.0.0.1", 7422, "/ws", key));
    expect(text).toStartWith("GET /ws HTTP/1.1\r\n");
    expect(text).toContain("Host: 127.0.0.1:7422\r\n");
    expect(text).toContain("Upgrade: websocket\r\n");
    expect(text).toContain("Connection: Upgrade\r\n");
    expect(text).toContain("Sec-WebSocket-Version: 13\r\n");
    expect(text).toContain(`Sec-WebSocket-Key: ${key}\r\n`);
    expect(text).not.toContain("Origin");
    expect(text).not.toContain("Extensions");
    expect(text).toEndWith("\r\n\r\n");
  });

  test("101 with headers opens, leaving the frames that follow; partial asks for more; others fail", () => {
    const answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    const input = join(encoder.encode(answer), serverFrame(WsOpcode.binary, bytes(4)));
    expect(readHandshake(input)).toEqual({ status: "open", consumed: answer.length });
    for (const cut of [1, 5, 12, 20, answer.length - 1]) {
      expect(readHandshake(input.subarray(0, cut))).toEqual({ status: "more" });
    }
    expect(readHandshake(encoder.encode("HTTP/1.1 403 Forbidden\r\n\r\n")).status).toBe("error");
    expect(readHandshake(encoder.encode("HTTP/1.1 426 Upgrade Required\r\n")).status).toBe("error");
    const long = encoder.encode(`HTTP/1.1 101 Switching Protocols\r\nX: ${"a".repeat(handshakeBytesMax)}`);
    expect(readHandshake(long)).toEqual({ status: "error", reason: "wsHandshakeTooLong" });
  });

  test("a real Bun.serve WebSocket accepts the upgrade and echoes binary frames", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request, bunServer) {
        return bunServer.upgrade(request, { data: undefined }) ? undefined : new Response("no", { status: 400 });
      },
      websocket: {
        perMessageDeflate: false,
        message(socket, message) {
          if (typeof message !== "string") socket.sendBinary(message);
        },
      },
    });
    const port = server.port ?? 0;
    let received: Uint8Array = new Uint8Array(0);
    let opened = false;
    const echoed: Uint8Array[] = [];
    const { promise, resolve } = Promise.withResolvers<void>();
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(socket, chunk) {
          received = join(received, chunk);
          if (!opened) {
            const handshake = readHandshake(received);
            if (handshake.status !== "open") return;
            opened = true;
            received = received.slice(handshake.consumed);
            socket.write(encodeClientFrame(WsOpcode.binary, bytes(200)));
          }
          const frames = readServerFrames(received);
          if (frames.data !== null) echoed.push(frames.data.slice());
          received = received.slice(frames.consumed);
          if (echoed.reduce((sum, part) => sum + part.length, 0) >= 200) resolve();
        },
      },
    });
    try {
      socket.write(upgradeRequest("127.0.0.1", port, "/ws"));
      await Promise.race([promise, Bun.sleep(5000)]);
      expect(Buffer.from(join(...echoed)).equals(Buffer.from(bytes(200)))).toBe(true);
    } finally {
      socket.terminate();
      server.stop(true);
    }
  });
});
