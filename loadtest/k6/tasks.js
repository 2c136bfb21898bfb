// Operators running a command: create a task on one node (`true`), then poll its ledger until
// the node's result is in. Run against a live system with an operator or admin token: see
// lib.js. `task_done_ms` is create → result, as the poller saw it.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Trend, Counter } from 'k6/metrics';
import { BASE, nodeIds, params, scenario, think, thresholds } from './lib.js';

const done = new Trend('task_done_ms', true);
const unfinished = new Counter('tasks_unfinished');
const POLL_SECS = 0.05;
const GIVE_UP_SECS = Number(__ENV.TASK_DEADLINE_SECS || 30);

export const options = {
  scenarios: { run: scenario() },
  thresholds: {
    ...thresholds,
    // A create answers once the projection applied it (api.applied_wait_ms: read your writes),
    // so it includes a projector batch (nerve dev: up to 200 ms).
    'http_req_duration{name:task create}': ['p(99)<1000'],
    'http_req_duration{name:task poll}': ['p(99)<100'],
    task_done_ms: ['p(99)<2000'],
    tasks_unfinished: ['count<1'],
  },
};

export function setup() {
  return { ids: nodeIds(http) };
}

export default function (data) {
  const node = data.ids[Math.floor(Math.random() * data.ids.length)];
  const body = JSON.stringify({
    kind: 'command',
    argv: ['true'],
    timeout_secs: 30,
    // Named, so it runs even on a node held for maintenance.
    targets: { node_ids: [node] },
  });
  const started = Date.now();
  const created = http.post(`${BASE}/api/v1/tasks`, body, params('task create', 'write'));
  if (!check(created, { 'task create: 202': (r) => r.status === 202 })) return;
  const id = created.json('task_id');
  while ((Date.now() - started) / 1000 < GIVE_UP_SECS) {
    const r = http.get(`${BASE}/api/v1/tasks/${id}`, params('task poll', 'read'));
    if (!check(r, { 'task poll: 200': (x) => x.status === 200 })) return;
    const expected = r.json('summary.expected');
    const c = r.json('summary.counts');
    const finished = c.succeeded + c.failed + c.timed_out + c.cancelled + c.unreachable;
    if (expected > 0 && finished >= expected) {
      done.add(Date.now() - started);
      check(c, { 'task: succeeded': (x) => x.succeeded === expected });
      sleep(think());
      return;
    }
    sleep(POLL_SECS);
  }
  unfinished.add(1);
  check(null, { 'task: finished in time': () => false });
}
