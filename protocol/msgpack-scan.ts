// A structural pre-scan of a MessagePack body: walks the tokens without building values, to refuse nesting deeper
// than the limit before the real decoder sees it. @msgpack/msgpack has no depth option; its decoder is iterative, so
// depth cannot overflow the stack, but a frame of 60,000 nested arrays would still cost 60,000 allocations.
// The scan is cheap: it skips binary contents by their length, so a payload is never touched. It reads string
// contents, to refuse ill-formed UTF-8: @msgpack/msgpack would decode it loosely, and differently by length (its own
// decoder below 200 bytes turns `c0 af` into "/", TextDecoder above turns bad bytes into U+FFFD), so a string's
// meaning would depend on the decoder. Strings are short (handles, codes, messages), so this costs little.

export type ScanResult = "ok" | "tooDeep" | "truncated" | "trailing" | "invalid" | "badUtf8";

/**
 * Whether bytes[start..end) is well-formed UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no stray or missing continuation bytes.
 */
export function isWellFormedUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  let index = start;
  while (index < end) {
    const lead = bytes[index]!;
    if (lead < 0x80) {
      index++;
      continue;
    }
    // The continuation bytes needed, and the allowed range of the first one (it excludes overlong forms,
    // surrogates and code points past U+10FFFF); later continuation bytes are 0x80..0xbf.
    let continuations: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) continuations = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      continuations = 2;
      if (lead === 0xe0) low = 0xa0;
      else if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      continuations = 3;
      if (lead === 0xf0) low = 0x90;
      else if (lead === 0xf4) high = 0x8f;
    } else return false; // 0x80..0xc1 (a continuation byte or an overlong lead), 0xf5..0xff
    if (index + continuations >= end) return false;
    const first = bytes[index + 1]!;
    if (first < low || first > high) return false;
    for (let offset = 2; offset <= continuations; offset++) {
      if ((bytes[index + offset]! & 0xc0) !== 0x80) return false;
    }
    index += continuations + 1;
  }
  return true;
}

/** Byte length of the value's fixed part after the type byte, or -1 for types handled apart. */
function scalarTail(type: number): number {
  if (type <= 0x7f || type >= 0xe0) return 0; // positive / negative fixint
  switch (type) {
    case 0xc0: // nil
    case 0xc2: // false
    case 0xc3: // true
      return 0;
    case 0xcc:
    case 0xd0:
      return 1;
    case 0xcd:
    case 0xd1:
      return 2;
    case 0xca:
    case 0xce:
    case 0xd2:
      return 4;
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return 8;
    case 0xd4:
      return 2; // fixext 1: type + 1
    case 0xd5:
      return 3;
    case 0xd6:
      return 5;
    case 0xd7:
      return 9;
    case 0xd8:
      return 17;
    default:
      return -1;
  }
}

/** Checks that `bytes[offset..end)` holds exactly one MessagePack value nested at most `depthMax` deep. */
export function scanMsgpack(bytes: Uint8Array, offset: number, end: number, depthMax: number): ScanResult {
  // remaining[d] = items still to read in the container open at depth d (depth 0 = the top level, one value).
  const remaining = new Array<number>(depthMax + 1);
  let depth = 0;
  remaining[0] = 1;
  let position = offset;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (depth >= 0) {
    if (remaining[depth] === 0) {
      depth--;
      continue;
    }
    remaining[depth]!--;
    if (position >= end) return "truncated";
    const type = bytes[position++]!;
    const tail = scalarTail(type);
    if (tail >= 0) {
      position += tail;
      continue;
    }
    let length = -1;
    let items = -1;
    let text = false;
    if (type >= 0xa0 && type <= 0xbf) {
      length = type & 0x1f;
      text = true;
    } else if (type >= 0x90 && type <= 0x9f) items = type & 0x0f;
    else if (type >= 0x80 && type <= 0x8f) items = (type & 0x0f) * 2;
    else if (type === 0xc1)
      return "invalid"; // never used; checked before its (absent) size would be read
    else {
      const sizeBytes =
        type === 0xc4 || type === 0xd9 || type === 0xc7
          ? 1
          : type === 0xc5 || type === 0xda || type === 0xc8 || type === 0xdc || type === 0xde
            ? 2
            : 4;
      if (position + sizeBytes > end) return "truncated";
      const size =
        sizeBytes === 1 ? bytes[position]! : sizeBytes === 2 ? view.getUint16(position) : view.getUint32(position);
      position += sizeBytes;
      switch (type) {
        case 0xc4:
        case 0xc5:
        case 0xc6: // bin
          length = size;
          break;
        case 0xd9:
        case 0xda:
        case 0xdb: // str
          length = size;
          text = true;
          break;
        case 0xc7:
        case 0xc8:
        case 0xc9: // ext: type byte + data
          length = size + 1;
          break;
        case 0xdc:
        case 0xdd: // array
          items = size;
          break;
        case 0xde:
        case 0xdf: // map
          items = size * 2;
          break;
        default:
          return "invalid";
      }
    }
    if (length >= 0) {
      if (text) {
        if (position + length > end) return "truncated";
        if (!isWellFormedUtf8(bytes, position, position + length)) return "badUtf8";
      }
      position += length;
      continue;
    }
    // A container: its items cannot be more than the bytes left (each item is at least one byte).
    if (items > end - position) return "truncated";
    if (depth + 1 > depthMax) return "tooDeep";
    depth++;
    remaining[depth] = items;
  }
  if (position > end) return "truncated";
  return position === end ? "ok" : "trailing";
}
