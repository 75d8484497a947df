// The yield that bounds work per event-loop turn: a promise that resolves in a later turn (after pending I/O), not in
// this turn's microtasks. A store that answers at once (SQLite) resolves its promises in the same turn, so an
// `await` alone never lets another session's frames in.

/** Resolves in a later event-loop turn (setImmediate: after the I/O callbacks that are ready). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
