import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DISPATCH_FN,
  FrameReader,
  KEEPALIVE_PROGRAM,
  LOCK_PROGRAM,
  LOCK_STRING_MAX,
  MAX_BODY_BYTES,
  MSG_TYPE,
  PROC,
  checkFlags,
  decodeCall,
  decodeHeader,
  decodeReply,
  defaultLockspaceExists,
  encodeCall,
  encodeErrorReply,
  encodeFrame,
  encodeKeepalive,
  encodeOkReply,
  lockspaceExists,
  lockspaceMissing,
  noProgram,
  notADirectory,
  notLocked,
  notRegistered,
  openFailed,
  ownerNotHolding,
  resourceBusy,
  restricted,
  strerror,
  unexpectedStatus,
  unknownProc,
  unsupportedFlags,
  uuidString,
  type DecodedCall,
  type Frame,
  type Header,
  type LockCall,
  type RpcErrorSpec,
} from '../../src/events/virtlockd/codec.js';
import { XdrDecodeError, XdrReader, XdrWriter } from '../../src/events/virtlockd/xdr.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

// ── the vectors of VIRTLOCKD_PROTOCOL.md §6, captured from real virtlockd 9.0.0 ────────────────

const FILES = '/var/lib/libvirt/lockd/files';
const LEASE = '0590089b1c3be5b105c84e8a36464becebe44b1764e00a3c1ee9ffaeb1b1c487';

const V = {
  regA: '000000400ea7beef000000010000000100000000000000000000000000112233445566778899aabbccddeeff00000004766d2d61000000010000109200000000',
  regOk: '0000001c0ea7beef0000000100000001000000010000000000000000',
  createLs: '0000003c0ea7beef00000001000000080000000000000000000000000000001c2f7661722f6c69622f6c6962766972742f6c6f636b642f66696c6573',
  createLsOk: '0000001c0ea7beef0000000100000008000000010000000000000000',
  acquire1:
    '000000840ea7beef00000001000000060000000000000001000000000000001c2f7661722f6c69622f6c6962766972742f6c6f636b642f66696c6573000000403035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383700000002',
  acquire1Ok: '0000001c0ea7beef0000000100000006000000010000000100000000',
  regB: '000000400ea7beef0000000100000001000000000000000000000000ffeeddccbbaa9988776655443322110000000004766d2d6200000002000010f700000000',
  busyReply:
    '000001380ea7beef00000001000000060000000100000001000000010000005700000033000000010000006e7265736f7572636520627573793a204c6f636b7370616365207265736f7572636520273035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383727206973206c6f636b65640000000000020000000000000001000000117265736f7572636520627573793a202573000000000000010000005f4c6f636b7370616365207265736f7572636520273035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383727206973206c6f636b65640000000000ffffffffffffffff00000000',
  release2:
    '000000840ea7beef00000001000000070000000000000002000000000000001c2f7661722f6c69622f6c6962766972742f6c6f636b642f66696c6573000000403035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383700000000',
  release2Ok: '0000001c0ea7beef0000000100000007000000010000000200000000',
  regC: '000000400ea7beef00000001000000010000000000000000000000000123456789abcdef0123456789abcdef00000004766d2d63000000030000115c00000000',
  restrict1: '000000200ea7beef000000010000000200000000000000010000000000000000',
  restrict1Ok: '0000001c0ea7beef0000000100000002000000010000000100000000',
  acquire2:
    '000000840ea7beef00000001000000060000000000000002000000000000001c2f7661722f6c69622f6c6962766972742f6c6f636b642f66696c6573000000403035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383700000002',
  restrictedReply:
    '000000d80ea7beef00000001000000060000000100000002000000010000001d0000000700000001000000406f7065726174696f6e20666f7262696464656e3a206c6f636b206d616e6167657220636f6e6e656374696f6e20686173206265656e2072657374726963746564000000020000000000000001000000176f7065726174696f6e20666f7262696464656e3a20257300000000010000002b6c6f636b206d616e6167657220636f6e6e656374696f6e20686173206265656e20726573747269637465640000000000ffffffffffffffff00000000',
  unknown9: '000000200ea7beef000000010000000900000000000000050000000000000000',
  unknown9Reply:
    '000000800ea7beef000000010000000900000001000000050000000100000027000000070000000100000014756e6b6e6f776e2070726f6365647572653a203900000002000000000000000100000002257300000000000100000014756e6b6e6f776e2070726f6365647572653a203900000000ffffffffffffffff00000000',
  truncRestrict: '0000001c0ea7beef0000000100000002000000000000000a00000000',
  truncRestrictReply:
    '000000980ea7beef0000000100000002000000010000000a0000000100000027000000070000000100000020556e61626c6520746f206465636f6465206d657373616765207061796c6f616400000002000000000000000100000002257300000000000100000020556e61626c6520746f206465636f6465206d657373616765207061796c6f616400000000ffffffffffffffff00000000',
  ping: '0000001c6b6565700000000100000001000000020000000000000000',
  pong: '0000001c6b6565700000000100000002000000020000000000000000',
  pluginReg: '000000440ea7beef0000000100000001000000000000000000000000c7a5fdbdcdaf9455926ad65c16db1809000000066c6f636b766d0000000000010000356500000000',
  pluginAcquire:
    '000000880ea7beef00000001000000060000000000000002000000000000001e2f7661722f6c69622f6c6962766972742f6c6f636b642f766d66696c65730000000000403062393136666537613534666662326164323166363762663034313465376633313434306465323334333830366661333431613638353264313136316430363100000003',
} as const;

