// JavaScript guests that misbehave on purpose, for tests/js_sdk.rs: one loops
// for ever, one allocates without end. Both must end recorded, the host intact.
import { flow, task } from 'sluice-sdk';

const loopForever = task(
  function loop_forever() {
    let n = 0;
    for (;;) n += 1;
  },
  { description: 'Never returns.', timeoutSeconds: 1 },
);

flow(function spin() {
  return loopForever();
}, { description: 'Calls the task that never returns.' });

flow(function hog() {
  const blocks = [];
  for (;;) blocks.push(new Uint8Array(1 << 20).fill(1));
}, { description: 'Allocates a MiB at a time without end.' });
