// A Sluice flow in JavaScript with the sluice-sdk package: a flow calling
// tasks, a subflow, a flaky task with retries, a map. Build it with
// `make js-example` (or `node guest-sdk/js/build.mjs examples/js-hello/flow.js OUT.wasm`).
import { FatalError, flow, getRunContext, getRunLogger, task } from 'sluice-sdk';

// The JSDoc gives the description and the input schema (no `parameters` option).
/**
 * Returns a greeting and logs it.
 * @param {string} name - who to greet
 * @param {string} [greeting="Hello"] - the word to greet with
 */
const sayHello = task(function say_hello(name, greeting = 'Hello') {
  const message = `${greeting} ${name}!`;
  getRunLogger().info(message);
  return message;
});

// Fails on its first attempt, succeeds on the retry the host schedules.
const flakyLength = task(
  function flaky_length(name) {
    const { attempt } = getRunContext();
    if (attempt < 2) throw new Error(`transient failure measuring ${name} (attempt ${attempt})`);
    console.log(`measured ${name} on attempt ${attempt}`);
    return name.length;
  },
  { description: 'Length of a name, after one transient failure.', retries: 2, retryDelaySeconds: 0.1, backoff: 2 },
);

const square = task((x) => x * x, { name: 'square', description: 'x squared.' });

const explode = task(
  function explode(message) {
    throw new Error(message);
  },
  { description: 'Always throws (retried once).', retries: 1 },
);

const refuse = task(
  function refuse(message) {
    throw new FatalError(message);
  },
  { description: 'Throws a FatalError: never retried.', retries: 3 },
);

// The first flow registered is the component's default one.
flow(
  function hello(name, count) {
    const logger = getRunLogger();
    logger.info(`Hello flow for ${name}, ${count} squares`);
    const greeting = sayHello(name);
    const length = flakyLength(name);
    const squares = square.map(Array.from({ length: count }, (_, i) => i + 1)).result();
    const sum = total(squares); // a subflow: a child flow run
    return { greeting, length, squares, sum };
  },
  {
    description: 'Greets someone, measures the name with a flaky task, squares 1..count in parallel and adds them in a subflow.',
    parameters: {
      name: { type: 'string', default: 'Arthur' },
      count: { type: 'integer', minimum: 0, maximum: 1000, default: 3 },
    },
  },
);

const total = flow(
  function total(numbers) {
    return numbers.reduce((sum, x) => sum + x, 0);
  },
  {
    description: 'Adds numbers up (run as a subflow by `hello`).',
    parameters: { numbers: { type: 'array', items: { type: 'number' } } },
  },
);

/**
 * Calls a task that always throws: the run fails with its stack in the log.
 * @param {string} [message="boom"] - what the task throws
 */
flow(function fails(message = 'boom') {
  return explode(message);
});

flow(
  function fatal(message = 'no point retrying') {
    return refuse(message);
  },
  { description: 'Calls a task that throws a FatalError: one attempt only.' },
);

flow(
  function many(n = 100, parallel = true) {
    if (!parallel) return Array.from({ length: n }, (_, i) => square(i)).reduce((a, b) => a + b, 0);
    return square
      .map(Array.from({ length: n }, (_, i) => i))
      .result()
      .reduce((a, b) => a + b, 0);
  },
  {
    description: 'Runs n square tasks, in parallel (map) or one after the other, and adds their results (for timing).',
    parameters: {
      n: { type: 'integer', minimum: 0, maximum: 10000, default: 100 },
      parallel: { type: 'boolean', default: true },
    },
  },
);
