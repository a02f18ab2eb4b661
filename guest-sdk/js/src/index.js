// sluice-sdk: write Sluice flows in JavaScript.
//
// `flow(fn, options)` and `task(fn, options)` register functions; this module
// implements the world `flow`'s exports (describe, run-flow, run-task) from
// that registry, so a flow file only imports from 'sluice-sdk'. build.mjs
// re-exports `describe`, `runFlow` and `runTask` from here into the component.
//
// Every task call and every subflow goes through the host (own instance,
// host-side retries, timeout and cache); only the export calls a body
// directly.

import * as host from 'sluice:flow/host@0.2.0';

const flows = new Map();
const tasks = new Map();
let version = '0.1.0';
// Set while an export runs: host imports may only be called then (never
// during `describe` or while the module is pre-initialised at build time).
let inRun = false;
// Futures this run started: the flow waits for those it left uncollected
// before it returns, as Prefect does, instead of the host cancelling them.
const started = [];

/** A failure that retrying cannot fix: the task fails without retries. */
export class FatalError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'FatalError';
  }
}

/** A task or subflow called through the host did not complete. */
export class RunError extends Error {
  constructor(what, error) {
    super(`${what} ${describeRunError(error)}`);
    this.name = 'RunError';
    /** The host's `run-error` variant: `{tag, val}`. */
    this.runError = error;
    this.retryable = isRetryable(error);
  }
}

/** Sets the version `describe` reports (default `0.1.0`). */
export function setVersion(v) {
  version = String(v);
}

/**
 * Registers a flow. Calling the returned function from another flow runs it
 * as a subflow (a child flow run in its own instance).
 * Options: `name`, `description`, `parameters` (a JSON Schema object, or a
 * map of parameter name to schema).
 */
export function flow(fn, options = {}) {
  const def = define('flow', fn, options);
  if (flows.has(def.name) || tasks.has(def.name)) {
    throw new Error(`sluice-sdk: a flow or task named \`${def.name}\` is already registered`);
  }
  flows.set(def.name, def);
  const call = (...args) => {
    requireRun(def, 'called');
    return decode(callHost(() => host.runSubflow(def.name, encodeArgs(def, args)), `subflow ${def.name}`));
  };
  return Object.assign(call, { flowName: def.name, fn });
}

/**
 * Registers a task. Calling the returned function runs the task in a fresh
 * instance through the host and returns its result; `.submit(...args)`
 * starts it without waiting and returns a future; `.map(xs, ys, ...)`
 * starts one run per position, as Prefect's: iterables are zipped, other
 * values and `unmapped(value)` are passed to every run.
 * Options: `name`, `description`, `parameters`, `retries`,
 * `retryDelaySeconds`, `backoff`, `jitter`, `timeoutSeconds`, `cache`,
 * `cacheExpiration` (seconds).
 */
export function task(fn, options = {}) {
  const def = define('task', fn, options);
  def.policy = policyOf(def.name, options);
  if (flows.has(def.name) || tasks.has(def.name)) {
    throw new Error(`sluice-sdk: a flow or task named \`${def.name}\` is already registered`);
  }
  tasks.set(def.name, def);
  const call = (...args) => {
    requireRun(def, 'called');
    return decode(callHost(() => host.runTask(def.name, encodeArgs(def, args)), `task ${def.name}`));
  };
  const submitAll = (argLists) => {
    requireRun(def, 'submitted');
    const calls = argLists.map((args) => ({ name: def.name, input: encodeArgs(def, args) }));
    // `submit` gives a BigUint64Array: make plain futures of it.
    const handles = calls.length ? Array.from(host.submit(calls)) : [];
    const futures = handles.map((handle) => new TaskFuture(def.name, handle));
    started.push(...futures);
    return futures;
  };
  const submit = (...args) => submitAll([args])[0];
  const map = (...iterables) => futureList(submitAll(zipArguments(def.name, iterables)));
  return Object.assign(call, { taskName: def.name, fn, submit, map });
}

/** Marks a `map` argument to pass as it is to every run (an array included). */
export function unmapped(value) {
  return new Unmapped(value);
}

class Unmapped {
  constructor(value) {
    this.value = value;
  }
}