const owner = (uuid: string, name: string, id: number, pid: number) => ({ uuid: hex(uuid), name, id, pid });

/** Each call vector, the typed call it must decode to, and the reply virtlockd sent for it. */
const CALLS: ReadonlyArray<{
  readonly label: string;
  readonly call: string;
  readonly serial: number;
  readonly expect: LockCall;
  readonly reply: string;
  readonly answer: (h: Header) => Buffer;
}> = [
  {
    label: '(a) REGISTER A',
    call: V.regA,
    serial: 0,
    expect: { proc: PROC.REGISTER, owner: owner('00112233445566778899aabbccddeeff', 'vm-a', 1, 4242), flags: 0 },
    reply: V.regOk,
    answer: encodeOkReply,
  },
  {
    label: '(b) CREATE_LOCKSPACE',
    call: V.createLs,
    serial: 0,
    expect: { proc: PROC.CREATE_LOCKSPACE, path: FILES },
    reply: V.createLsOk,
    answer: encodeOkReply,
  },
  {
    label: '(c) ACQUIRE AUTOCREATE',
    call: V.acquire1,
    serial: 1,
    expect: { proc: PROC.ACQUIRE_RESOURCE, path: FILES, name: LEASE, flags: 2 },
    reply: V.acquire1Ok,
    answer: encodeOkReply,
  },
  {
    label: '(d) REGISTER B',
    call: V.regB,
    serial: 0,
    expect: { proc: PROC.REGISTER, owner: owner('ffeeddccbbaa99887766554433221100', 'vm-b', 2, 4343), flags: 0 },
    reply: V.regOk,
    answer: encodeOkReply,
  },
  {
    label: '(d) ACQUIRE by B, busy',
    call: V.acquire1,
    serial: 1,
    expect: { proc: PROC.ACQUIRE_RESOURCE, path: FILES, name: LEASE, flags: 2 },
    reply: V.busyReply,
    answer: (h) => encodeErrorReply(h, resourceBusy(LEASE)),
  },
  {
    label: '(e) RELEASE',
    call: V.release2,
    serial: 2,
    expect: { proc: PROC.RELEASE_RESOURCE, path: FILES, name: LEASE, flags: 0 },
    reply: V.release2Ok,
    answer: encodeOkReply,
  },
  {
    label: '(f) REGISTER C',
    call: V.regC,
    serial: 0,
    expect: { proc: PROC.REGISTER, owner: owner('0123456789abcdef0123456789abcdef', 'vm-c', 3, 4444), flags: 0 },
    reply: V.regOk,
    answer: encodeOkReply,
  },
  {
    label: '(f) RESTRICT',
    call: V.restrict1,
    serial: 1,
    expect: { proc: PROC.RESTRICT, flags: 0 },
    reply: V.restrict1Ok,
    answer: encodeOkReply,
  },
  {
    label: '(f) ACQUIRE on a restricted connection',
    call: V.acquire2,
    serial: 2,
    expect: { proc: PROC.ACQUIRE_RESOURCE, path: FILES, name: LEASE, flags: 2 },
    reply: V.restrictedReply,
    answer: (h) => encodeErrorReply(h, restricted()),
  },
];

