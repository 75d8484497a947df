import { describe, expect, test } from "bun:test";
import { defaultLimits, FrameCodec, type Limits, type Stanza } from "../protocol/index.ts";
import { floodsAhead, frameCost, refilledTokens } from "./rate-budget.ts";

const limits: Limits = { ...defaultLimits, rateBurstStanzas: 10, rateStanzasPerSecond: 20, rateViolationsMax: 5 };
const codec = new FrameCodec({ limits });

function frames(stanza: Stanza, count: number): Uint8Array {
  const one = codec.encode(stanza);
  const all = new Uint8Array(one.length * count);
  for (let index = 0; index < count; index++) all.set(one, index * one.length);
  return all;
}

const lookup: Stanza = { kind: "lookup", clientId: 1, handle: "someone" };

describe("rate budget", () => {
  test("frames up to the burst plus rateViolationsMax refusals are not a flood; one more is", () => {
    // 10 tokens admit 10 lookups, then 5 refusals in a row are allowed: 15 frames. The 16th is the 6th in a row.
    expect(floodsAhead(frames(lookup, 15), 10, 0, limits)).toBe(false);
    expect(floodsAhead(frames(lookup, 16), 10, 0, limits)).toBe(true);
  });

  test("violations already in a row count, and fewer tokens close sooner", () => {
    // An admitted frame ends the row; with no token left, the violations carried in count.
    expect(floodsAhead(frames(lookup, 11), 10, 5, limits)).toBe(false);
    expect(floodsAhead(frames(lookup, 1), 0, 5, limits)).toBe(true);
    expect(floodsAhead(frames(lookup, 5), 0.5, 0, limits)).toBe(false);
    expect(floodsAhead(frames(lookup, 6), 0.5, 0, limits)).toBe(true);
    expect(floodsAhead(frames(lookup, 8), 3, 0, limits)).toBe(false);
    expect(floodsAhead(frames(lookup, 9), 3, 0, limits)).toBe(true);
  });

  test("acks and pongs cost a fraction of a token", () => {
    expect(frameCost(10, limits)).toBe(1 / limits.rateControlStanzasPerToken);
    const pongs = (count: number) => frames({ kind: "pong" }, count);
    // 10 tokens hold 40 pongs; then 5 refusals.
    expect(floodsAhead(pongs(45), 10, 0, limits)).toBe(false);
    expect(floodsAhead(pongs(46), 10, 0, limits)).toBe(true);
    // Pings are answered and cost a whole token.
    expect(floodsAhead(frames({ kind: "ping" }, 16), 10, 0, limits)).toBe(true);
  });

  test("a partial or malformed frame ends the count: only whole frames are charged", () => {
    const whole = frames(lookup, 15);
    const withPartial = new Uint8Array(whole.length + 3);
    withPartial.set(whole);
    withPartial.set(codec.encode(lookup).subarray(0, 3), whole.length);
    expect(floodsAhead(withPartial, 10, 0, limits)).toBe(false);
    // A zero length (malformed) before the 16th frame: the decoder reports it; the look-ahead stops there.
    const withBad = new Uint8Array(whole.length + 1 + codec.encode(lookup).length);
    withBad.set(whole);
    withBad[whole.length] = 0;
    withBad.set(codec.encode(lookup), whole.length + 1);
    expect(floodsAhead(withBad, 10, 0, limits)).toBe(false);
  });

  test("a read too short to hold a flood is not scanned past its length check", () => {
    // Two bytes per frame at least: 31 bytes cannot hold the 16 frames a flood needs (10 tokens, 6 refusals), even
    // of garbage that would otherwise be read as frames.
    expect(floodsAhead(new Uint8Array(31).fill(1), 10, 0, limits)).toBe(false);
    expect(floodsAhead(frames({ kind: "ping" }, 16), 10, 0, limits)).toBe(true);
  });

  test("the bucket refills at rateStanzasPerSecond up to the burst", () => {
    expect(refilledTokens(0, 1000, 1100, limits)).toBeCloseTo(2);
    expect(refilledTokens(9, 0, 60_000, limits)).toBe(10);
  });
});