// `map`'s arguments as one argument list per run.
function zipArguments(name, args) {
  const isMapped = (a) => !(a instanceof Unmapped) && typeof a !== 'string' && a != null && typeof a[Symbol.iterator] === 'function';
  const columns = args.map((a) => (isMapped(a) ? [...a] : null));
  const lengths = [...new Set(columns.filter(Boolean).map((c) => c.length))];
  if (lengths.length === 0) throw new TypeError(`${name}.map() needs at least one array (or iterable) argument`);
  if (lengths.length > 1) throw new TypeError(`${name}.map(): the arrays have different lengths (${lengths.join(', ')})`);
  return Array.from({ length: lengths[0] }, (_, i) =>
    args.map((a, j) => (columns[j] ? columns[j][i] : a instanceof Unmapped ? a.value : a)),
  );
}

/** A task started with `submit`: `result()` blocks until it ends. */
export class TaskFuture {
  constructor(name, handle) {
    this.taskName = name;
    this.handle = handle;
    this.outcome = undefined;
  }

  /** The task's result; throws a `RunError` when it did not complete. */
  result() {
    waitFor([this]);
    return decode(unwrap(this.outcome, `task ${this.taskName}`));
  }

  /** Waits without throwing; true when the task completed. */
  wait() {
    waitFor([this]);
    return this.outcome.tag === 'ok';
  }
}

/** What `task.map` returns: an array of futures whose `result()` collects them all at once. */
function futureList(futures) {
  return Object.defineProperty(futures, 'result', {
    value() {
      waitFor(futures);
      return futures.map((f) => f.result());
    },
  });
}

// Collects the outcomes of futures not collected yet, in one host call.
function waitFor(futures) {
  const pending = futures.filter((f) => f.outcome === undefined);
  if (!pending.length) return;
  host.wait(BigUint64Array.from(pending.map((f) => f.handle))).forEach((outcome, i) => {
    pending[i].outcome = outcome;
  });
}

/**
 * Pauses the flow run until a person sends input that fits `schema` (a JSON
 * Schema object, shown as a form), and returns that input (parsed JSON).
 *
 * The run goes to `Paused` and holds no worker slot: this instance stops
 * here. When someone resumes it (`sluice flow-run resume <id> --input
 * '{...}'`, the API or the run's page), the flow runs again from the start,
 * replaying the tasks it completed from its journal, and this call returns
 * the input. Code before it must make the same calls on every attempt, as on
 * a retry. Only a top-level flow may pause.
 *
 * Options: `schema` (default: any JSON object), `timeoutMs` (then the run
 * goes on with `default`, which must fit the schema, or ends `Failed`).
 */
export function pause(prompt, options = {}) {
  const { schema = { type: 'object' }, timeoutMs, default: fallback } = options;
  if (!inRun) throw new Error('sluice-sdk: pause() only works while a flow runs in Sluice');
  if (schema === null || typeof schema !== 'object') {
    throw new TypeError('sluice-sdk: pause() `schema` must be a JSON Schema object');
  }
  let timeout;
  if (timeoutMs !== undefined && timeoutMs !== null) {
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new TypeError(`sluice-sdk: pause() \`timeoutMs\` must be a number of milliseconds >= 0, not ${timeoutMs}`);
    }
    timeout = BigInt(Math.round(timeoutMs));
  }
  const def = fallback === undefined ? undefined : JSON.stringify(fallback);
  const input = callHost(() => host.suspend(String(prompt), JSON.stringify(schema), timeout, def), 'pause');
  return JSON.parse(input);
}

/**
 * Records an event of this run that automations can react to: `name` is 1
 * to 128 characters of `A-Z a-z 0-9 . _ -`, not starting with `sluice.`
 * (kept for the events Sluice records itself), `payload` an object that
 * serialises to at most 64 KiB of JSON. Throws if the host refuses it;
 * outside a run it does nothing.
 */
export function emitEvent(name, payload = {}) {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new TypeError('sluice-sdk: emitEvent() `payload` must be an object');
  }
  if (!inRun) return;
  try {
    host.emitEvent(String(name), JSON.stringify(payload));
  } catch (e) {
    if (e && Object.prototype.hasOwnProperty.call(e, 'payload')) {
      throw new Error(`sluice-sdk: event \`${name}\` refused: ${e.payload}`);
    }
    throw e;
  }
}

/** A logger whose lines reach the run's log: `debug`, `info`, `warning`, `error`. */
export function getRunLogger() {
  return runLogger;
}