function expectCall(d: DecodedCall): { header: Header; call: LockCall } {
  if (d.kind !== 'call') assert.unreachable(`expected a call, got ${d.kind}: ${JSON.stringify(d)}`);
  return d as { header: Header; call: LockCall };
}

function expectError(d: DecodedCall): { header: Header; error: RpcErrorSpec } {
  if (d.kind !== 'error') assert.unreachable(`expected an error, got ${d.kind}`);
  return d as { header: Header; error: RpcErrorSpec };
}

for (const v of CALLS) {
  test(`given vector ${v.label}, when decoded, then it is the typed call and the documented reply encodes byte for byte`, () => {
    const { header, call } = expectCall(decodeCall(hex(v.call)));
    assert.equal(header, { prog: LOCK_PROGRAM, vers: 1, proc: v.expect.proc, type: MSG_TYPE.CALL, serial: v.serial, status: 0 });
    assert.equal(call, v.expect);
    assert.is(v.answer(header).toString('hex'), v.reply);
  });

  test(`given the typed call of ${v.label}, when encoded with encodeCall, then the bytes equal the captured call`, () => {
    const { proc, ...args } = v.expect as LockCall & Record<string, unknown>;
    assert.is(encodeCall(proc, v.serial, args as never).toString('hex'), v.call);
  });
}

test('given the plugin REGISTER from a real VM start, when decoded, then owner is lockvm with QEMU pid 13669', () => {
  const { call } = expectCall(decodeCall(hex(V.pluginReg)));
  assert.equal(call, { proc: PROC.REGISTER, owner: owner('c7a5fdbdcdaf9455926ad65c16db1809', 'lockvm', 1, 13669), flags: 0 });
  if (call.proc !== PROC.REGISTER) throw new Error('unreachable');
  assert.is(uuidString(call.owner.uuid), 'c7a5fdbd-cdaf-9455-926a-d65c16db1809');
  assert.is(
    encodeCall(PROC.REGISTER, 0, { owner: { uuid: 'c7a5fdbd-cdaf-9455-926a-d65c16db1809', name: 'lockvm', id: 1, pid: 13669 } }).toString('hex'),
    V.pluginReg,
  );
});

test('given the plugin shared-disk ACQUIRE, when decoded, then flags are SHARED|AUTOCREATE and serial 2', () => {
  const { header, call } = expectCall(decodeCall(hex(V.pluginAcquire)));
  assert.is(header.serial, 2);
  assert.equal(call, {
    proc: PROC.ACQUIRE_RESOURCE,
    path: '/var/lib/libvirt/lockd/vmfiles',
    name: '0b916fe7a54ffb2ad21f67bf0414e7f31440de2343806fa341a6852d1161d061',
    flags: 3,
  });
  assert.is(encodeOkReply(header).toString('hex'), '0000001c0ea7beef0000000100000006000000010000000200000000');
});

test('given vector (g) unknown procedure 9, when decoded, then the error reply is byte-exact', () => {
  const d = expectError(decodeCall(hex(V.unknown9)));
  assert.equal(d.error, unknownProc(9));
  assert.is(encodeErrorReply(d.header, d.error).toString('hex'), V.unknown9Reply);
});

test('given vector (g) header-only RESTRICT, when decoded, then "Unable to decode message payload" is byte-exact', () => {
  const d = decodeCall(hex(V.truncRestrict));
  const e = expectError(d);
  assert.ok(d.kind === 'error' && d.cause instanceof XdrDecodeError, 'the XDR cause travels with the error');
  assert.is(encodeErrorReply(e.header, e.error).toString('hex'), V.truncRestrictReply);
});

test('given vector (g) keepalive PING, when decoded, then the answer is the captured PONG', () => {
  const d = decodeCall(hex(V.ping));
  assert.is(d.kind, 'reply');
  if (d.kind !== 'reply') return;
  assert.is(d.reply.toString('hex'), V.pong);
  assert.is(encodeKeepalive(1).toString('hex'), V.ping);
});

