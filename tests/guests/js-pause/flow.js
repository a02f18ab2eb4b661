// Pauses for input and emits events, for tests/js_sdk.rs.
import { emitEvent, flow, pause, task } from 'sluice-sdk';

const prepare = task(function prepare(target) {
  return `prepared ${target}`;
}, { parameters: { target: { type: 'string' } } });

const approvalSchema = {
  type: 'object',
  properties: { approve: { type: 'boolean' }, note: { type: 'string' } },
  required: ['approve'],
  additionalProperties: false,
};

flow(function approval(target = 'prod') {
  const prepared = prepare(target);
  const answer = pause('Approve the deploy?', { schema: approvalSchema });
  return `${prepared}; ${answer.approve ? 'deployed' : 'held'} (${answer.note ?? ''})`;
}, { parameters: { target: { type: 'string' } } });

flow(function timed(waitMs = 1000) {
  const value = pause('How many?', { schema: { type: 'integer' }, timeoutMs: waitMs, default: 7 });
  return value * 6;
}, { parameters: { waitMs: { type: 'integer' } } });

flow(function emits() {
  const answers = [];
  for (const name of ['deploy.approved', 'two words']) {
    try {
      emitEvent(name, { by: 'tests' });
      answers.push('ok');
    } catch (e) {
      answers.push(e.message);
    }
  }
  return answers;
});