const emit = (level) => (...args) => {
  if (inRun) host.log(level, format(args));
};
const runLogger = Object.freeze({
  trace: emit('trace'),
  debug: emit('debug'),
  info: emit('info'),
  warning: emit('warning'),
  warn: emit('warning'),
  error: emit('error'),
});

/** The run this instance serves: ids, names, attempt, parameters. */
export function getRunContext() {
  if (!inRun) throw new Error('sluice-sdk: getRunContext() is only available while a flow or task runs');
  const ctx = host.context();
  return { ...ctx, parameters: JSON.parse(ctx.parameters || '{}') };
}

// console.* goes to the run's log during a run (stderr otherwise).
for (const [method, level] of [
  ['log', 'info'],
  ['info', 'info'],
  ['debug', 'debug'],
  ['trace', 'trace'],
  ['warn', 'warning'],
  ['error', 'error'],
]) {
  const original = console[method]?.bind(console);
  console[method] = (...args) => (inRun ? host.log(level, format(args)) : original?.(...args));
}

// ---- the world `flow`'s exports ----

export function describe() {
  return {
    version,
    flows: [...flows.values()].map((d) => ({
      name: d.name,
      description: d.description,
      parametersSchema: JSON.stringify(d.schema),
    })),
    tasks: [...tasks.values()].map((d) => ({
      name: d.name,
      description: d.description,
      inputSchema: JSON.stringify(d.schema),
      policy: d.policy,
    })),
  };
}

export function runFlow(name, parameters) {
  return runExport(flows.get(name), 'flow', name, parameters);
}

export function runTask(name, input) {
  return runExport(tasks.get(name), 'task', name, input);
}

function runExport(def, kind, name, json) {
  if (!def) return err('unknown', `no ${kind} named \`${name}\` in this component`);
  let input;
  try {
    input = json.trim() ? JSON.parse(json) : {};
  } catch (e) {
    return err('invalid-input', `${kind} ${name}: input is not valid JSON: ${e.message}`);
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return err('invalid-input', `${kind} ${name}: input must be a JSON object`);
  }
  inRun = true;
  let value;
  try {
    value = def.objectParam ? def.fn(input) : def.fn(...def.params.map((p) => input[p.name]));
  } catch (e) {
    return failure(kind, name, e);
  }
  if (value && typeof value.then === 'function') {
    return value.then(
      (v) => ok(v, kind, name),
      (e) => failure(kind, name, e),
    );
  }
  return ok(value, kind, name);
}

function ok(value, kind, name) {
  waitFor(started);
  try {
    return { tag: 'ok', val: JSON.stringify(value === undefined ? null : value) ?? 'null' };
  } catch (e) {
    return err('failed', { message: `${kind} ${name}: result is not JSON: ${e.message}`, retryable: false });
  }
}

function failure(kind, name, e) {
  waitFor(started);
  const retryable = e instanceof RunError ? e.retryable : !(e instanceof FatalError);
  // The stack goes to the log one line per frame (log lines are single-line);
  // the failure message, shown in the final state, stays one line.
  const message = e instanceof RunError ? e.message : e instanceof Error ? `${e.name}: ${e.message}` : errorText(e);
  host.log('error', `${kind} ${name} failed: ${message}`);
  if (e instanceof Error && e.stack && !(e instanceof RunError)) {
    for (const line of e.stack.split('\n')) {
      const frame = line.trim();
      // Frames of the engine's generated bindings and of the SDK's error
      // constructors say nothing about the flow.
      if (!frame || frame.startsWith(message) || /initializer\.js:|^(FatalError|RunError)@/.test(frame)) continue;
      host.log('error', `  ${frame.startsWith('at ') ? frame : `at ${frame}`}`);
    }
  }
  return err('failed', { message, retryable });
}

// The export's `result<string, run-error>`: `{tag: 'err', val: run-error}`.
function err(tag, val) {
  return { tag: 'err', val: { tag, val } };
}

/** Run by build.mjs after the flow file loaded: a component needs a flow. */
export function __requireFlows(file) {
  if (!flows.size) throw new Error(`${file} registers no flow: wrap a function with flow(fn) from 'sluice-sdk'`);
}

// ---- JSDoc (read by build.mjs from the sources) ----

