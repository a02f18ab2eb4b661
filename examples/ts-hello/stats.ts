// A plain TypeScript module the flow imports (`./stats.ts`): its types are
// stripped at build time and the import rewritten to the staged `./stats.js`.

export interface Summary {
  count: number;
  mean: number;
  grade: Grade;
}

export enum Grade {
  Low = 'low',
  High = 'high',
}

export function summarise(values: readonly number[]): Summary {
  const count = values.length;
  const mean = count === 0 ? 0 : values.reduce((a, b) => a + b, 0) / count;
  return { count, mean, grade: mean >= 10 ? Grade.High : Grade.Low };
}
