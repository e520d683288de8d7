/** Structured one-line JSON logs (pino). Callers log ids, counts, codes and timings, never image bytes or secrets. */
import { pino } from "pino";
import type { LogLevel } from "./config.ts";

export type Logger = pino.Logger;

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "gpu-node" },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Belt and braces: should anyone log a request object, its secrets never reach the log.
      redact: ["authorization", "token", "*.authorization", "*.token", "*.data"],
    },
    // Synchronous writes: pino's async default retries a closed stdout (EPIPE) forever on
    // exit, which hung SIGTERM whenever the log reader had gone away.
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
