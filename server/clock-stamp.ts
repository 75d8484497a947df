// Times kept in 32 bits: the low 32 bits of a millisecond clock (Date.now() or a test's). A difference of two stamps
// is exact while the times are less than 24.8 days apart, which every per-session time is (the longest deadline is
// the keepalive, minutes): 4 bytes per time per session instead of a Float64's 8 (session-slots.ts, timer-wheel.ts).

/** The stamp of a time. */
export function clockStamp(ms: number): number {
  return ms >>> 0;
}

/** The time a stamp stands for, given the clock now (exact within 24.8 days either side). */
export function stampToMs(stamp: number, nowMs: number): number {
  return nowMs + ((stamp - (nowMs >>> 0)) | 0);
}
