// The exact bytes a device signs with its Ed25519 key. Each starts with a distinct ASCII context label so that a
// signature made for one purpose can never be replayed for another, and includes the server's fresh nonce so that
// a signature is good for one connection only.

const encoder = new TextEncoder();

function join(label: string, nonce: Uint8Array, tail: Uint8Array): Uint8Array {
  const labelBytes = encoder.encode(label);
  const message = new Uint8Array(labelBytes.length + nonce.length + tail.length);
  message.set(labelBytes, 0);
  message.set(nonce, labelBytes.length);
  message.set(tail, labelBytes.length + nonce.length);
  return message;
}

/** "switchboard-login-v1" || nonce (32) || account (uint32 big-endian) || device (uint32 big-endian). */
export function loginMessage(nonce: Uint8Array, account: number, device: number): Uint8Array {
  const ids = new Uint8Array(8);
  const view = new DataView(ids.buffer);
  view.setUint32(0, account);
  view.setUint32(4, device);
  return join("switchboard-login-v1", nonce, ids);
}

/** "switchboard-register-v1" || nonce (32) || handle (UTF-8). */
export function registerMessage(nonce: Uint8Array, handle: string): Uint8Array {
  return join("switchboard-register-v1", nonce, encoder.encode(handle));
}

/** "switchboard-link-v1" || nonce (32) || link code (UTF-8). */
export function linkMessage(nonce: Uint8Array, code: string): Uint8Array {
  return join("switchboard-link-v1", nonce, encoder.encode(code));
}
