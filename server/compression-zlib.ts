// The server's Compressor on node:zlib (native zlib inside Bun): the same wire format as protocol's fflate one (raw
// DEFLATE with the preset dictionary), so either side can inflate what the other deflates. It lives in server/
// because protocol/ must run in browsers, where node:zlib does not exist.
//
// The inflate cap is zlib's own `maxOutputLength`: Bun honours it (checked in compression-zlib.test.ts), stopping
// with a RangeError (ERR_BUFFER_TOO_LARGE) once the output would pass the cap, without inflating the rest. So a
// deflate bomb costs at most the cap, as with the fflate compressor.

import { deflateRawSync, inflateRawSync } from "node:zlib";
import { type Compressor, ErrorCode, ProtocolError, presetDictionary } from "../protocol/index.ts";

/** DEFLATE level: 6 is zlib's default trade-off, the same as the fflate compressor's. */
const deflateLevel = 6;

/** A plain Uint8Array view of a Buffer: payload views decoded from it then behave the same as fflate's. */
function asBytes(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function isOutputTooLarge(caught: unknown): boolean {
  return (
    caught instanceof RangeError ||
    (typeof caught === "object" && caught !== null && (caught as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE")
  );
}

export const zlibCompressor: Compressor = Object.freeze({
  name: "node:zlib",
  deflate(body: Uint8Array): Uint8Array {
    return asBytes(deflateRawSync(body, { level: deflateLevel, dictionary: presetDictionary }));
  },
  inflate(body: Uint8Array, bytesMax: number): Uint8Array | ProtocolError {
    if (body.length === 0) return new ProtocolError(ErrorCode.badCompression, "empty compressed body");
    try {
      return asBytes(inflateRawSync(body, { dictionary: presetDictionary, maxOutputLength: bytesMax }));
    } catch (caught) {
      if (isOutputTooLarge(caught)) {
        return new ProtocolError(ErrorCode.inflateTooLarge, `compressed body inflates past ${bytesMax} bytes`, {
          cause: caught,
        });
      }
      return new ProtocolError(ErrorCode.badCompression, "compressed body does not inflate", { cause: caught });
    }
  },
});
