/** The Worker entry: wiring only — the resizer chosen by configuration (resize/select.ts). */
import { createApp } from "./app.ts";
import { selectResizer } from "./resize/select.ts";

export default createApp({
  resizer: (env, config) => selectResizer(env as Env, config),
});
