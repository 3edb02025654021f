// A flame summary of a V8 CPU profile (`node --cpu-prof`): self time per function and the inclusive
// time of the project's own functions, as percentages of the samples. Used for bench/README.md.
//
//   node --import tsx bench/prof-summary.ts FILE.cpuprofile [TOP]
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}

const file = process.argv[2];
if (!file) throw new Error('usage: prof-summary.ts FILE.cpuprofile [TOP]');
const top = Number(process.argv[3] ?? 30);
const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; startTime: number; endTime: number };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const total = prof.nodes.reduce((s, n) => s + n.hitCount, 0);
const name = (n: Node): string => {
  const u = n.callFrame.url.replace(/^file:\/\/.*?\/(src|node_modules|dist)\//, '$1/').replace(/^node:/, 'node:');
  return `${n.callFrame.functionName || '(anonymous)'} ${u ? `${u}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
};
const self = new Map<string, number>();
const incl = new Map<string, number>();
for (const n of prof.nodes) {
  if (n.hitCount === 0) continue;
  self.set(name(n), (self.get(name(n)) ?? 0) + n.hitCount);
  // Inclusive: each distinct function on the stack once.
  const seen = new Set<string>();
  for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
    const k = name(byId.get(id)!);
    if (seen.has(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + n.hitCount);
  }
}
const pct = (x: number): string => `${((100 * x) / total).toFixed(1)}%`;
const ms = (prof.endTime - prof.startTime) / 1000;
console.log(`${total} samples over ${ms.toFixed(0)} ms`);
console.log('\nself time:');
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v).padStart(6)}  ${k}`);
console.log('\ninclusive (project code):');
for (const [k, v] of [...incl].filter(([k]) => / (src|dist)\//.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v).padStart(6)}  ${k}`);

// --under NAME (a function name, a prefix of the name shown above): what the samples under it spend,
// per function called directly from it (inclusive), as a share of all samples.
const ui = process.argv.indexOf('--under');
if (ui > 0) {
  const under = process.argv[ui + 1]!;
  const callees = new Map<string, number>();
  for (const n of prof.nodes) {
    if (n.hitCount === 0) continue;
    // The outermost frame named `under` and the frame it called.
    let child: string | undefined;
    let found = false;
    let below = name(n);
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const k = name(byId.get(id)!);
      if (k.startsWith(under)) {
        found = true;
        child = id === n.id ? '(self)' : below;
      }
      below = k;
    }
    if (found) callees.set(child!, (callees.get(child!) ?? 0) + n.hitCount);
  }
  console.log(`\nunder ${under}:`);
  for (const [k, v] of [...callees].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v).padStart(6)}  ${k}`);
}
