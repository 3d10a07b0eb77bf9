// Steady HTTP load through a set of routers for the fault suite: one request loop per router, counting every request
// and every failure (an error, a timeout or a status other than 200), and which instance (pid) answered.
import http from 'node:http';

export interface LoadTarget {
  /** a name for reports: the host the router runs on */
  name: string;
  host: string;
  port: number;
}

export interface LoadFailure {
  at: number;
  target: string;
  reason: string;
}

/** Counts since a mark: what a scenario reports. */
export interface LoadCounts {
  requests: number;
  failed: number;
  failures: LoadFailure[];
  /** target name → pids that answered through it */
  pids: Map<string, Set<number>>;
}

export function httpGet(host: string, port: number, hostHeader: string, path = '/', timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path, headers: { host: hostHeader }, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export class SteadyLoad {
  private targets = new Map<string, LoadTarget>();
  private loops = new Map<string, Promise<void>>();
  private running = false;
  private counts: LoadCounts = SteadyLoad.empty();

  constructor(readonly hostHeader: string, readonly opts: { intervalMs?: number; timeoutMs?: number } = {}) {}

  private static empty(): LoadCounts {
    return { requests: 0, failed: 0, failures: [], pids: new Map() };
  }

  /** Sends through exactly these routers from now on (a dead host's router is taken out by the scenario). */
  setTargets(targets: LoadTarget[]): void {
    const names = new Set(targets.map((t) => t.name));
    for (const name of [...this.targets.keys()]) if (!names.has(name)) this.targets.delete(name);
    for (const t of targets) {
      this.targets.set(t.name, t);
      if (this.running && !this.loops.has(t.name)) this.startLoop(t.name);
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const name of this.targets.keys()) this.startLoop(name);
  }

  /** Starts counting afresh and returns what was counted since the previous mark. */
  mark(): LoadCounts {
    const c = this.counts;
    this.counts = SteadyLoad.empty();
    return c;
  }

  /** What was counted since the last mark, without resetting. */
  peek(): LoadCounts {
    return this.counts;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops.values());
  }

  private startLoop(name: string): void {
    const loop = (async () => {
      const interval = this.opts.intervalMs ?? 100;
      while (this.running && this.targets.has(name)) {
        const t = this.targets.get(name)!;
        const started = Date.now();
        const counts = this.counts;
        try {
          const r = await httpGet(t.host, t.port, this.hostHeader, '/', this.opts.timeoutMs ?? 5000);
          if (r.status === 200) {
            const pid = Number(/pid (\d+)/.exec(r.body)?.[1] ?? 0);
            if (!counts.pids.has(name)) counts.pids.set(name, new Set());
            if (pid) counts.pids.get(name)!.add(pid);
          } else {
            this.fail(counts, name, `HTTP ${r.status} ${r.body.slice(0, 120).trim()}`);
          }
        } catch (err) {
          this.fail(counts, name, (err as Error).message);
        }
        counts.requests++;
        const wait = interval - (Date.now() - started);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      this.loops.delete(name);
    })();
    this.loops.set(name, loop);
  }

  private fail(counts: LoadCounts, target: string, reason: string): void {
    counts.failed++;
    if (counts.failures.length < 50) counts.failures.push({ at: Date.now(), target, reason });
  }
}

/** A short account of failures for an assertion message. */
export function describeFailures(c: LoadCounts): string {
  return c.failures.slice(0, 10).map((f) => `${new Date(f.at).toISOString().slice(11, 23)} ${f.target}: ${f.reason}`).join('\n');
}
