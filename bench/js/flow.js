// Trivial JavaScript flows for the SDK bench (runtime/benches/python_tasks.rs):
// the same `noop` task and `sequential` flow as bench/python/flow.py.
import { flow, task } from 'sluice-sdk';

/**
 * Returns its input.
 * @param {integer} i - any number
 */
const noop = task(function noop(i) {
  return i;
});

/**
 * `count` trivial tasks, one after another.
 * @param {integer} [count=10] - how many tasks
 */
flow(function sequential(count = 10) {
  for (let i = 0; i < count; i += 1) noop(i);
  return count;
});
