// fast-xml-parser through its CommonJS bundle (lib/fxp.cjs, one file), not its ES modules: the package's
// `import` entry is ~40 ES modules (its src/, @nodable/entities, is-unsafe, path-expression-matcher,
// ...), which every daemon start loaded before listening (~50 ms of CPU at load 9; the bundle ~0;
// bench/README.md, "Issue 13, startup13"). The same version and the same classes.
import { createRequire } from 'node:module';

const fxp = createRequire(import.meta.url)('fast-xml-parser') as typeof import('fast-xml-parser');

export const XMLParser = fxp.XMLParser;
export const XMLValidator = fxp.XMLValidator;