test('given the captured error replies, when decoded as a client, then every field is as virtlockd sent it', () => {
  const busy = decodeReply(hex(V.busyReply));
  assert.is(busy.kind, 'error');
  if (busy.kind !== 'error') return;
  assert.equal(busy.error, {
    code: 87,
    domain: 51,
    message: `resource busy: Lockspace resource '${LEASE}' is locked`,
    level: 2,
    dom: null,
    str1: 'resource busy: %s',
    str2: `Lockspace resource '${LEASE}' is locked`,
    str3: null,
    int1: -1,
    int2: -1,
    net: null,
  });
  assert.is(busy.header.serial, 1);
  const r = decodeReply(hex(V.restrictedReply));
  assert.ok(r.kind === 'error' && r.error.code === 29 && r.error.domain === 7);
  assert.is(r.kind === 'error' && r.error.message, 'operation forbidden: lock manager connection has been restricted');
  assert.is(decodeReply(hex(V.regOk)).kind, 'ok');
});

// ── error texts beyond the vectors (§4, §5) ───────────────────────────────────────────────────

test('given each error helper, then code, domain and message are virtlockd\'s', () => {
  const cases: Array<[RpcErrorSpec, number, number, string]> = [
    [notLocked('x'), 87, 51, "resource busy: Lockspace resource 'x' is not locked"],
    [notRegistered(), 55, 7, 'Requested operation is not valid: lock owner details have not been registered'],
    [defaultLockspaceExists(), 55, 7, 'Requested operation is not valid: the default lockspace already exists'],
    [lockspaceMissing('/l'), 1, 7, 'internal error: Lockspace for path /l does not exist'],
    [lockspaceExists('/l'), 1, 7, 'internal error: Lockspace for path /l already exists'],
    [ownerNotHolding(4343), 1, 51, 'internal error: owner 4343 does not hold the resource lock'],
    [notADirectory('/f'), 1, 51, 'internal error: Lockspace location /f exists, but is not a directory'],
    [openFailed('/l/r', 2), 38, 51, 'Unable to open resource /l/r: No such file or directory'],
    [openFailed('/l/r', -13, undefined, { autocreate: true }), 38, 51, 'Unable to open/create resource /l/r: Permission denied'],
    [noProgram(LOCK_PROGRAM + 1, 1), 39, 7, 'Cannot find program 245874416 version 1'],
    [noProgram(0xffffffff, 2), 39, 7, 'Cannot find program -1 version 2'],
    [unexpectedStatus(1), 39, 7, 'Unexpected message status 1'],
    [unexpectedStatus(-1), 39, 7, 'Unexpected message status 4294967295'],
  ];
  for (const [spec, code, domain, message] of cases) {
    assert.is(spec.code, code, message);
    assert.is(spec.domain, domain, message);
    assert.is(spec.message, message);
  }
  const sys = openFailed('/l/r', 2);
  assert.equal([sys.str1, sys.str2, sys.int1, sys.int2], ['%s', 'Unable to open resource /l/r: No such file or directory', 2, -1]);
  const own = ownerNotHolding(1);
  assert.equal([own.str1, own.str2], ['internal error: %s', 'owner 1 does not hold the resource lock']);
  assert.is(strerror(99999), 'Unknown error 99999');
});

test('given ACQUIRE flags 4, when checked, then INVALID_ARG names the dispatch function with str2 "flags" and ints 0', () => {
  const e = checkFlags(PROC.ACQUIRE_RESOURCE, 4 | 2);
  assert.equal(e, {
    code: 8,
    domain: 7,
    message: 'unsupported flags (0x4) in function virLockSpaceProtocolDispatchAcquireResource',
    str1: 'virLockSpaceProtocolDispatchAcquireResource',
    str2: 'flags',
    int1: 0,
    int2: 0,
  });
  assert.is(checkFlags(PROC.ACQUIRE_RESOURCE, 3), null);
  assert.is(checkFlags(PROC.REGISTER, 1)?.message, `unsupported flags (0x1) in function ${DISPATCH_FN[1]}`);
  assert.is(unsupportedFlags(0xdeadbeef, 'f').message, 'unsupported flags (0xdeadbeef) in function f');
  // wire layout of the tail: str2 "flags" (+3 pad), str3 absent, int1 0, int2 0, net absent
  const h = decodeHeader(hex(V.acquire1));
  const bytes = encodeErrorReply(h, e!).toString('hex');
  assert.ok(bytes.endsWith('0000000100000005666c616773000000' + '00000000' + '00000000' + '00000000' + '00000000'), bytes);
  const back = decodeReply(Buffer.from(bytes, 'hex'));
  assert.ok(back.kind === 'error' && back.error.int1 === 0 && back.error.str3 === null && back.error.level === 2);
});

