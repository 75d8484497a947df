// Handles of accounts by id, for showing `bob` instead of `#2`: a bounded cache in front of the server's reverse
// lookup (PROTOCOL.md section 8, reverseLookup). The server names only the asking device's own account and the
// senders of messages delivered to it; every other id is answered null. Handles never change while an account exists,
// so a known one is kept (least recently used dropped past the bound); a null is not kept, since a message from that
// account may arrive later and make it known. Ids asked while an earlier question about them is unanswered join that
// question instead of asking again (a backlog of a hundred messages from one sender asks once).

/** Handles kept by the SDK's cache (least recently used dropped). */
export const handleCacheEntriesMax = 4096;

/** Asks the server about `accounts` (at most batchMax of them): one handle or null each, in their order. */
export type AskHandles = (accounts: readonly number[]) => Promise<ReadonlyArray<string | null>>;

export class HandleCache {
  /** Insertion order is recency: a hit moves the entry to the end. */
  private readonly known = new Map<number, string>();
  private readonly asking = new Map<number, Promise<string | null>>();

  constructor(
    private readonly ask: AskHandles,
    private readonly batchMax: number,
    private readonly entriesMax: number = handleCacheEntriesMax,
  ) {
    if (!(batchMax >= 1 && entriesMax >= 1)) throw new RangeError("HandleCache: batchMax and entriesMax must be >= 1");
  }

  get size(): number {
    return this.known.size;
  }

  /** The cached handle, without asking (undefined when not known). */
  peek(account: number): string | undefined {
    const handle = this.known.get(account);
    if (handle !== undefined) this.remember(account, handle);
    return handle;
  }

  /** Keeps a handle learned another way (a lookup by handle answers with the account). */
  remember(account: number, handle: string): void {
    this.known.delete(account);
    this.known.set(account, handle);
    if (this.known.size > this.entriesMax) this.known.delete(this.known.keys().next().value!);
  }

  /** Handles of `accounts`: cached ones at once, the others asked in batches of batchMax. Rejects if a batch fails. */
  async resolve(accounts: readonly number[]): Promise<Map<number, string | null>> {
    const waits = new Map<number, Promise<string | null> | string>();
    const fresh: number[] = [];
    for (const account of accounts) {
      if (waits.has(account)) continue;
      const cached = this.peek(account);
      const asking = this.asking.get(account);
      if (cached !== undefined) waits.set(account, cached);
      else if (asking !== undefined) waits.set(account, asking);
      else {
        fresh.push(account);
        waits.set(account, Promise.resolve(null)); // replaced below
      }
    }
    for (let start = 0; start < fresh.length; start += this.batchMax) {
      const batch = fresh.slice(start, start + this.batchMax);
      const answer = this.ask(batch);
      batch.forEach((account, index) => {
        const one = answer.then((handles) => {
          const handle = handles[index] ?? null;
          if (handle !== null) this.remember(account, handle);
          return handle;
        });
        const settled = () => {
          if (this.asking.get(account) === one) this.asking.delete(account);
        };
        one.then(settled, settled);
        this.asking.set(account, one);
        waits.set(account, one);
      });
    }
    const result = new Map<number, string | null>();
    for (const [account, wait] of waits) result.set(account, await wait);
    return result;
  }
}
