// Timestamps on instance log lines: the agent stamps each line with the time it read the line's first byte, so
// `enjin logs` can say when a line was written whatever the app prints (most apps print no time of their own).

/** `2026-11-23T16:02:23.123Z ` (ISO 8601 in UTC, milliseconds, then one space) before each line in the file. */
export const STAMP_BYTES = 25;

/**
 * Stamps the lines of one source's output. A line split across reads gets one stamp, at its start; the state is per
 * source so two sources (two runs of an instance) never share a half line. The stamp of the current millisecond is
 * kept, so a flood of short lines costs one Date per millisecond, not one per line.
 */
export class LineStamper {
  private atLineStart = true;
  private stampMs = -1;
  private stampBuf = Buffer.alloc(0);

  /** the last chunk ended inside a line */
  get midLine(): boolean {
    return !this.atLineStart;
  }

  stamp(chunk: Buffer, nowMs = Date.now()): Buffer {
    if (chunk.length === 0) return chunk;
    const stamp = this.stampFor(nowMs);
    // Count the stamps first, then copy once into a buffer of the right size: a flood of short lines must not cost
    // an allocation per line.
    let stamps = this.atLineStart ? 1 : 0;
    for (let nl = chunk.indexOf(10); nl >= 0 && nl < chunk.length - 1; nl = chunk.indexOf(10, nl + 1)) stamps++;
    const out = Buffer.allocUnsafe(chunk.length + stamps * stamp.length);
    let at = 0;
    let from = 0;
    while (from < chunk.length) {
      if (this.atLineStart) at += stamp.copy(out, at);
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl + 1;
      at += chunk.copy(out, at, from, end);
      this.atLineStart = nl >= 0;
      from = end;
    }
    return out;
  }

  private stampFor(nowMs: number): Buffer {
    if (nowMs !== this.stampMs) {
      this.stampMs = nowMs;
      this.stampBuf = Buffer.from(`${new Date(nowMs).toISOString()} `, 'latin1');
    }
    return this.stampBuf;
  }
}

/** Stamps whole lines written at once (the agent's own lines about an instance). */
export function stampLines(text: string, nowMs = Date.now()): Buffer {
  return new LineStamper().stamp(Buffer.from(text), nowMs);
}
