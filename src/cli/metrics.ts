// Prometheus metrics on `metrics_address` (host:port): GET /metrics, text format 0.0.4.
import * as http from 'node:http';
import { VmlockdError } from '../engine/errors.js';

export interface MetricsSource {
  gauges(): Record<string, { help: string; value: number }>;
  /** Facts journaled since start, by kind. */
  factCounts(): ReadonlyMap<string, number>;
}

export function renderMetrics(src: MetricsSource): string {
  const lines: string[] = [];
  for (const [name, g] of Object.entries(src.gauges())) {
    lines.push(`# HELP vmlockd_${name} ${g.help}`, `# TYPE vmlockd_${name} gauge`, `vmlockd_${name} ${g.value}`);
  }
  lines.push('# HELP vmlockd_facts_total Facts journaled since this daemon started, by kind.', '# TYPE vmlockd_facts_total counter');
  for (const [kind, n] of [...src.factCounts()].sort()) lines.push(`vmlockd_facts_total{kind="${kind}"} ${n}`);
  return lines.join('\n') + '\n';
}

/** inherited: a listening descriptor for `address` handed over by `serve --takeover`, served instead of binding. */
export async function startMetrics(address: string, src: MetricsSource, inherited?: number): Promise<http.Server> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404).end('not found: try GET /metrics\n');
      return;
    }
    const body = renderMetrics(src);
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new VmlockdError('VMLOCKD_ERR_IO', `cannot serve metrics on ${address}: ${e.message}`, { cause: e })));
    if (inherited !== undefined) server.listen({ fd: inherited }, () => resolve());
    else server.listen(port, host, () => resolve());
  });
  return server;
}
