// Wires the virsh event stream into the daemon and follows live changes of `libvirt_uri`: the daemon
// replaces `daemon.config` on a reload, so the URI is polled; a change stops the old stream and
// starts one on the new URI (which reconciles at once), and an emptied URI stops it.
import type { RunningSource, SourceContext } from '../engine/source.js';
import { startVirshSource, type VirshSource, type VirshSourceOptions } from '../events/virsh-stream.js';
import type { Config } from '../watchers/config.js';
import type { Daemon } from './daemon.js';

export interface LibvirtFollowerOptions {
  /** How often the config is looked at for a new libvirt_uri. */
  readonly pollMs?: number;
  /** Test seam: start a stream (defaults to the real virsh one). */
  readonly start?: (ctx: SourceContext, opts: VirshSourceOptions) => VirshSource;
}

/** Follows `config().libvirtUri`, keeping one event stream on the current URI. */
export class LibvirtFollower implements RunningSource {
  private current: { uri: string; source: VirshSource } | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly ctx: SourceContext,
    private readonly config: () => Config,
    private readonly opts: LibvirtFollowerOptions = {},
  ) {
    this.timer = setInterval(() => void this.sync(), opts.pollMs ?? 1000);
    this.timer.unref();
  }

  /** The URI the running stream listens on, if any. */
  get uri(): string | undefined {
    return this.current?.uri;
  }

  get source(): VirshSource | undefined {
    return this.current?.source;
  }

  /** `vmlockd status`'s libvirt part: which libvirt the stream reaches and the VMs whose locks it kept. */
  status(): ReturnType<VirshSource['handler']['status']> | null {
    return this.current?.source.handler.status() ?? null;
  }

  /**
   * Bring the stream in line with the config; serial, so two quick reloads cannot start two streams.
   * `initial`: the daemon's start. Only a stream started then answers for the locks already held; one
   * started by a live change of libvirt_uri releases them only for VMs it has reported running.
   */
  sync(initial = false): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      const uri = this.config().libvirtUri ?? undefined;
      if (uri === this.current?.uri) return;
      if (this.current) {
        this.ctx.log('info', `libvirt_uri changed from ${this.current.uri} to ${uri ?? '(none)'}: stopping the old event stream`);
        await this.current.source.stop();
        this.current = undefined;
      }
      if (uri === undefined) return;
      const start = this.opts.start ?? startVirshSource;
      // Read at every conflict, not once: on_conflict reloads live too.
      this.current = {
        uri,
        source: start(this.ctx, {
          uri,
          onConflict: () => this.config().onConflict,
          // The hook's rule (api-server), so every libvirt source locks the same disks.
          leaseRules: () => ({ autoDiskLeases: this.config().autoDiskLeases, requireLeaseForDisks: this.config().requireLeaseForDisks }),
          adoptHeld: initial,
        }),
      };
    });
    return this.chain;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.chain;
    await this.current?.source.stop();
    this.current = undefined;
  }
}

/**
 * Registers the libvirt event source. It is registered whether or not libvirt_uri is set now, so
 * that setting it in a config reload starts the stream without a restart.
 */
export function registerLibvirt(daemon: Daemon, opts: LibvirtFollowerOptions = {}): void {
  daemon.sourceStarters.push(async (ctx) => {
    const follower = new LibvirtFollower(ctx, () => daemon.config, opts);
    await follower.sync(true);
    daemon.libvirtStatus = () => follower.status();
    // A lock the verifier found lost to another owner: the VM runs unprotected; on_conflict applies.
    daemon.conflictHandlers.push((c) => {
      const source = follower.source;
      if (!source) return;
      const holder = c.holder.owner ? `VM ${c.holder.owner.name ?? c.holder.owner.uuid}${c.holder.host ? ` on host ${c.holder.host}` : ''}` : 'another owner';
      for (const owner of c.owners) void source.handler.applyConflictPolicy(owner, `lock on disk ${c.disk} lost; it is now held by ${holder}`);
    });
    return follower;
  });
}
