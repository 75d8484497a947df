// The wire budget of a group send (PROTOCOL.md sections 14 and 18): a 20-byte message to a group of 100 members
// (one device each), with ids near 2^32 as in the other budgets, costs at most 6,000 bytes on all links together:
// the sender's groupSend and serverAck, and a groupDeliver and an ack on each of the 99 other links. The same message
// sent as 99 one-to-one sends costs far more.

import { describe, expect, test } from "bun:test";
import { FrameCodec } from "./frame-codec.ts";
import { defaultLimits } from "./limits.ts";
import type { Stanza } from "./stanzas.ts";

const groupOf100BytesMax = 6000;
const members = 100;
const idHigh = 0xffff_fffe;
const time = 1_763_800_000;
const payload = Uint8Array.from({ length: 20 }, (_, index) => 0x80 + index);

const codec = new FrameCodec({ limits: defaultLimits });
const bytes = (stanza: Stanza) => codec.encode(stanza).length;

describe("group wire budget", () => {
  test("a 20-byte message to a group of 100 costs at most 6,000 bytes on the wire, far less than 99 sends", () => {
    let group = bytes({
      kind: "groupSend",
      clientId: idHigh,
      groupId: idHigh - 1,
      devices: null,
      devicesHash: new Uint8Array(8).fill(0x60),
      payload,
      parts: [],
    });
    group += bytes({ kind: "serverAck", clientId: idHigh });
    for (let member = 1; member < members; member++) {
      const seq = idHigh - 2 - member;
      group += bytes({
        kind: "groupDeliver",
        seq,
        groupId: idHigh - 1,
        from: idHigh - 3,
        fromDevice: 127,
        clientId: idHigh,
        timeSeconds: time,
        payload,
        part: null,
      });
      group += bytes({ kind: "ack", seq });
    }
    expect(group).toBeLessThanOrEqual(groupOf100BytesMax);
    expect(group).toBe(5995);

    let oneToOne = 0;
    for (let member = 1; member < members; member++) {
      const seq = idHigh - 2 - member;
      oneToOne += bytes({ kind: "send", clientId: idHigh - member, to: idHigh - 10 - member, payload });
      oneToOne += bytes({ kind: "serverAck", clientId: idHigh - member });
      oneToOne += bytes({
        kind: "deliver",
        seq,
        from: idHigh - 3,
        fromDevice: 127,
        clientId: idHigh - member,
        timeSeconds: time,
        payload,
      });
      oneToOne += bytes({ kind: "ack", seq });
    }
    expect(oneToOne).toBe(9603);
    expect(group).toBeLessThan(oneToOne * 0.65);
  });

  test("the device list instead of its hash adds 8 bytes per recipient device (and fits in one frame at 1,024)", () => {
    const devices = Array.from({ length: 2047 }, (_, index) => ({ account: idHigh - index, device: 1 + (index % 2) }));
    const listed = bytes({
      kind: "groupSend",
      clientId: idHigh,
      groupId: idHigh - 1,
      devices,
      devicesHash: null,
      payload,
      parts: [],
    });
    const hashed = bytes({
      kind: "groupSend",
      clientId: idHigh,
      groupId: idHigh - 1,
      devices: null,
      devicesHash: new Uint8Array(8),
      payload,
      parts: [],
    });
    // The list's bin 16 header and the nil hash against a nil list and the bin 8 hash, and a 3-byte length prefix.
    expect(listed - hashed).toBe(2047 * 8 + (3 + 1) - (1 + 10) + 2);
    expect(listed).toBeLessThanOrEqual(defaultLimits.frameBytesMax);
  });
});
