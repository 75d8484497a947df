// The exact bytes a device signs with its Ed25519 key. Each starts with a distinct ASCII context label so that a
// signature made for one purpose can never be replayed for another, includes the server's fresh nonce so that a
// signature is good for one connection only, and names the server the device dialed so that a relay cannot pass the
// signature on to another server: the server accepts only its own names (a relay at evil.example gets a signature
// for "evil.example", which the real server refuses with wrongServer).
//
// Layout, the same for the three: label || nonce (32) || server name length (1 byte) || server name (UTF-8; ASCII in practice) || tail.
// The length byte keeps the name apart from the variable tails of register and link.
//
// On an encrypted (Noise) connection the labels end in -v3 and the 32-byte Noise handshake hash follows the server
// name: label || nonce || name length || name || handshake hash (32) || tail. The hash is unique to this connection
// and covers the server's static key, so a signature is good on this connection to this server only: a relay that
// terminates Noise itself has another handshake hash than the server it forwards to (PROTOCOL.md section 19).

const encoder = new TextEncoder();

/** The longest server name, in bytes: a DNS name's limit (and less than the length byte's 255). */
export const serverNameBytesMax = 253;

/**
 * A host name as it is signed, compared and configured: ASCII lower case, without a trailing dot, an IPv6 address
 * without its brackets ("[::1]" -> "::1"). Ports are not part of it. An internationalised name takes its punycode
 * form (browsers' URL.hostname already gives it).
 */
export function canonicalServerName(host: string): string {
  let name = host.trim().toLowerCase();
  if (name.startsWith("[") && name.endsWith("]")) name = name.slice(1, -1);
  if (name.endsWith(".")) name = name.slice(0, -1);
  return name;
}

/** Bytes of the channel binding (a SHA-256 handshake hash, or a TLS exporter value). */
export const channelBindingBytes = 32;

/**
 * The channel binding of a TLS connection (PROTOCOL.md section 19): RFC 9266 "tls-exporter", the keying material
 * exported with the label "EXPORTER-Channel-Binding" and an empty context, 32 bytes. Both ends of one TLS connection
 * compute the same value and no one else can, so a login that signs it cannot be relayed to another connection.
 */
export const tlsExporterLabel = "EXPORTER-Channel-Binding";

/** A TLS socket that can export keying material (Bun's Socket does; a plain one returns nothing). */
export interface KeyingMaterialExporter {
  exportKeyingMaterial(length: number, label: string, context: Uint8Array): Uint8Array | undefined;
}

/** The tls-exporter binding of `socket`'s connection; null before its handshake completed, or without TLS. */
export function tlsChannelBinding(socket: KeyingMaterialExporter): Uint8Array | null {
  let exported: Uint8Array | undefined;
  try {
    exported = socket.exportKeyingMaterial(channelBindingBytes, tlsExporterLabel, new Uint8Array(0));
  } catch {
    return null;
  }
  return exported instanceof Uint8Array && exported.length === channelBindingBytes ? new Uint8Array(exported) : null;
}

function join(
  label: string,
  nonce: Uint8Array,
  serverName: string,
  tail: Uint8Array,
  channelBinding: Uint8Array | null,
): Uint8Array {
  if (channelBinding !== null) {
    if (channelBinding.length !== channelBindingBytes) throw new RangeError("a channel binding is 32 bytes");
    label = label.replace(/-v2$/, "-v3");
    const bound = new Uint8Array(channelBinding.length + tail.length);
    bound.set(channelBinding, 0);
    bound.set(tail, channelBinding.length);
    tail = bound;
  }
  const labelBytes = encoder.encode(label);
  const nameBytes = encoder.encode(serverName);
  if (nameBytes.length === 0 || nameBytes.length > serverNameBytesMax) {
    throw new RangeError(`server name must be 1..${serverNameBytesMax} bytes, got ${nameBytes.length}`);
  }
  const message = new Uint8Array(labelBytes.length + nonce.length + 1 + nameBytes.length + tail.length);
  let offset = 0;
  for (const part of [labelBytes, nonce, Uint8Array.of(nameBytes.length), nameBytes, tail]) {
    message.set(part, offset);
    offset += part.length;
  }
  return message;
}

/**
 * "switchboard-login-v2" || nonce (32) || name length (1) || server name || account (uint32 big-endian) || device
 * (uint32 big-endian). With a channel binding: "switchboard-login-v3", the binding after the name.
 */
export function loginMessage(
  nonce: Uint8Array,
  serverName: string,
  account: number,
  device: number,
  channelBinding: Uint8Array | null = null,
): Uint8Array {
  const ids = new Uint8Array(8);
  const view = new DataView(ids.buffer);
  view.setUint32(0, account);
  view.setUint32(4, device);
  return join("switchboard-login-v2", nonce, serverName, ids, channelBinding);
}

/** "switchboard-register-v2" || nonce (32) || name length (1) || server name || handle (UTF-8). */
export function registerMessage(
  nonce: Uint8Array,
  serverName: string,
  handle: string,
  channelBinding: Uint8Array | null = null,
): Uint8Array {
  return join("switchboard-register-v2", nonce, serverName, encoder.encode(handle), channelBinding);
}

/** "switchboard-link-v2" || nonce (32) || name length (1) || server name || link code (UTF-8). */
export function linkMessage(
  nonce: Uint8Array,
  serverName: string,
  code: string,
  channelBinding: Uint8Array | null = null,
): Uint8Array {
  return join("switchboard-link-v2", nonce, serverName, encoder.encode(code), channelBinding);
}
