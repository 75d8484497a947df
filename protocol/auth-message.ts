// The exact bytes a device signs with its Ed25519 key. Each starts with a distinct ASCII context label so that a
// signature made for one purpose can never be replayed for another, includes the server's fresh nonce so that a
// signature is good for one connection only, and names the server the device dialed so that a relay cannot pass the
// signature on to another server: the server accepts only its own names (a relay at evil.example gets a signature
// for "evil.example", which the real server refuses with wrongServer).
//
// Layout, the same for the three: label || nonce (32) || server name length (1 byte) || server name (UTF-8; ASCII in practice) || tail.
// The length byte keeps the name apart from the variable tails of register and link.

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

function join(label: string, nonce: Uint8Array, serverName: string, tail: Uint8Array): Uint8Array {
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
 * (uint32 big-endian).
 */
export function loginMessage(nonce: Uint8Array, serverName: string, account: number, device: number): Uint8Array {
  const ids = new Uint8Array(8);
  const view = new DataView(ids.buffer);
  view.setUint32(0, account);
  view.setUint32(4, device);
  return join("switchboard-login-v2", nonce, serverName, ids);
}

/** "switchboard-register-v2" || nonce (32) || name length (1) || server name || handle (UTF-8). */
export function registerMessage(nonce: Uint8Array, serverName: string, handle: string): Uint8Array {
  return join("switchboard-register-v2", nonce, serverName, encoder.encode(handle));
}

/** "switchboard-link-v2" || nonce (32) || name length (1) || server name || link code (UTF-8). */
export function linkMessage(nonce: Uint8Array, serverName: string, code: string): Uint8Array {
  return join("switchboard-link-v2", nonce, serverName, encoder.encode(code));
}
