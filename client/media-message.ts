// How the terminal chat (and the web page) put a file into a chat message: a payload that starts with a marker line
// and carries the file's name and its media reference as JSON. In a real app this payload is end-to-end encrypted
// like any other (the reference holds the file's key); the demo chat sends its payloads in the clear, which is why
// its usage text says so.

import type { MediaRef } from "./media.ts";

const marker = "\u0000switchboard-file\n";
const fileNameCharsMax = 200;

export interface FileMessage {
  readonly name: string;
  /** The file's MIME type when the sender knew it (the web page shows image/* inline). */
  readonly type: string | null;
  readonly ref: MediaRef;
}

export function encodeFileMessage(message: FileMessage): Uint8Array {
  return new TextEncoder().encode(marker + JSON.stringify(message));
}

/** The file message in a payload, or null for an ordinary text message (or a malformed file message). */
export function decodeFileMessage(payload: Uint8Array): FileMessage | null {
  const text = new TextDecoder().decode(payload);
  if (!text.startsWith(marker)) return null;
  try {
    const value = JSON.parse(text.slice(marker.length)) as Partial<FileMessage> & { ref?: Partial<MediaRef> };
    const ref = value.ref;
    if (
      typeof value.name !== "string" ||
      ref === undefined ||
      typeof ref.hash !== "string" ||
      !/^[0-9a-f]{64}$/.test(ref.hash) ||
      typeof ref.size !== "number" ||
      !Number.isSafeInteger(ref.size) ||
      typeof ref.key !== "string"
    ) {
      return null;
    }
    return {
      name: value.name.slice(0, fileNameCharsMax),
      type: typeof value.type === "string" ? value.type : null,
      ref: { hash: ref.hash, size: ref.size, key: ref.key },
    };
  } catch {
    return null;
  }
}

/** A file name safe to create in a download directory: no path, no control characters, not empty. */
export function safeFileName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  // Control characters (below 0x20, and 0x7f) out: a name is shown in a terminal and used as a file name.
  const printable = [...base].filter((char) => char.charCodeAt(0) >= 0x20 && char.charCodeAt(0) !== 0x7f).join("");
  const cleaned = printable.replace(/^\.+/, "").trim();
  return cleaned === "" ? "file" : cleaned.slice(0, fileNameCharsMax);
}
