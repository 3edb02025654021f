// A bound on how many JSON values a request body holds, checked on its bytes before JSON.parse
// (review25b F1). JSON.parse of an object with millions of keys (24 MiB, under the hook route's
// 80 MiB limit) held the event loop for tens of seconds; a body that is a few fields and one long
// string (the qemu hook's arguments and domain XML) parses in milliseconds. This scan is one pass
// over the bytes with no allocation: it counts the structural characters outside strings (',' ':'
// '[' '{'), which bounds the number of values JSON.parse would build. UTF-8 continuation and lead
// bytes are all >= 0x80, so they never match an ASCII structural character.

/**
 * The number of structural characters outside strings, stopping once it passes `max` (the answer is
 * then max + 1). Malformed JSON is counted as it comes; JSON.parse reports what is wrong with it.
 */
export function countJsonValues(bytes: Uint8Array, max: number): number {
  let n = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (escaped) escaped = false;
      else if (b === 0x5c) escaped = true;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x2c || b === 0x3a || b === 0x5b || b === 0x7b) {
      if (++n > max) return n;
    }
  }
  return n;
}
