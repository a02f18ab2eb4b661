// A Sluice flow in TypeScript: `sluice build flow.ts` strips the types (no
// type checking: run `tsc --noEmit` for that) and builds it like JavaScript.
import { flow, getRunLogger, task } from 'sluice-sdk';
import { type Summary, summarise } from './stats.ts';

/**
 * Squares a number.
 * @param {number} x - the number to square
 */
const square = task(function square(x: number): number {
  return x * x;
});

const report = task(
  function report(summary: Summary): string {
    const line = `${summary.count} squares, mean ${summary.mean} (${summary.grade})`;
    getRunLogger().info(line);
    return line;
  },
  { description: 'Logs a summary line.', retries: 1 },
);

/**
 * Squares 1..count in parallel and summarises the squares.
 * @param {integer} [count=4] - how many squares
 */
flow(function squares(count: number = 4): { squares: number[]; line: string } {
  const values: number[] = square.map(Array.from({ length: count }, (_, i) => i + 1)).result();
  return { squares: values, line: report(summarise(values)) };
});