/**
 * Applies the JSDoc build.mjs found above each function, keyed by function
 * name: the description when none was given, and the parameters' schema
 * from `@param {type} name` when no `parameters` option was given.
 */
export function __applyJsDoc(docs) {
  for (const def of [...flows.values(), ...tasks.values()]) {
    const doc = docs[def.fn.name];
    if (!doc) continue;
    if (!def.description) def.description = doc.description;
    if (def.explicitSchema || def.objectParam) continue;
    const properties = {};
    const required = [];
    for (const p of def.params) {
      const tag = doc.params[p.name];
      properties[p.name] = tag ? { ...jsDocType(tag.type), ...(tag.description ? { description: tag.description } : {}) } : {};
      if (tag && tag.default !== undefined) properties[p.name].default = tag.default;
      if (!p.hasDefault && !(tag && (tag.optional || tag.default !== undefined))) required.push(p.name);
    }
    def.schema = { type: 'object', properties, ...(required.length ? { required } : {}), additionalProperties: false };
  }
}

// A JSDoc type as JSON Schema; what it cannot express accepts any value.
function jsDocType(type) {
  const t = (type || '').trim().replace(/^\((.*)\)$/, '$1');
  if (!t || t === '*' || t === 'any') return {};
  if (t.includes('|')) return { anyOf: t.split('|').map(jsDocType) };
  const literal = /^'(.*)'$|^"(.*)"$/.exec(t);
  if (literal) return { const: literal[1] ?? literal[2] };
  const array = /^Array\.?<(.+)>$/.exec(t) || /^(.+)\[\]$/.exec(t);
  if (array) return { type: 'array', items: jsDocType(array[1]) };
  const simple = {
    string: 'string',
    String: 'string',
    number: 'number',
    Number: 'number',
    integer: 'integer',
    int: 'integer',
    boolean: 'boolean',
    Boolean: 'boolean',
    bool: 'boolean',
    object: 'object',
    Object: 'object',
    Array: 'array',
    array: 'array',
    null: 'null',
  }[t];
  return simple ? { type: simple } : {};
}

// ---- definitions ----

function define(kind, fn, options) {
  if (typeof fn !== 'function') {
    throw new TypeError(`sluice-sdk: ${kind}() takes a function first, got ${typeof fn}`);
  }
  const name = options.name ?? fn.name;
  if (!name) throw new Error(`sluice-sdk: an anonymous ${kind} needs a \`name\` option`);
  const { params, objectParam } = parseParams(fn, name);
  return {
    name,
    fn,
    params,
    objectParam,
    description: options.description ?? '',
    explicitSchema: Boolean(options.parameters),
    schema: schemaOf(params, objectParam, options.parameters),
  };
}

function policyOf(name, o) {
  const ms = (key) => {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) {
      throw new TypeError(`sluice-sdk: task ${name}: \`${key}\` must be a number of seconds >= 0`);
    }
    return BigInt(Math.round(v * 1000));
  };
  const retries = o.retries ?? 0;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError(`sluice-sdk: task ${name}: \`retries\` must be an integer >= 0`);
  }
  const jitter = o.jitter ?? 0;
  if (typeof jitter !== 'number' || jitter < 0 || jitter > 1) {
    throw new TypeError(`sluice-sdk: task ${name}: \`jitter\` must be between 0 and 1`);
  }
  return {
    retries,
    retryDelayMs: ms('retryDelaySeconds') ?? 0n,
    backoff: o.backoff ?? 1.0,
    jitter,
    timeoutMs: ms('timeoutSeconds'),
    cache: Boolean(o.cache),
    cacheExpirationMs: ms('cacheExpiration'),
  };
}

// An explicit schema wins; otherwise every parameter is accepted with any
// JSON value, required unless it has a default.
function schemaOf(params, objectParam, given) {
  if (given) {
    if (given.type || given.properties || given.$ref || given.oneOf || given.anyOf) return given;
    const required = params
      .filter((p) => !p.hasDefault && p.name in given && !('default' in (given[p.name] ?? {})))
      .map((p) => p.name);
    return { type: 'object', properties: given, ...(required.length ? { required } : {}), additionalProperties: false };
  }
  if (objectParam) return { type: 'object' };
  const required = params.filter((p) => !p.hasDefault).map((p) => p.name);
  return {
    type: 'object',
    properties: Object.fromEntries(params.map((p) => [p.name, {}])),
    ...(required.length ? { required } : {}),
    additionalProperties: false,
  };
}

