// The part of RxJS vmlockd uses, each piece from its own module. `import ... from 'rxjs'` loads RxJS's
// index, which requires every operator and observable it has (~400 files): the largest single part
// of the daemon's module loading before it listens (bench/README.md, restart with 10,000 locks).
// `rxjs/internal/*` is a subpath RxJS exports in its package.json (with types); the pieces are the
// very objects `rxjs` exports (test/engine/rx.unit.ts checks that, so an RxJS upgrade that moves one
// fails there, not in production). Everything in src/ imports RxJS through this file.
//
// Each piece is require()d (createRequire), not imported: an ES module importing a CommonJS one runs
// node's CommonJS export lexer over it and wraps it in a module record, which doubled what loading
// these pieces cost (+96 ms of CPU over an empty module at load 13, against +46 ms required;
// bench/README.md, "Issue 13, startup13"). These are the same CommonJS module instances `rxjs`
// itself loads (its package.json maps `node` to dist/cjs for both), so they stay the objects rxjs exports.
import { createRequire } from 'node:module';

const req = createRequire(import.meta.url);

export type { OperatorFunction } from 'rxjs/internal/types';

export const Observable: typeof import('rxjs/internal/Observable').Observable = (req('rxjs/internal/Observable') as typeof import('rxjs/internal/Observable')).Observable;
export type Observable<T> = import('rxjs/internal/Observable').Observable<T>;
export const Subject: typeof import('rxjs/internal/Subject').Subject = (req('rxjs/internal/Subject') as typeof import('rxjs/internal/Subject')).Subject;
export type Subject<T> = import('rxjs/internal/Subject').Subject<T>;
export const Subscription: typeof import('rxjs/internal/Subscription').Subscription = (req('rxjs/internal/Subscription') as typeof import('rxjs/internal/Subscription')).Subscription;
export type Subscription = import('rxjs/internal/Subscription').Subscription;
export const config: typeof import('rxjs/internal/config').config = (req('rxjs/internal/config') as typeof import('rxjs/internal/config')).config;
export const EMPTY: typeof import('rxjs/internal/observable/empty').EMPTY = (req('rxjs/internal/observable/empty') as typeof import('rxjs/internal/observable/empty')).EMPTY;
export const concat: typeof import('rxjs/internal/observable/concat').concat = (req('rxjs/internal/observable/concat') as typeof import('rxjs/internal/observable/concat')).concat;
export const defer: typeof import('rxjs/internal/observable/defer').defer = (req('rxjs/internal/observable/defer') as typeof import('rxjs/internal/observable/defer')).defer;
export const from: typeof import('rxjs/internal/observable/from').from = (req('rxjs/internal/observable/from') as typeof import('rxjs/internal/observable/from')).from;
export const merge: typeof import('rxjs/internal/observable/merge').merge = (req('rxjs/internal/observable/merge') as typeof import('rxjs/internal/observable/merge')).merge;
export const of: typeof import('rxjs/internal/observable/of').of = (req('rxjs/internal/observable/of') as typeof import('rxjs/internal/observable/of')).of;
export const catchError: typeof import('rxjs/internal/operators/catchError').catchError = (req('rxjs/internal/operators/catchError') as typeof import('rxjs/internal/operators/catchError')).catchError;
export const debounceTime: typeof import('rxjs/internal/operators/debounceTime').debounceTime = (req('rxjs/internal/operators/debounceTime') as typeof import('rxjs/internal/operators/debounceTime')).debounceTime;
export const filter: typeof import('rxjs/internal/operators/filter').filter = (req('rxjs/internal/operators/filter') as typeof import('rxjs/internal/operators/filter')).filter;
export const map: typeof import('rxjs/internal/operators/map').map = (req('rxjs/internal/operators/map') as typeof import('rxjs/internal/operators/map')).map;
export const mergeMap: typeof import('rxjs/internal/operators/mergeMap').mergeMap = (req('rxjs/internal/operators/mergeMap') as typeof import('rxjs/internal/operators/mergeMap')).mergeMap;
export const share: typeof import('rxjs/internal/operators/share').share = (req('rxjs/internal/operators/share') as typeof import('rxjs/internal/operators/share')).share;
