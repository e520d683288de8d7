// Adaptive admission: unlimited until a refusal, then nine tenths of what was in flight, one
// decrease per window, growing back by about one per limit's worth of answers.
import { describe, expect, it } from "vitest";
import { createAdmission } from "./admission.ts";

const admitMany = (a: ReturnType<typeof createAdmission>, n: number) =>
  Array.from({ length: n }, () => a.enter());

describe("adaptive admission", () => {
  it("lets everything in until a gpu-node refuses", () => {
    const a = createAdmission();
    const tickets = admitMany(a, 500);
    expect(tickets.every((t) => t !== undefined)).toBe(true);
    for (const t of tickets) t?.("answered");
    expect(a.state).toEqual({ limit: Number.POSITIVE_INFINITY, inFlight: 0 });
  });

  it("after a refusal admits nine tenths of what was in flight, and sheds the rest", () => {
    const a = createAdmission();
    const tickets = admitMany(a, 40);
    tickets[0]!("full");
    expect(a.state).toEqual({ limit: 36, inFlight: 39 });
    expect(a.enter()).toBeUndefined();
    // The others of that window, refused too, do not shrink it again.
    for (const t of tickets.slice(1, 20)) t!("full");
    expect(a.state.limit).toBe(36);
    // Answers drain it below the limit: new requests are let in again, up to it.
    for (const t of tickets.slice(20)) t!("answered");
    expect(a.state.inFlight).toBe(0);
    const next = admitMany(a, 40);
    // (The limit grew by a fraction meanwhile: in flight may reach the next integer.)
    const admitted = next.filter((t) => t !== undefined).length;
    expect(admitted).toBe(Math.ceil(a.state.limit));
    // A refusal in this new window does decrease it.
    next[0]!("full");
    expect(a.state.limit).toBe(Math.floor(admitted * 0.9));
  });

  it("grows by about one per limit's worth of answers, and never below one", () => {
    const a = createAdmission();
    admitMany(a, 1)[0]!("full");
    expect(a.state.limit).toBe(1);
    for (let i = 0; i < 20; i++) a.enter()!("answered");
    // 1 + 1/1 + 1/2 + 1/2.5 + … : about sqrt(2 * 20).
    expect(a.state.limit).toBeGreaterThan(5);
    expect(a.state.limit).toBeLessThan(8);
    // A failure that says nothing about capacity (a bad image, a timeout) changes nothing.
    const before = a.state.limit;
    a.enter()!("other");
    expect(a.state.limit).toBe(before);
  });

  it("counts each request once, whatever its caller does", () => {
    const a = createAdmission();
    const t = a.enter()!;
    t("answered");
    t("full");
    expect(a.state).toEqual({ limit: Number.POSITIVE_INFINITY, inFlight: 0 });
  });
});
