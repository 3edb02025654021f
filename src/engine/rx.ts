// The part of RxJS vmlockd uses, each piece from its own module. `import ... from 'rxjs'` loads RxJS's
// index, which requires every operator and observable it has (~400 files): the largest single part
// of the daemon's module loading before it listens (bench/README.md, restart with 10,000 locks).
// `rxjs/internal/*` is a subpath RxJS exports in its package.json (with types); the pieces are the
// very objects `rxjs` exports (test/engine/rx.unit.ts checks that, so an RxJS upgrade that moves one
// fails there, not in production). Everything in src/ imports RxJS through this file.
export { Observable } from 'rxjs/internal/Observable';
export { Subject } from 'rxjs/internal/Subject';
export { Subscription } from 'rxjs/internal/Subscription';
export { config } from 'rxjs/internal/config';
export type { OperatorFunction } from 'rxjs/internal/types';
export { EMPTY } from 'rxjs/internal/observable/empty';
export { concat } from 'rxjs/internal/observable/concat';
export { defer } from 'rxjs/internal/observable/defer';
export { from } from 'rxjs/internal/observable/from';
export { merge } from 'rxjs/internal/observable/merge';
export { of } from 'rxjs/internal/observable/of';
export { catchError } from 'rxjs/internal/operators/catchError';
export { debounceTime } from 'rxjs/internal/operators/debounceTime';
export { filter } from 'rxjs/internal/operators/filter';
export { map } from 'rxjs/internal/operators/map';
export { mergeMap } from 'rxjs/internal/operators/mergeMap';
export { share } from 'rxjs/internal/operators/share';
