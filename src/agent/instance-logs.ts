// Instance logs owned by the agent: each instance writes to a FIFO the agent reads, within a budget, into a capped file.
import { execFileSync } from 'node:child_process';
import { lstatSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CappedLog } from './log-writer.ts';
import { openFifoReader, type LogPump, type Pumped } from './log-pump.ts';
import { stampLines } from './log-stamp.ts';

/** How long a stop waits for an instance's last output to reach its log. */
const DRAIN_MS = 2000;

interface Entry {
  log: CappedLog;
  reader: Pumped | null;
  reopen: NodeJS.Timeout | null;
  closing: boolean;
}

export interface InstanceLogsOptions {
  dir: string;
  /** total cap of one instance's log on disk (live file + one rotated file) */
  maxBytes: number;
  pump: LogPump;
  /** a log could not be written (disk full, directory gone): reported once per kind of failure */
  onError: (instanceId: string, err: NodeJS.ErrnoException) => void;
}

/**
 * Why a FIFO: the instance keeps a descriptor it can always write to, whether or not the agent is there; the agent
 * alone writes the file, so rotation is a rename with no race against the app. The instance's end is opened
 * read-write, so it never gets EPIPE/SIGPIPE while no agent reads (after a crash, during an upgrade); the price is
 * that its writes block once the pipe buffer (64 KiB) is full until an agent reads again -- the trade-off Docker makes
 * in its blocking log mode with live-restore. A throttled app is better than an agent or a disk taken down by it.
 */
export class InstanceLogs {
  private readonly o: InstanceLogsOptions;
  private readonly entries = new Map<string, Entry>();

  constructor(o: InstanceLogsOptions) {
    this.o = o;
  }

  logPath(instanceId: string): string {
    return join(this.o.dir, `${instanceId}.log`);
  }

  fifoPath(instanceId: string): string {
    return join(this.o.dir, `${instanceId}.fifo`);
  }

  /**
   * Makes sure the instance's FIFO exists and is being read into its log; returns the FIFO's path for the driver.
   * Called before each run and for each re-adopted instance.
   */
  open(instanceId: string): string {
    const fifo = this.fifoPath(instanceId);
    const st = lstatSync(fifo, { throwIfNoEntry: false });
    if (st && !st.isFIFO()) rmSync(fifo, { force: true, recursive: true });
    // Node has no mkfifo; coreutils does, on every host the agent runs on. Once per instance.
    if (!st || !st.isFIFO()) execFileSync('mkfifo', ['-m', '0600', fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
    const e = this.entry(instanceId);
    e.closing = false;
    if (!e.reader || e.reader.ended) this.attach(instanceId, e);
    return fifo;
  }

  /** Lines from the agent itself (`[enjin] …`), stamped like the app's, in the same log and through the same cap. */
  line(instanceId: string, text: string): void {
    const e = this.entries.get(instanceId);
    const log = e?.log ?? new CappedLog(this.logPath(instanceId), this.o.maxBytes, (err) => this.o.onError(instanceId, err));
    log.write(stampLines(text));
    if (!e) log.close();
  }

  /** Waits (bounded) until what a just-dead instance wrote has reached its log, so its tail can be read. */
  async settle(instanceId: string): Promise<void> {
    await this.entries.get(instanceId)?.reader?.settle();
  }

  /**
   * Stops reading an instance's output. drain: its processes are gone, so wait (bounded) for the rest of the pipe
   * first. remove: the instance is forgotten, so its FIFO goes too (the log files stay for a post-mortem).
   */
  async close(instanceId: string, opts: { drain: boolean; remove: boolean }): Promise<void> {
    const e = this.entries.get(instanceId);
    if (e) {
      e.closing = true;
      if (e.reopen) clearTimeout(e.reopen);
      const reader = e.reader;
      if (reader && opts.drain && !reader.ended) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([reader.done, new Promise<void>((r) => { timer = setTimeout(r, DRAIN_MS); })]);
        clearTimeout(timer);
      }
      reader?.cut();
      e.log.close();
      // A newer open() (a start that raced this stop) owns the entry now.
      if (this.entries.get(instanceId) === e && e.closing) this.entries.delete(instanceId);
      else return;
    }
    if (opts.remove) rmSync(this.fifoPath(instanceId), { force: true });
  }

  /** Agent shutdown: drain when the instances were stopped, else leave their output in the FIFOs for the next agent. */
  async closeAll(drain: boolean): Promise<void> {
    await Promise.all([...this.entries.keys()].map((id) => this.close(id, { drain, remove: false })));
  }

  private entry(instanceId: string): Entry {
    let e = this.entries.get(instanceId);
    if (!e) {
      e = { log: new CappedLog(this.logPath(instanceId), this.o.maxBytes, (err) => this.o.onError(instanceId, err)), reader: null, reopen: null, closing: false };
      this.entries.set(instanceId, e);
    }
    return e;
  }

  private attach(instanceId: string, e: Entry): void {
    if (e.reopen) clearTimeout(e.reopen);
    e.reopen = null;
    const reader = this.o.pump.pump(openFifoReader(this.fifoPath(instanceId)), e.log, { stampLines: true });
    e.reader = reader;
    const openedAt = Date.now();
    void reader.done.then(() => {
      if (e.reader !== reader || e.closing || this.entries.get(instanceId) !== e) return;
      // Every writer closed (the run ended). Read again at once, so the next run's output (or a process that still
      // holds the pipe) is never left without a reader; a reader that ends at once with nothing read waits a little,
      // so no kernel quirk can turn this into a busy loop.
      const quick = Date.now() - openedAt < 100 && reader.bytes === 0;
      const again = (): void => {
        e.reopen = null;
        if (e.reader !== reader || e.closing) return;
        try {
          this.attach(instanceId, e);
        } catch (err) {
          this.o.onError(instanceId, err as NodeJS.ErrnoException);
        }
      };
      if (quick) e.reopen = setTimeout(again, 500).unref();
      else again();
    });
  }
}