function encodeArgs(def, args) {
  if (def.objectParam) return JSON.stringify(args[0] ?? {});
  if (args.length > def.params.length) {
    throw new TypeError(`${def.name} takes ${def.params.length} argument(s), got ${args.length}`);
  }
  const input = {};
  def.params.forEach((p, i) => {
    if (args[i] !== undefined) input[p.name] = args[i];
  });
  return JSON.stringify(input);
}

function requireRun(def, verb) {
  if (!inRun) throw new Error(`sluice-sdk: ${def.name} can only be ${verb} while a flow runs`);
}

// `run-task`/`run-subflow` return the ok string and throw the err payload
// (jco's ComponentError with `.payload`).
function callHost(call, what) {
  try {
    return call();
  } catch (e) {
    if (e && Object.prototype.hasOwnProperty.call(e, 'payload')) throw new RunError(what, e.payload);
    throw e;
  }
}

// `wait` returns `{tag: 'ok' | 'err', val}` per handle.
function unwrap(result, what) {
  if (result.tag === 'ok') return result.val;
  throw new RunError(what, result.val);
}

function decode(json) {
  return JSON.parse(json);
}

function describeRunError(e) {
  switch (e.tag) {
    case 'failed':
    case 'crashed':
      return `${e.tag}: ${e.val.message}`;
    default:
      return `${e.tag}: ${e.val}`;
  }
}

function isRetryable(e) {
  return (e.tag === 'failed' || e.tag === 'crashed') && e.val.retryable;
}

function errorText(e) {
  if (e instanceof Error) {
    const head = `${e.name}: ${e.message}`;
    return e.stack ? `${head}\n${e.stack.trimEnd()}` : head;
  }
  try {
    return `thrown ${e?.constructor?.name ?? typeof e}: ${String(e)} ${JSON.stringify(e)}`;
  } catch {
    return `thrown ${typeof e}: ${String(e)}`;
  }
}

function format(args) {
  return args
    .map((a) => {
      if (typeof a === 'string') return a;
      if (a instanceof Error) return errorText(a);
      try {
        return JSON.stringify(a);
      } catch {
        return String(a);
      }
    })
    .join(' ');
}

// Reads a function's parameter names from its source: `(a, b = 1)` gives
// positional parameters; a single destructured `({a, b})` takes the input
// object as it is. Runs once per function, at build time (pre-initialised).
function parseParams(fn, name) {
  const src = Function.prototype.toString.call(fn);
  let list;
  const arrow = /^\s*(?:async\s*)?([A-Za-z_$][\w$]*)\s*=>/.exec(src);
  if (arrow) {
    list = arrow[1];
  } else {
    const open = src.indexOf('(');
    if (open < 0) throw new Error(`sluice-sdk: cannot read the parameters of ${name}`);
    let depth = 0;
    let end = open;
    let quote = null;
    for (let i = open; i < src.length; i++) {
      const c = src[i];
      if (quote) {
        if (c === '\\') i++;
        else if (c === quote) quote = null;
      } else if (c === '"' || c === "'" || c === '`') quote = c;
      else if ('([{'.includes(c)) depth++;
      else if (')]}'.includes(c) && --depth === 0) {
        end = i;
        break;
      }
    }
    list = src.slice(open + 1, end);
  }
  const parts = splitTopLevel(stripComments(list)).filter((p) => p.trim());
  if (parts.length === 1 && /^\s*[{[]/.test(parts[0])) {
    return { params: [], objectParam: true };
  }
  const params = parts.map((part) => {
    const m = /^\s*([A-Za-z_$][\w$]*)\s*(=)?/.exec(part);
    if (!m || /^\s*\.\.\./.test(part)) {
      throw new Error(
        `sluice-sdk: ${name}: parameter \`${part.trim()}\` is not supported; use plain names (with defaults) or one destructured object`,
      );
    }
    return { name: m[1], hasDefault: Boolean(m[2]) };
  });
  return { params, objectParam: false };
}

function stripComments(s) {
  return s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
}

function splitTopLevel(s) {
  const out = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'" || c === '`') quote = c;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    else if (c === ',' && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}
