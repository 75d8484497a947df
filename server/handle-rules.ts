// Which handles an account may take: the one place of the rule (PROTOCOL.md section 8, register, lists it).
// - lower-case letters, digits, dot, dash and underscore, 3..handleBytesMax bytes;
// - at least one letter or digit ("..." or "-_-" names nobody);
// - none of the reserved names below, also not spelled with punctuation in between ("ad.min", "_root_"): they
//   would let an account pass for the operator or the service.

const handlePattern = /^[a-z0-9._-]{3,}$/;
const letterOrDigit = /[a-z0-9]/;
const punctuation = /[._-]/g;

/** Reserved handles, compared after removing dots, dashes and underscores. */
export const reservedHandles: ReadonlySet<string> = new Set([
  "abuse",
  "admin",
  "administrator",
  "help",
  "hostmaster",
  "info",
  "moderator",
  "noreply",
  "official",
  "operator",
  "postmaster",
  "root",
  "security",
  "server",
  "staff",
  "support",
  "switchboard",
  "system",
  "webmaster",
]);

export type HandleProblem = "pattern" | "noLetterOrDigit" | "reserved";

/** Why `handle` may not be taken, or null when it may. */
export function handleProblem(handle: string, bytesMax: number): HandleProblem | null {
  // The pattern admits ASCII only, so the length in characters is the length in bytes.
  if (!handlePattern.test(handle) || handle.length > bytesMax) return "pattern";
  if (!letterOrDigit.test(handle)) return "noLetterOrDigit";
  if (reservedHandles.has(handle.replace(punctuation, ""))) return "reserved";
  return null;
}

export function isValidHandle(handle: string, bytesMax: number): boolean {
  return handleProblem(handle, bytesMax) === null;
}

/** The text of a handleInvalid refusal. */
export function handleProblemMessage(problem: HandleProblem, bytesMax: number): string {
  switch (problem) {
    case "pattern":
      return `handle must match [a-z0-9._-], 3..${bytesMax} bytes`;
    case "noLetterOrDigit":
      return "handle must have at least one letter or digit";
    case "reserved":
      return "handle is reserved";
  }
}