// ── framing ──────────────────────────────────────────────────────────────────────────────────

const ALL_FRAMES = Object.values(V).map(hex);

function frames(out: Frame[]): string[] {
  return out.map((f) => (f.kind === 'frame' ? f.bytes.toString('hex') : `fatal:${f.reason}`));
}

test('given each vector split at every byte offset, when pushed in two chunks, then exactly that frame comes out', () => {
  for (const f of ALL_FRAMES) {
    for (let cut = 0; cut <= f.length; cut++) {
      const r = new FrameReader();
      const got = [...r.push(f.subarray(0, cut)), ...r.push(f.subarray(cut))];
      assert.equal(frames(got), [f.toString('hex')], `cut at ${cut}`);
      assert.is(r.pending, 0);
    }
  }
});

test('given all vectors back to back, when pushed byte by byte or in 3/7/1000-byte chunks, then all frames come out in order', () => {
  const stream = Buffer.concat(ALL_FRAMES);
  const want = ALL_FRAMES.map((f) => f.toString('hex'));
  for (const size of [1, 3, 7, 1000, stream.length]) {
    const r = new FrameReader();
    const got: Frame[] = [];
    for (let i = 0; i < stream.length; i += size) got.push(...r.push(stream.subarray(i, i + size)));
    assert.equal(frames(got), want, `chunk size ${size}`);
  }
});

test('given a length word below 28 (0, 3, 4, 20, 27), when pushed, then the reader reports fatal too_short and stops', () => {
  for (const len of [0, 3, 4, 20, 27]) {
    const r = new FrameReader();
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(len);
    const got = r.push(Buffer.concat([hex(V.regOk), bad, hex(V.regOk)]));
    assert.equal(frames(got), [V.regOk, 'fatal:too_short'], `length ${len}`);
    assert.ok(r.failed);
    assert.equal(r.push(hex(V.regOk)), [], 'nothing after a fatal frame');
  }
});

test('given a length word of 4+32MiB+1, then fatal too_long; given exactly 4+32MiB, then the reader waits for the body', () => {
  const word = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const r = new FrameReader();
  const got = r.push(word(4 + MAX_BODY_BYTES + 1));
  assert.is(got.length, 1);
  assert.is(got[0]!.kind, 'fatal');
  assert.ok(got[0]!.kind === 'fatal' && got[0]!.reason === 'too_long' && got[0]!.length === 4 + 33554433);
  const ok = new FrameReader();
  assert.equal(ok.push(word(4 + MAX_BODY_BYTES)), []);
  assert.not.ok(ok.failed);
  assert.equal(new FrameReader().push(word(0xffffffff)).map((f) => f.kind), ['fatal']);
});

// ── malformed input table (§2) ──────────────────────────────────────────────────────────────

function callHeader(over: Partial<Header>): Header {
  return { prog: LOCK_PROGRAM, vers: 1, proc: PROC.RESTRICT, type: MSG_TYPE.CALL, serial: 7, status: 0, ...over };
}
const flagsPayload = new XdrWriter().u32(0).toBuffer();

test('given extra bytes after the args, when decoded, then the call succeeds', () => {
  const f = encodeFrame(callHeader({}), Buffer.concat([flagsPayload, hex('deadbeefcafef00d')]));
  assert.equal(expectCall(decodeCall(f)).call, { proc: PROC.RESTRICT, flags: 0 });
});

test('given a wrong prog or vers, when decoded, then "Cannot find program" echoes the caller header', () => {
  const d1 = expectError(decodeCall(encodeFrame(callHeader({ prog: LOCK_PROGRAM + 1 }), flagsPayload)));
  assert.is(d1.error.message, 'Cannot find program 245874416 version 1');
  const reply = decodeHeader(encodeErrorReply(d1.header, d1.error));
  assert.equal(reply, { prog: LOCK_PROGRAM + 1, vers: 1, proc: 2, type: MSG_TYPE.REPLY, serial: 7, status: 1 });
  const d2 = expectError(decodeCall(encodeFrame(callHeader({ vers: 2, status: 5 }), flagsPayload)));
  assert.is(d2.error.message, 'Cannot find program 245874415 version 2', 'program is checked before status');
  assert.is(decodeHeader(encodeErrorReply(d2.header, d2.error)).vers, 2);
});

