// The rate budget every inbound frame is charged against: a token bucket per session (rateStanzasPerSecond refill,
// rateBurstStanzas size), acks and pongs at a fraction of a token, and rateViolationsMax frames over the budget in a
// row before the close as a flood (connection.ts applies it frame by frame in admit()).
//
// The look-ahead (`floodsAhead`) charges every whole frame already received in one pass, before any is handled. A
// flooder writes far more than its budget in one read: 64 KiB holds about 1,700 `send` frames against a burst of 128
// tokens. Charged frame by frame, the server would handle its whole burst (128 sends stored and committed, or 128
// lookups read from SQLite) before the 51st refusal closes it, and every other session waits behind that work
// (measured with `npm run reliability -- flood`: it was the pair's p99 at 2.9x its baseline for sends and 3.3x for
// lookups). Charged ahead, the same peer is closed on the read that proves it a flooder, with none of it handled.
// The outcome for a peer is the one frame-by-frame charging would reach (the simulation below is admit()'s rule with
// no time passing), only earlier: nothing it sent in that read was acknowledged, so nothing acknowledged is lost.

import { frameLengthVarintBytesMax, headerKindMask, type Limits, StanzaKind } from "../protocol/index.ts";

/** What one frame of `kind` (its header's stanza kind) costs in tokens. */
export function frameCost(kind: number, limits: Limits): number {
  return kind === StanzaKind.ack || kind === StanzaKind.pong ? 1 / limits.rateControlStanzasPerToken : 1;
}

/** The bucket after refilling from `refilledAtMs` to `nowMs`, capped at the burst. */
export function refilledTokens(tokens: number, refilledAtMs: number, nowMs: number, limits: Limits): number {
  const refill = ((nowMs - refilledAtMs) * limits.rateStanzasPerSecond) / 1000;
  return Math.min(limits.rateBurstStanzas, tokens + refill);
}

/** The smallest frame: a one-byte length and the header byte (an empty body; ping and pong). */
const smallestFrameBytes = 2;

/**
 * Whether the whole frames at the start of `source` would end in a flood close if charged now, one after another:
 * admit()'s rule (a frame is admitted while the bucket holds its cost, which resets the violations in a row; each
 * other frame is a violation; one more than rateViolationsMax closes). It reads only length prefixes and header bytes;
 * it stops at the first partial or malformed frame (the decoder reports that one when it gets there).
 */
export function floodsAhead(source: Uint8Array, tokens: number, violations: number, limits: Limits): boolean {
  // Too few bytes to hold the fewest frames that could flood (whole-token frames of the smallest size: the bucket's
  // whole tokens, then the refusals still allowed): skip the scan. Most well-behaved reads end here.
  const fewestFrames = Math.floor(tokens) + Math.max(1, limits.rateViolationsMax + 1 - violations);
  if (source.length < fewestFrames * smallestFrameBytes) return false;
  let offset = 0;
  while (offset < source.length) {
    // The length prefix: a varint (frame-codec.ts decodes it the same way, with the same bound).
    let length = 0;
    let prefixBytes = 0;
    let complete = false;
    while (prefixBytes < frameLengthVarintBytesMax && offset + prefixBytes < source.length) {
      const byte = source[offset + prefixBytes]!;
      length += (byte & 0x7f) * 2 ** (7 * prefixBytes);
      prefixBytes++;
      if ((byte & 0x80) === 0) {
        complete = true;
        break;
      }
    }
    if (!complete || length === 0) return false;
    const end = offset + prefixBytes + length;
    if (prefixBytes + length > limits.frameBytesMax || end > source.length) return false;
    const cost = frameCost(source[offset + prefixBytes]! & headerKindMask, limits);
    if (tokens >= cost) {
      tokens -= cost;
      violations = 0;
    } else if (++violations > limits.rateViolationsMax) {
      return true;
    }
    offset = end;
  }
  return false;
}
