// Well-formed Unicode text: a string without a lone UTF-16 surrogate, the only strings that have a
// UTF-8 form (String.prototype.isWellFormed / toWellFormed, Node 20; the project's TypeScript lib
// predates them).
type WellFormedString = string & { isWellFormed(): boolean; toWellFormed(): string };

/** False for a string holding a lone UTF-16 surrogate. */
export function isWellFormed(s: string): boolean {
  return (s as WellFormedString).isWellFormed();
}

/** The string with each lone UTF-16 surrogate replaced by U+FFFD. */
export function toWellFormed(s: string): string {
  return (s as WellFormedString).toWellFormed();
}
