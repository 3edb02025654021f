// The value of an XML attribute or text node as libvirt holds it: byte-exact, references decoded.
//
// libvirt parses with libxml2 and formats with virBufferEscapeString, which escapes only < > & ' "
// and writes every other character, tab, newline and carriage return included, as it is. So the
// characters between the quotes of `<source file='...'/>` in the XML libvirt hands the hook (or
// `virsh dumpxml` prints) are exactly the path QEMU opens: a trailing space, a tab or a newline
// is part of the file's name (measured with virsh -c test:///default: `file='/x/a.img '` defines
// and dumps as '/x/a.img ', `&#10;` dumps as a literal newline). Trimming or normalising here
// would lock another file than the one the VM uses (review25a F8). The parser is therefore run
// with trimValues and processEntities off, and this is the only decoding applied.
import { BadInputError } from '../engine/errors.js';

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Whether a code point is an XML 1.0 Char (what a character reference may name). */
function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/**
 * Decode the five predefined entities and character references of a raw attribute or text value.
 * Any other `&` (an undefined entity, a bare ampersand, a reference to a non-character) is bad input:
 * libxml2 refuses such a document, so libvirt never writes one. `where` names the value in the error.
 */
export function xmlUnescape(raw: string, where: string): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&([^;&]{0,12});?/g, (whole, body: string) => {
    if (whole.endsWith(';')) {
      const named = PREDEFINED[body];
      if (named !== undefined) return named;
      const num = /^#x([0-9a-fA-F]{1,6})$/.exec(body) ?? /^#([0-9]{1,7})$/.exec(body);
      if (num) {
        const cp = parseInt(num[1]!, body[1] === 'x' ? 16 : 10);
        if (isXmlChar(cp)) return String.fromCodePoint(cp);
      }
    }
    throw new BadInputError(`domain XML: ${where} holds ${JSON.stringify(whole)}, not an XML reference libvirt writes (&lt; &gt; &amp; &quot; &apos; or &#N;)`);
  });
}