test('given an unknown proc (0, 9, -1), when decoded, then "unknown procedure: <n>"', () => {
  for (const proc of [0, 9, -1]) {
    const d = expectError(decodeCall(encodeFrame(callHeader({ proc }), flagsPayload)));
    assert.equal(d.error, unknownProc(proc));
    assert.is(d.error.message, `unknown procedure: ${proc}`);
  }
});

test('given a CALL with status 1 (and an unknown proc), when decoded, then "Unexpected message status 1" comes first', () => {
  const d = expectError(decodeCall(encodeFrame(callHeader({ status: 1, proc: 99 }), flagsPayload)));
  assert.equal(d.error, unexpectedStatus(1));
  assert.is(d.error.code, 39);
});

test('given MESSAGE, REPLY or STREAM to the lock program, or a non-CALL to an unknown program, then it is dropped', () => {
  for (const type of [MSG_TYPE.REPLY, MSG_TYPE.MESSAGE, MSG_TYPE.STREAM, MSG_TYPE.REPLY_WITH_FDS, 77]) {
    assert.is(decodeCall(encodeFrame(callHeader({ type }), flagsPayload)).kind, 'drop', `type ${type}`);
  }
  assert.is(decodeCall(encodeFrame(callHeader({ prog: 1, type: MSG_TYPE.MESSAGE }))).kind, 'drop');
  assert.is(decodeCall(encodeKeepalive(2)).kind, 'drop', 'an unsolicited PONG is consumed silently');
});

test('given a keepalive PING sent as a CALL, then it is not keepalive but an unknown program', () => {
  const d = expectError(decodeCall(encodeFrame({ prog: KEEPALIVE_PROGRAM, vers: 1, proc: 1, type: 0, serial: 0, status: 0 })));
  assert.is(d.error.message, 'Cannot find program 1801807216 version 1');
});

test('given CALL_WITH_FDS with 0 fds, then it decodes as a call; with 1 fd or no count, then the connection closes', () => {
  const zero = encodeFrame(callHeader({ type: MSG_TYPE.CALL_WITH_FDS }), Buffer.concat([new XdrWriter().u32(0).toBuffer(), flagsPayload]));
  assert.equal(expectCall(decodeCall(zero)).call, { proc: PROC.RESTRICT, flags: 0 });
  const one = encodeFrame(callHeader({ type: MSG_TYPE.CALL_WITH_FDS }), Buffer.concat([new XdrWriter().u32(1).toBuffer(), flagsPayload]));
  assert.is(decodeCall(one).kind, 'close');
  assert.is(decodeCall(encodeFrame(callHeader({ type: MSG_TYPE.CALL_WITH_FDS }))).kind, 'close');
});

function acquireWithName(name: Buffer): Buffer {
  const payload = new XdrWriter().string(FILES, LOCK_STRING_MAX).u32(name.length).raw(name).raw(Buffer.alloc((4 - (name.length % 4)) % 4)).u32(0);
  return encodeFrame(callHeader({ proc: PROC.ACQUIRE_RESOURCE }), payload.toBuffer());
}

test('given a name of 65537 bytes, when decoded, then "Unable to decode message payload"; 65536 bytes is accepted', () => {
  const over = expectError(decodeCall(acquireWithName(Buffer.alloc(LOCK_STRING_MAX + 1, 0x61))));
  assert.equal(over.error, { ...over.error, code: 39, domain: 7, message: 'Unable to decode message payload' });
  const at = expectCall(decodeCall(acquireWithName(Buffer.alloc(LOCK_STRING_MAX, 0x61)))).call;
  assert.ok(at.proc === PROC.ACQUIRE_RESOURCE && at.name.length === LOCK_STRING_MAX);
});

test('given payloads cut short anywhere, when decoded, then each is a decode error, never a throw', () => {
  const full = hex(V.regA);
  for (let len = 28; len < full.length; len++) {
    const f = Buffer.from(full.subarray(0, len));
    f.writeUInt32BE(len, 0);
    assert.is(decodeCall(f).kind, 'error', `cut at ${len}`);
  }
  // the last string's padding is part of the encoding: a 27-byte path needs its pad byte
  const p = new XdrWriter().string('x'.repeat(27), LOCK_STRING_MAX).toBuffer();
  const noPad = encodeFrame(callHeader({ proc: PROC.CREATE_LOCKSPACE }), p.subarray(0, p.length - 1));
  assert.is(decodeCall(noPad).kind, 'error');
  assert.is(decodeCall(encodeFrame(callHeader({ proc: PROC.CREATE_LOCKSPACE }), p)).kind, 'call');
});

