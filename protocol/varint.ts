// Unsigned LEB128 varints for the frame length prefix: 7 bits a byte, low group first, high bit = "more follows".
// Only the canonical (shortest) form is accepted so that every frame has exactly one encoding.

/** Bytes needed to encode `value` (0 <= value < 2^28). */
export function varintLength(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  return 4;
}

/** Writes `value` at `offset`; returns the offset after it. The caller sized the buffer with varintLength. */
export function writeVarint(target: Uint8Array, offset: number, value: number): number {
  let rest = value;
  let position = offset;
  while (rest >= 0x80) {
    target[position++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  target[position++] = rest;
  return position;
}

/**
 * Reads a varint of at most `bytesMax` bytes at `offset`.
 * Returns the value and its length, "more" when the input ends inside it, or "overlong" when it runs past bytesMax
 * or is not in its shortest form.
 */
export function readVarint(
  source: Uint8Array,
  offset: number,
  bytesMax: number,
): { value: number; length: number } | "more" | "overlong" {
  let value = 0;
  for (let index = 0; index < bytesMax; index++) {
    const position = offset + index;
    if (position >= source.length) return "more";
    const byte = source[position]!;
    value += (byte & 0x7f) * 2 ** (7 * index);
    if ((byte & 0x80) === 0) {
      // A last byte of 0 after the first means a shorter encoding existed.
      if (byte === 0 && index > 0) return "overlong";
      return { value, length: index + 1 };
    }
  }
  return "overlong";
}
