// The thread that parses large domain XML documents (src/events/domain-xml-offload.ts): the same
// parseDomainXml, run where its seconds of CPU on a document of megabytes cannot stop the daemon's
// event loop. Answers each request with the DomainInfo or with the refusal's message.
import { parentPort } from 'node:worker_threads';
import { BadInputError } from '../engine/errors.js';
import { parseDomainXml, type DomainInfo } from './domain-xml.js';

export type ToParser = { id: number; xml: string };
export type FromParser = { id: number; info: DomainInfo } | { id: number; bad: boolean; message: string };

parentPort!.on('message', ({ id, xml }: ToParser) => {
  let answer: FromParser;
  try {
    answer = { id, info: parseDomainXml(xml) };
  } catch (e) {
    answer = { id, bad: e instanceof BadInputError, message: (e as Error)?.message ?? String(e) };
  }
  parentPort!.postMessage(answer);
});
