// Errors a store throws on a request that cannot be served. Broken internal state is not among them: that is a bug,
// and fails an assertion instead.

export class AccountNotFoundError extends Error {
  override readonly name = "AccountNotFoundError";
  readonly account: number;

  constructor(account: number) {
    super(`account ${account} does not exist`);
    this.account = account;
  }
}