test('given a name with a NUL byte or invalid UTF-8, then the payload is refused rather than naming another file', () => {
  assert.is(decodeCall(acquireWithName(Buffer.from('abc\0def'))).kind, 'error');
  assert.is(decodeCall(acquireWithName(Buffer.from([0x61, 0xff, 0x62]))).kind, 'error');
  const ok = expectCall(decodeCall(acquireWithName(Buffer.from('disk-é.img')))).call;
  assert.ok(ok.proc === PROC.ACQUIRE_RESOURCE && ok.name === 'disk-é.img');
});

// ── XDR primitives ───────────────────────────────────────────────────────────────────────────

test('given XdrReader, when a read runs past the end or a string breaks its max, then XdrDecodeError says which', () => {
  const r = new XdrReader(hex('000000'));
  assert.throws(() => r.u32(), (e: unknown) => e instanceof XdrDecodeError && e.reason === 'truncated' && e.code === 'VMLOCKD_ERR_BAD_INPUT');
  const s = new XdrReader(new XdrWriter().string('hello', 10).toBuffer());
  assert.throws(() => s.string(4), (e: unknown) => e instanceof XdrDecodeError && e.reason === 'over_max');
  assert.is(s.offset, 0, 'a failed read does not move the cursor');
  assert.is(s.string(5), 'hello');
  assert.is(s.remaining, 0);
  const o = new XdrReader(hex('00000000' + '00000001' + '00000002' + '00000007'));
  assert.is(o.optional((x) => x.u32()), null);
  assert.is(o.optional((x) => x.u32()), 2);
  // any non-zero discriminant means present (xdr_bool), so 7 is followed by a value that is missing here
  assert.throws(() => o.optional((x) => x.u32()), (e: unknown) => e instanceof XdrDecodeError && e.reason === 'truncated');
  assert.is(new XdrReader(hex('fffffffe')).i32(), -2);
  assert.is(new XdrReader(hex('00112233445566778899aabbccddeeff')).fixedOpaque(16).toString('hex'), '00112233445566778899aabbccddeeff');
});

test('given XdrWriter, then strings pad to 4, over-max strings and out-of-range ints are refused', () => {
  assert.is(new XdrWriter().string('', 0).toBuffer().toString('hex'), '00000000');
  assert.is(new XdrWriter().string('abcde', 8).toBuffer().toString('hex'), '000000056162636465000000');
  assert.throws(() => new XdrWriter().string('abcde', 4), /exceeds its maximum of 4/);
  assert.throws(() => new XdrWriter().u32(-1), /0\.\.4294967295/);
  assert.throws(() => new XdrWriter().i32(2 ** 31), /-2147483648/);
  assert.throws(() => encodeCall(PROC.CREATE_LOCKSPACE, 0, { path: 'x'.repeat(LOCK_STRING_MAX + 1) }), /exceeds/);
  assert.throws(() => encodeCall(PROC.REGISTER, 0, { owner: { uuid: 'xyz', name: 'a', id: 1, pid: 1 } }), /32 hex digits/);
});

test('given whole frames and half a frame pushed, when takePending, then the half comes out and a new reader fed it completes the frame (a take-over\'s hand-on)', () => {
  const a = encodeCall(PROC.RESTRICT, 1, { flags: 0 });
  const b = encodeCall(PROC.CREATE_LOCKSPACE, 2, { path: '/var/lib/libvirt/lockd/files' });
  const r = new FrameReader();
  const out = r.push(Buffer.concat([a, b.subarray(0, 9)]));
  assert.is(out.length, 1);
  const rest = r.takePending();
  assert.equal([rest.length, r.pending], [9, 0]);
  assert.equal(r.push(Buffer.alloc(0)), []);
  const next = new FrameReader();
  assert.equal(next.push(rest), []);
  const done = next.push(b.subarray(9));
  assert.is(done.length, 1);
  assert.ok(done[0]!.kind === 'frame' && done[0]!.bytes.equals(b));
});

test.run();
