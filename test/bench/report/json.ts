/** The run as JSON: one file per run; an unlimited link rate (Infinity) is written as "unlimited", NaN as null. */
export function toJson(value: unknown): string {
  const replacer = (_key: string, v: unknown) => {
    if (typeof v !== "number" || Number.isFinite(v)) return v;
    return Number.isNaN(v) ? null : "unlimited";
  };
  return `${JSON.stringify(value, replacer, 2)}\n`;
}
