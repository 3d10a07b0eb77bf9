// Unit tests of the router's counters: histogram quantiles stay within a bucket of the truth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyHistogram, ServiceCounters } from './stats.ts';

test('quantiles are within 10% above the true value and never above the max', () => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) h.record(i); // 1 … 1000 ms
  const near = (got: number, want: number) => assert.ok(got >= want && got <= want * 1.1 + 1e-9, `${got} not within 10% above ${want}`);
  near(h.quantile(0.5), 500);
  near(h.quantile(0.9), 900);
  near(h.quantile(0.99), 990);
  assert.equal(h.max, 1000);
  assert.ok(h.quantile(1) <= 1000);
  assert.equal(h.count, 1000);
  assert.equal(h.sum, 500500);
});

test('an empty histogram reports zeros; odd values are clamped', () => {
  const h = new LatencyHistogram();
  assert.equal(h.quantile(0.5), 0);
  h.record(-1);
  h.record(Number.NaN);
  h.record(1e12);
  assert.equal(h.count, 3);
  assert.ok(h.quantile(0.5) <= 0.05, 'negative and NaN land in the first bucket');
  assert.equal(h.max, 1e12);
});

test('status classes are counted by hundreds', () => {
  const c = new ServiceCounters();
  for (const s of [101, 200, 204, 301, 404, 418, 502, 503, 99, 600]) c.countStatus(s);
  assert.deepEqual(c.snapshot().status, { '1xx': 1, '2xx': 2, '3xx': 1, '4xx': 2, '5xx': 2 });
});
