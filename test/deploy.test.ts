// The deploy files against the code: every file parses; every gpu-node flag and variable they use
// is accepted by the gpu-node's own parseConfig; ports, probe paths, /dev/shm, metrics, drain and
// stop times, image pins, the Triton model and the KEDA metric agree across compose, the
// Dockerfile, systemd, Kubernetes and cloudflared, and with the code's defaults.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { type Config, ConfigError, NODE_FLAGS, parseConfig, SETTINGS } from "../gpu-node/config.ts";

const ROOT = resolve(import.meta.dirname, "..");
const DEPLOY = join(ROOT, "deploy");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is checked field by field below.
type Doc = any;

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [relative(ROOT, path)];
  });
}

function yamlDocs(path: string): Doc[] {
  const docs = parseAllDocuments(read(path));
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors[0]!.message}`);
  }
  return docs.map((d) => d.toJS());
}
const yamlFile = (path: string): Doc => yamlDocs(path)[0];

/** KEY=value lines; commented-out `#KEY=value` lines too when `commented` (optional settings). */
function envFile(path: string, commented = false): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of read(path).split("\n")) {
    const line = commented ? raw.replace(/^#(?=[A-Z_][A-Z0-9_]*=)/, "") : raw;
    if (line.trim() === "" || line.startsWith("#")) continue;
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`${path}: not KEY=value: ${line}`);
    env[m[1]!] = m[2]!;
  }
  return env;
}

/** "KEY=value" → [KEY, value] (the value may hold more "="). */
function keyValue(text: string): [string, string] {
  const i = text.indexOf("=");
  if (i < 1) throw new Error(`not KEY=value: ${text}`);
  return [text.slice(0, i), text.slice(i + 1)];
}

/** Words of a command line, with '…' and "…" quoting (enough for ExecStart and RUN lines). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}
const DOCKERFILE_KEYWORDS = new Set(
  "FROM RUN CMD LABEL EXPOSE ENV ADD COPY ENTRYPOINT VOLUME USER WORKDIR ARG ONBUILD STOPSIGNAL HEALTHCHECK SHELL".split(
    " ",
  ),
);
/**
 * A file's logical lines: `\` continuations joined (a space in place of each break), blank lines
 * dropped, and comment lines dropped where `comment` says so (it sees the line and whether a
 * continuation is pending).
 */
function logicalLines(path: string, comment: (raw: string, pending: boolean) => boolean): string[] {
  const out: string[] = [];
  let pending = "";
  for (const raw of read(path).split("\n")) {
    if (comment(raw, pending !== "")) continue;
    const line = pending + raw;
    if (line.endsWith("\\")) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    pending = "";
    if (line.trim() !== "") out.push(line);
  }
  if (pending !== "") throw new Error(`${path}: ends inside a continuation`);
  return out;
}

/** Instructions of a Dockerfile: comments dropped, `\` continuations joined, keywords checked. */
function dockerfile(path: string): Instruction[] {
  // Docker drops comment lines even inside a continuation.
  return logicalLines(path, (raw) => raw.trimStart().startsWith("#")).map((line) => {
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(line.trim());
    if (!m || !DOCKERFILE_KEYWORDS.has(m[1]!.toUpperCase())) {
      throw new Error(`${path}: not an instruction: ${line}`);
    }
    return { keyword: m[1]!.toUpperCase(), args: m[2]!.trim() };
  });
}

type Unit = Record<string, Record<string, string[]>>;
/** A systemd unit: [Section] and Key=value lines (keys may repeat), `\` continuations joined. */
function systemdUnit(path: string): Unit {
  const unit: Unit = {};
  let section: Record<string, string[]> | undefined;
  // systemd takes a comment only at the start of a logical line.
  for (const line of logicalLines(path, (raw, pending) => !pending && /^\s*[#;]/.test(raw))) {
    const header = /^\[([A-Za-z]+)\]$/.exec(line.trim());
    if (header) {
      section = unit[header[1]!] = {};
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`${path}: not Key=value in a section: ${line}`);
    section[kv[1]!] ??= [];
    section[kv[1]!]!.push(kv[2]!.trim().replace(/\s+/g, " "));
  }
  return unit;
}
const one = (unit: Unit, section: string, key: string): string => {
  const values = unit[section]?.[key];
  if (values?.length !== 1) throw new Error(`expected one ${section}.${key}, got ${values}`);
  return values[0]!;
};

/** "30s", "1m30s", "45" (seconds) → seconds. */
function seconds(text: string | number): number {
  if (typeof text === "number") return text;
  if (/^\d+$/.test(text)) return Number(text);
  const m = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === "") throw new Error(`not a duration: ${text}`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

/** The value of `--name=value` or `--name value` in an argument list. */
function flagValue(args: readonly string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i]!.startsWith(`${name}=`)) return args[i]!.slice(name.length + 1);
  }
  return undefined;
}

// The names the gpu-node reads, and the few others its environments legitimately carry.
const SETTING_ENVS = new Set<string>(Object.values(SETTINGS).map((s) => s.env));
const OTHER_ENVS = new Set(["NODE_ENV", "GLIBC_TUNABLES", "NVIDIA_DRIVER_CAPABILITIES"]);

interface Invocation {
  readonly where: string;
  readonly args: string[];
  readonly env: Record<string, string>;
  /** Optional settings shown commented out in its env file (TLS), enabled. */
  readonly optionalEnv: Record<string, string>;
}

/** Where `node [flags] gpu-node/main.ts` sits in a command line: node's index and the script's. */
function mainAt(words: readonly string[], where: string): { node: number; main: number } {
  const main = words.indexOf("gpu-node/main.ts");
  const node = words.findIndex((w) => /(^|\/)node$/.test(w));
  if (
    main < 1 ||
    node < 0 ||
    node >= main ||
    !words.slice(node + 1, main).every((w) => w.startsWith("--"))
  ) {
    throw new Error(`${where}: does not run node [flags] gpu-node/main.ts: ${words.join(" ")}`);
  }
  return { node, main };
}

/** Everything after `node [flags] gpu-node/main.ts` in a command line. */
function mainArgs(words: readonly string[], where: string): string[] {
  return words.slice(mainAt(words, where).main + 1);
}

/** The Node flags between `node` and `gpu-node/main.ts` in a command line. */
function nodeFlagsOf(words: readonly string[], where: string): string[] {
  const { node, main } = mainAt(words, where);
  return words.slice(node + 1, main);
}

// --- the files -------------------------------------------------------------------------------

const COMPOSE_PATH = "deploy/gpu-host/compose.yaml";
const compose: Doc = yamlFile(COMPOSE_PATH);
const composeTls: Doc = yamlFile("deploy/gpu-host/compose.tls.yaml");
const cloudflaredTemplate: Doc = yamlFile("deploy/cloudflared/config.yml");
const K8S = "deploy/kubernetes";
const kustomization: Doc = yamlFile(`${K8S}/kustomization.yaml`);
const k8sObjects: Doc[] = (kustomization.resources as string[]).flatMap((f) =>
  yamlDocs(`${K8S}/${f}`),
);
const k8s = (kind: string, name: string): Doc => {
  const found = k8sObjects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind}/${name} in ${K8S}`);
  return found;
};
const deployment: Doc = k8s("Deployment", "gpu-node");
const podSpec: Doc = deployment.spec.template.spec;
const container = (name: string): Doc => {
  const c = podSpec.containers.find((x: Doc) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
};
const service: Doc = k8s("Service", "gpu-node");
const DOCKERFILE_PATH = "deploy/gpu-host/Dockerfile";
const docker = dockerfile(DOCKERFILE_PATH);
const dockerOne = (keyword: string): string => {
  const found = docker.filter((i) => i.keyword === keyword);
  if (found.length !== 1) throw new Error(`expected one ${keyword} in ${DOCKERFILE_PATH}`);
  return found[0]!.args;
};
const dockerEnv: Record<string, string> = Object.fromEntries(
  docker.filter((i) => i.keyword === "ENV").flatMap((i) => shellWords(i.args).map(keyValue)),
);
const gpuNodeUnit = systemdUnit("deploy/systemd/gpu-node.service");
const tritonUnit = systemdUnit("deploy/systemd/triton.service");
const cloudflaredUnit = systemdUnit("deploy/systemd/cloudflared.service");

/** Every place the deploy files start a gpu-node, with the arguments and environment it gets. */
function invocations(): Invocation[] {
  const out: Invocation[] = [];
  for (const name of ["gpu-node", "gpu-node-onnx"]) {
    const svc = compose.services[name];
    const envPath = posix.join("deploy/gpu-host", `${svc.env_file}.example`);
    out.push({
      where: `compose ${name}`,
      args: svc.command.map(String),
      env: { ...dockerEnv, ...envFile(envPath), ...(svc.environment ?? {}) },
      optionalEnv: envFile(envPath, true),
    });
  }
  const entrypoint: string[] = JSON.parse(dockerOne("ENTRYPOINT"));
  out.push({
    where: "Dockerfile",
    args: mainArgs([...entrypoint, ...JSON.parse(dockerOne("CMD"))], "Dockerfile"),
    env: dockerEnv,
    optionalEnv: {},
  });
  const unitEnv: Record<string, string> = Object.fromEntries(
    (gpuNodeUnit.Service!.Environment ?? []).map(keyValue),
  );
  const systemdEnvFile = "deploy/systemd/gpu-node.env.example";
  out.push({
    where: "systemd gpu-node.service",
    args: mainArgs(shellWords(one(gpuNodeUnit, "Service", "ExecStart")), "ExecStart"),
    env: { ...unitEnv, ...envFile(systemdEnvFile) },
    optionalEnv: { ...unitEnv, ...envFile(systemdEnvFile, true) },
  });
  const c = container("gpu-node");
  const secretEnv = envFile(`${K8S}/secrets/gpu-node.env.example`);
  const k8sEnv: Record<string, string> = {};
  for (const e of c.env as Doc[]) {
    k8sEnv[e.name] = e.valueFrom ? secretEnv[e.valueFrom.secretKeyRef.key]! : String(e.value);
  }
  out.push({
    where: "kubernetes gpu-node",
    args: c.args.map(String),
    env: k8sEnv,
    optionalEnv: {},
  });
  return out;
}
const INVOCATIONS = invocations();
const configOf = (inv: Invocation): Config => parseConfig(inv.args, inv.env);
const byWhere = (where: string): Invocation => INVOCATIONS.find((i) => i.where === where)!;

// --- tests ----------------------------------------------------------------------------------

describe("every deploy file parses", () => {
  const files = filesUnder(DEPLOY);

  it("YAML (all documents) and TOML", () => {
    const yamlFiles = files.filter((f) => /\.ya?ml$/.test(f));
    expect(yamlFiles.length).toBeGreaterThanOrEqual(12);
    for (const f of yamlFiles) {
      const docs = yamlDocs(f);
      expect(docs.length, f).toBeGreaterThan(0);
      for (const d of docs) expect(d, f).toBeTypeOf("object");
    }
    for (const f of files.filter((x) => x.endsWith(".toml"))) parseToml(read(f));
    // The cloudflared config inside the Kubernetes ConfigMap is YAML too.
    parseYaml(k8s("ConfigMap", "cloudflared").data["config.yml"]);
  });

  it("the Dockerfile and the systemd units, line by line", () => {
    expect(docker[0]!.keyword).toBe("FROM");
    for (const f of files.filter((x) => x.endsWith(".service"))) {
      const unit = systemdUnit(f);
      expect(Object.keys(unit), f).toEqual(["Unit", "Service", "Install"]);
      expect(unit.Service!.ExecStart, f).toHaveLength(1);
    }
    expect(() => dockerfile("deploy/gpu-host/gpu-node.env.example")).toThrow(/not an instruction/);
    expect(() => systemdUnit(COMPOSE_PATH)).toThrow(/not Key=value/);
  });

  it("kustomization lists every manifest, and the files it generates from exist as examples", () => {
    const manifests = readdirSync(join(ROOT, K8S)).filter(
      (f) => f.endsWith(".yaml") && f !== "kustomization.yaml",
    );
    expect([...kustomization.resources].sort()).toEqual(manifests.sort());
    // Each generated Secret's source file is committed only as an example.
    for (const gen of kustomization.secretGenerator as Doc[]) {
      for (const f of [...(gen.envs ?? []), ...(gen.files ?? [])]) {
        const path = `${K8S}/${String(f).split("=").pop()}`;
        expect(path.startsWith(`${K8S}/secrets/`), path).toBe(true);
        expect(existsSync(join(ROOT, `${path}.example`)), `${path}.example`).toBe(true);
      }
    }
    // Real secrets never get committed: the folders that hold them ignore everything else.
    expect(read(`${K8S}/secrets/.gitignore`)).toMatch(/^\*$/m);
    expect(read("deploy/gpu-host/.gitignore")).toMatch(/^gpu-node\.env$/m);
    expect(read("deploy/gpu-host/.gitignore")).toMatch(/^cloudflared\/$/m);
  });
});

describe("the gpu-node accepts every flag and variable the deploy files give it", () => {
  it("finds the five places that start a gpu-node", () => {
    expect(INVOCATIONS.map((i) => i.where)).toEqual([
      "compose gpu-node",
      "compose gpu-node-onnx",
      "Dockerfile",
      "systemd gpu-node.service",
      "kubernetes gpu-node",
    ]);
  });

  it.each(INVOCATIONS.map((i) => [i.where, i] as const))("%s", (_where, inv) => {
    expect(() => configOf(inv)).not.toThrow();
    if (Object.keys(inv.optionalEnv).length > 0) {
      expect(() => parseConfig(inv.args, inv.optionalEnv)).not.toThrow();
    }
    for (const name of [...Object.keys(inv.env), ...Object.keys(inv.optionalEnv)]) {
      expect(SETTING_ENVS.has(name) || OTHER_ENVS.has(name), `${inv.where}: ${name}`).toBe(true);
    }
  });

  it("parseConfig is strict: an unknown flag or a bad value throws", () => {
    const inv = byWhere("compose gpu-node");
    expect(() => parseConfig([...inv.args, "--no-such-flag"], inv.env)).toThrow(ConfigError);
    expect(() => parseConfig([...inv.args, "--triton-url", "https://x:1"], inv.env)).toThrow();
  });

  it("listens on all interfaces in containers, on loopback under systemd; a token is set", () => {
    for (const inv of INVOCATIONS) {
      const c = configOf(inv);
      if (inv.where.startsWith("systemd")) expect(c.host, inv.where).toBe("127.0.0.1");
      else expect(c.host, inv.where).toBe("0.0.0.0");
      if (inv.where !== "Dockerfile") expect(c.token, inv.where).not.toBe("");
    }
  });

  it("every place that starts a gpu-node passes its Node flags (NODE_FLAGS)", () => {
    const script: string = JSON.parse(read("package.json")).scripts["gpu-node"];
    const launchers: [string, string[]][] = [
      ["package.json gpu-node", shellWords(script)],
      ["Dockerfile ENTRYPOINT", JSON.parse(dockerOne("ENTRYPOINT"))],
      ["systemd ExecStart", shellWords(one(gpuNodeUnit, "Service", "ExecStart"))],
      [
        "check-image-contents.sh",
        // The image check runs the image's node as $NODE_BIN.
        shellWords(
          /^\s*"\$NODE_BIN" .*gpu-node\/main\.ts.*$/m.exec(
            read("deploy/check-image-contents.sh"),
          )![0],
        ).map((w) => (w === "$NODE_BIN" ? "node" : w)),
      ],
    ];
    for (const [where, words] of launchers) {
      expect(nodeFlagsOf(words, where), where).toEqual([...NODE_FLAGS]);
    }
    // npm start spreads the constant itself.
    expect(read("edge/node/local-stack.ts")).toMatch(
      /\[\s*\.\.\.GPU_NODE_FLAGS,\s*join\(ROOT, "gpu-node\/main\.ts"\)/,
    );
    // Node takes them (a typo would stop every gpu-node at start).
    const res = spawnSync(process.execPath, [...NODE_FLAGS, "-e", ""], { encoding: "utf8" });
    expect([res.status, res.stderr]).toEqual([0, ""]);
  });

  it("GLIBC_TUNABLES match package.json's gpu-node script", () => {
    const script = JSON.parse(read("package.json")).scripts["gpu-node"] as string;
    const tunables = /\$\{GLIBC_TUNABLES:-([^}]+)\}/.exec(script)![1];
    expect(dockerEnv.GLIBC_TUNABLES).toBe(tunables);
    expect(byWhere("systemd gpu-node.service").env.GLIBC_TUNABLES).toBe(tunables);
  });
});

describe("ports, probes and paths agree with the code", () => {
  const defaults = parseConfig([], {});
  const serverTs = read("gpu-node/rpc/server.ts");

  it("the code's defaults: port 50051, metrics 9464, /healthz and /readyz on the main port", () => {
    expect(SETTINGS.port.fallback()).toBe("50051");
    expect(SETTINGS.metricsPort.fallback()).toBe("9464");
    expect(serverTs).toContain('path === "/healthz"');
    expect(serverTs).toContain('path === "/readyz"');
  });

  it("every gpu-node uses the default ports", () => {
    for (const inv of INVOCATIONS) {
      const c = configOf(inv);
      expect([c.port, c.metricsPort], inv.where).toEqual([defaults.port, defaults.metricsPort]);
    }
  });

  it("Dockerfile: EXPOSE, HEALTHCHECK on /readyz through healthcheck.ts, STOPSIGNAL, ENTRYPOINT", () => {
    const c = configOf(byWhere("Dockerfile"));
    expect(dockerOne("EXPOSE").split(/\s+/).map(Number)).toEqual([c.port, c.metricsPort]);
    expect(dockerOne("HEALTHCHECK")).toMatch(
      /CMD \["node", "deploy\/gpu-host\/healthcheck\.ts"\]$/,
    );
    expect(read("deploy/gpu-host/healthcheck.ts")).toContain('default: "/readyz"');
    // The health check finds the port as the gpu-node does: parseConfig over the same environment.
    expect(read("deploy/gpu-host/healthcheck.ts")).toContain("parseConfig([], process.env)");
    expect(dockerOne("STOPSIGNAL")).toBe("SIGTERM");
    expect(JSON.parse(dockerOne("ENTRYPOINT"))).toEqual([
      "node",
      ...NODE_FLAGS,
      "gpu-node/main.ts",
    ]);
    expect(dockerOne("FROM")).toBe("node:24-bookworm-slim");
    const user = dockerOne("USER");
    expect(["root", "0"]).not.toContain(user);
    expect(docker.filter((i) => i.keyword === "ARG").map((i) => i.args)).toContain(
      "ONNXRUNTIME_NODE_INSTALL=skip",
    );
    const run = docker.filter((i) => i.keyword === "RUN").map((i) => i.args);
    expect(run.some((r) => /npm ci --omit=dev/.test(r))).toBe(true);
    expect(dockerEnv.GPU_NODE_CACHE_DIR).toBeDefined();
    expect(
      run.some((r) => r.includes(`chown ${user}`) && r.includes(dockerEnv.GPU_NODE_CACHE_DIR!)),
    ).toBe(true);
  });

  it("the image holds every file the gpu-node imports, and only production packages", () => {
    const copies = docker
      .filter((i) => i.keyword === "COPY" && !i.args.startsWith("--"))
      .map((i) => shellWords(i.args));
    for (const words of copies) expect(words[0], "COPY mirrors the repository").toBe(words[1]);
    const sources = copies.map((w) => w[0]!);
    const allow = read(".dockerignore")
      .split("\n")
      .filter((l) => l.startsWith("!"))
      .map((l) => l.slice(1));
    expect(sources.sort()).toEqual([...allow].sort());
    const copied = (path: string) => sources.some((s) => path === s || path.startsWith(`${s}/`));
    const pkg = JSON.parse(read("package.json"));
    const runtime = [...filesUnder(join(ROOT, "gpu-node")), ...filesUnder(join(ROOT, "imaging"))]
      .concat("deploy/gpu-host/healthcheck.ts")
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.includes("/testing/"));
    for (const file of runtime) {
      const text = readFileSync(join(ROOT, file), "utf8");
      const imports = [
        ...text.matchAll(/^(?:import|export)[^"]*?from "([^"]+)"/gm),
        ...text.matchAll(/\bimport\("([^"]+)"\)/g),
      ];
      for (const m of imports) {
        const spec = m[1]!;
        if (spec.startsWith(".")) {
          const target = relative(ROOT, resolve(ROOT, dirname(file), spec));
          expect(copied(target), `${file} imports ${spec}, which the image lacks`).toBe(true);
        } else if (!spec.startsWith("node:")) {
          const name = spec.startsWith("@")
            ? spec.split("/").slice(0, 2).join("/")
            : spec.split("/")[0]!;
          expect(
            pkg.dependencies[name],
            `${file} imports ${name}: not a production dependency`,
          ).toBeDefined();
        }
      }
    }
  });

  it("compose: loopback ports, health checks, Triton healthy before the gpu-node", () => {
    const triton = compose.services.triton;
    const httpPort = Number(flagValue(triton.command, "--http-port"));
    const grpcPort = Number(flagValue(triton.command, "--grpc-port"));
    const tritonMetrics = Number(flagValue(triton.command, "--metrics-port"));
    expect([httpPort, grpcPort, tritonMetrics]).toEqual([8000, 8001, 8002]);
    // Triton's gRPC and metrics are published on the host's loopback only; HTTP not at all.
    expect(triton.ports).toEqual([
      `127.0.0.1:${grpcPort}:${grpcPort}`,
      `127.0.0.1:${tritonMetrics}:${tritonMetrics}`,
    ]);
    expect(triton.healthcheck.test.join(" ")).toContain(`/dev/tcp/127.0.0.1/${httpPort}`);
    expect(triton.healthcheck.test.join(" ")).toContain("GET /v2/health/ready");
    for (const name of ["gpu-node", "gpu-node-onnx"]) {
      const svc = compose.services[name];
      const c = configOf(byWhere(`compose ${name}`));
      expect(svc.ports, name).toEqual([
        `127.0.0.1:${c.port}:${c.port}`,
        `127.0.0.1:${c.metricsPort}:${c.metricsPort}`,
      ]);
      expect(svc.healthcheck.test, name).toEqual(["CMD", "node", "deploy/gpu-host/healthcheck.ts"]);
      // The health check reads the environment only: the port in `command` must be its default.
      expect(parseConfig([], byWhere(`compose ${name}`).env).port).toBe(c.port);
      expect(svc.build.dockerfile).toBe("deploy/gpu-host/Dockerfile");
      expect(resolve(ROOT, "deploy/gpu-host", svc.build.context)).toBe(ROOT);
    }
    const gpuNode = compose.services["gpu-node"];
    expect(gpuNode.depends_on.triton.condition).toBe("service_healthy");
    const c = configOf(byWhere("compose gpu-node"));
    expect(c.tritonUrl).toBe(`triton:${grpcPort}`);
    // Direct TLS maps 443 to the gpu-node's port.
    expect(composeTls.services["gpu-node"].ports).toEqual([`443:${c.port}`]);
  });

  it("compose: TLS files, when enabled, lie in the mounted folder", () => {
    for (const name of ["gpu-node", "gpu-node-onnx"]) {
      const inv = byWhere(`compose ${name}`);
      const c = parseConfig(inv.args, inv.optionalEnv);
      expect(c.tlsCert, name).not.toBe("");
      const mount = (compose.services[name].volumes as string[])
        .map((v) => v.split(":"))
        .find(([src]) => src === "./tls")!;
      expect(mount[2]).toBe("ro");
      expect(dirname(c.tlsCert)).toBe(mount[1]);
      expect(dirname(c.tlsKey)).toBe(mount[1]);
    }
  });

  it("Kubernetes: container ports, probes on the gpu-node's port, Service h2c, annotations", () => {
    const c = configOf(byWhere("kubernetes gpu-node"));
    const gn = container("gpu-node");
    const portOf = (ctr: Doc, name: string) =>
      ctr.ports.find((p: Doc) => p.name === name).containerPort as number;
    expect(portOf(gn, "grpc")).toBe(c.port);
    expect(portOf(gn, "metrics")).toBe(c.metricsPort);
    expect(gn.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "grpc" });
    expect(gn.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "grpc" });
    expect(gn.startupProbe.httpGet.port).toBe("grpc");
    expect(["/healthz", "/readyz"]).toContain(gn.startupProbe.httpGet.path);
    // The startup probe allows as long as the gpu-node waits for Triton.
    expect(
      gn.startupProbe.periodSeconds * gn.startupProbe.failureThreshold * 1000,
    ).toBeGreaterThanOrEqual(c.tritonStartTimeoutMs);
    const annotations = deployment.spec.template.metadata.annotations;
    expect(Number(annotations["prometheus.io/port"])).toBe(c.metricsPort);
    expect(service.spec.type).toBe("ClusterIP");
    const svcPort = (name: string) => service.spec.ports.find((p: Doc) => p.name === name);
    expect(svcPort("grpc").appProtocol).toBe("kubernetes.io/h2c");
    expect(svcPort("grpc").port).toBe(c.port);
    const containerPorts = podSpec.containers.flatMap((ctr: Doc) =>
      ctr.ports.map((p: Doc) => p.name),
    );
    for (const p of service.spec.ports) expect(containerPorts, p.name).toContain(p.targetPort);
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(k8s("PodDisruptionBudget", "gpu-node").spec.selector.matchLabels).toEqual(
      deployment.spec.selector.matchLabels,
    );
    // Triton owns the GPU; the gpu-node talks to it over the pod's localhost.
    const triton = container("triton");
    expect(triton.resources.limits["nvidia.com/gpu"]).toBe(1);
    expect(gn.resources.limits?.["nvidia.com/gpu"]).toBeUndefined();
    expect(c.tritonUrl).toBe(`127.0.0.1:${portOf(triton, "triton-grpc")}`);
    expect(Number(flagValue(triton.args, "--grpc-port"))).toBe(portOf(triton, "triton-grpc"));
    expect(Number(flagValue(triton.args, "--metrics-port"))).toBe(portOf(triton, "triton-metrics"));
    expect(Number(flagValue(triton.args, "--http-port"))).toBe(portOf(triton, "triton-http"));
    expect(triton.readinessProbe.httpGet.path).toBe("/v2/health/ready");
    // The token comes from the Secret the kustomization generates.
    const tokenRef = gn.env.find((e: Doc) => e.name === SETTINGS.token.env).valueFrom.secretKeyRef;
    const gen = kustomization.secretGenerator.find((g: Doc) => g.name === tokenRef.name);
    expect(gen).toBeDefined();
    expect(Object.keys(envFile(`${K8S}/${gen.envs[0]}.example`))).toContain(tokenRef.key);
  });

  it("Prometheus scrapes the gpu-node's metrics port and Triton's", () => {
    const monitor = k8s("ServiceMonitor", "gpu-node");
    const scraped = monitor.spec.endpoints.map((e: Doc) => {
      const sp = service.spec.ports.find((p: Doc) => p.name === e.port);
      return podSpec.containers
        .flatMap((ctr: Doc) => ctr.ports)
        .find((p: Doc) => p.name === sp.targetPort).containerPort;
    });
    const c = configOf(byWhere("kubernetes gpu-node"));
    expect(scraped.sort()).toEqual(
      [c.metricsPort, Number(flagValue(container("triton").args, "--metrics-port"))].sort(),
    );
    expect(monitor.spec.selector.matchLabels).toEqual(service.metadata.labels);
  });

  it("systemd: loopback, Triton's ports on loopback, reload by SIGHUP", () => {
    const c = configOf(byWhere("systemd gpu-node.service"));
    const tritonArgs = shellWords(one(tritonUnit, "Service", "ExecStart"));
    expect(c.tritonUrl).toBe(`127.0.0.1:${flagValue(tritonArgs, "--grpc-port")}`);
    const published = tritonArgs.filter((_, i) => tritonArgs[i - 1] === "-p");
    expect(published.length).toBeGreaterThan(0);
    for (const p of published) expect(p).toMatch(/^127\.0\.0\.1:/);
    expect(published).toContain(`127.0.0.1:${flagValue(tritonArgs, "--grpc-port")}:8001`);
    expect(one(gpuNodeUnit, "Service", "ExecReload")).toBe("/bin/kill -HUP $MAINPID");
    expect(read("gpu-node/main.ts")).toMatch(/process\.on\("SIGHUP"/);
    expect(one(gpuNodeUnit, "Service", "KillSignal")).toBe("SIGTERM");
    for (const unit of [gpuNodeUnit, tritonUnit, cloudflaredUnit]) {
      expect(one(unit, "Service", "Restart")).toBe("on-failure");
    }
    expect(one(gpuNodeUnit, "Unit", "After")).toContain("triton.service");
  });
});

describe("shared memory between the gpu-node and Triton", () => {
  const shmTs = read("gpu-node/backends/triton/shm.ts");

  it("the code writes its regions under /dev/shm", () => {
    expect(shmTs).toContain("/dev/shm");
  });

  it("Triton allows client shared memory wherever a gpu-node uses --triton-shm", () => {
    const tritons: [string, string[]][] = [
      ["compose", compose.services.triton.command],
      ["kubernetes", [...container("triton").command, ...container("triton").args]],
      ["systemd", shellWords(one(tritonUnit, "Service", "ExecStart"))],
    ];
    const shmUsers = INVOCATIONS.filter((i) => configOf(i).tritonShm).map((i) => i.where);
    expect(shmUsers).toEqual([
      "compose gpu-node",
      "systemd gpu-node.service",
      "kubernetes gpu-node",
    ]);
    for (const [where, args] of tritons) {
      expect(args, where).toContain("tritonserver");
      expect(args, where).toContain("--allow-client-shm=true");
      expect(flagValue(args, "--model-repository"), where).toBe("/models");
    }
  });

  it("compose: the gpu-node joins Triton's IPC namespace", () => {
    expect(compose.services.triton.ipc).toBe("shareable");
    expect(compose.services["gpu-node"].ipc).toBe("service:triton");
    expect(compose.services.triton.volumes).toContain(
      "../../gpu-node/model/triton/model_repository:/models:ro",
    );
  });

  it("Kubernetes: one memory-backed emptyDir at /dev/shm in both containers", () => {
    const shm = podSpec.volumes.filter((v: Doc) => v.emptyDir?.medium === "Memory");
    expect(shm).toHaveLength(1);
    for (const name of ["triton", "gpu-node"]) {
      const mounts = container(name).volumeMounts.filter((m: Doc) => m.mountPath === "/dev/shm");
      expect(
        mounts.map((m: Doc) => m.name),
        name,
      ).toEqual([shm[0].name]);
    }
    const models = container("triton").volumeMounts.find((m: Doc) => m.mountPath === "/models");
    expect(models.readOnly).toBe(true);
  });

  it("systemd: Triton shares the host's IPC; the gpu-node's hardening leaves /dev/shm alone", () => {
    expect(shellWords(one(tritonUnit, "Service", "ExecStart"))).toContain("--ipc=host");
    const svc = gpuNodeUnit.Service!;
    expect(one(gpuNodeUnit, "Service", "RemoveIPC")).toBe("no");
    expect(one(gpuNodeUnit, "Service", "ReadWritePaths").split(" ")).toContain("/dev/shm");
    for (const key of ["PrivateDevices", "PrivateIPC", "MemoryDenyWriteExecute"]) {
      expect(svc[key] ?? ["no"], key).toEqual(["no"]);
    }
  });
});

describe("stopping: grace periods outlast the drain", () => {
  it("compose: stop_grace_period > the gpu-node's drain timeout", () => {
    for (const name of ["gpu-node", "gpu-node-onnx"]) {
      const drain = configOf(byWhere(`compose ${name}`)).drainTimeoutMs / 1000;
      expect(drain, name).toBeGreaterThan(0);
      expect(seconds(compose.services[name].stop_grace_period), name).toBeGreaterThan(drain + 5);
    }
  });

  it("Kubernetes: terminationGracePeriodSeconds > preStop + drain; Triton outlives the drain", () => {
    const drain = configOf(byWhere("kubernetes gpu-node")).drainTimeoutMs / 1000;
    const sleepOf = (name: string) => {
      const cmd = container(name).lifecycle.preStop.exec.command as string[];
      expect(cmd[0]).toBe("sleep");
      return Number(cmd[1]);
    };
    const gpuNodePause = sleepOf("gpu-node");
    expect(gpuNodePause).toBeGreaterThan(0);
    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThan(gpuNodePause + drain);
    expect(sleepOf("triton")).toBeGreaterThanOrEqual(gpuNodePause + drain);
    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThan(sleepOf("triton"));
  });

  it("systemd: TimeoutStopSec > drain; Triton's docker stop fits its own limit", () => {
    const drain = configOf(byWhere("systemd gpu-node.service")).drainTimeoutMs / 1000;
    expect(seconds(one(gpuNodeUnit, "Service", "TimeoutStopSec"))).toBeGreaterThan(drain + 5);
    const stop = shellWords(one(tritonUnit, "Service", "ExecStop"));
    expect(Number(flagValue(stop, "--time"))).toBeLessThan(
      seconds(one(tritonUnit, "Service", "TimeoutStopSec")),
    );
    expect(one(tritonUnit, "Unit", "Before")).toContain("gpu-node.service");
  });

  it("the drain default these rely on is the code's", () => {
    expect(SETTINGS.drainTimeoutMs.fallback()).toBe("10000");
    for (const inv of INVOCATIONS) {
      expect(configOf(inv).drainTimeoutMs, inv.where).toBe(10_000);
    }
  });
});

describe("images, model, autoscaling, tunnel", () => {
  it("Triton and cloudflared images are pinned, to the same tags everywhere", () => {
    const tritonImages = [
      compose.services.triton.image,
      container("triton").image,
      shellWords(one(tritonUnit, "Service", "ExecStart")).find((w) => w.includes("tritonserver:")),
    ];
    expect(new Set(tritonImages).size).toBe(1);
    expect(tritonImages[0]).toMatch(/^nvcr\.io\/nvidia\/tritonserver:\d{2}\.\d{2}-py3$/);
    const cloudflaredImages = [
      compose.services.cloudflared.image,
      k8s("Deployment", "cloudflared").spec.template.spec.containers[0].image,
    ];
    expect(new Set(cloudflaredImages).size).toBe(1);
    expect(cloudflaredImages[0]).toMatch(/^cloudflare\/cloudflared:\d{4}\.\d{1,2}\.\d+$/);
  });

  it("GPUs are reserved for Triton and the ONNX variant; graphics for Vulkan", () => {
    for (const name of ["triton", "gpu-node-onnx"]) {
      const devices = compose.services[name].deploy.resources.reservations.devices;
      expect(devices, name).toContainEqual(
        expect.objectContaining({ driver: "nvidia", capabilities: ["gpu"] }),
      );
    }
    const onnx = compose.services["gpu-node-onnx"];
    expect(onnx.profiles).toEqual(["onnx"]);
    expect(configOf(byWhere("compose gpu-node-onnx")).backend).toBe("onnxruntime");
    expect(onnx.environment.NVIDIA_DRIVER_CAPABILITIES.split(",")).toContain("graphics");
    expect(onnx.build.args.WITH_VULKAN).toBe("true");
    expect(docker.filter((i) => i.keyword === "ARG").map((i) => i.args)).toContain(
      "WITH_VULKAN=false",
    );
  });

  it("the Triton model name is a model of gpu-node/model/triton/model_repository", () => {
    const repo = "gpu-node/model/triton/model_repository";
    const models = readdirSync(join(ROOT, repo)).filter((m) =>
      existsSync(join(ROOT, repo, m, "config.pbtxt")),
    );
    for (const m of models) expect(read(`${repo}/${m}/config.pbtxt`)).toContain(`name: "${m}"`);
    for (const inv of INVOCATIONS) {
      const c = configOf(inv);
      if (c.backend === "triton") expect(models, inv.where).toContain(c.tritonModel);
      if (c.backend === "onnxruntime" && inv.where.startsWith("compose")) {
        // The ONNX variant runs the same exported file, from the repository mounted at /models.
        const m = /^\/models\/([^/]+)\/1\/model\.onnx$/.exec(c.model);
        expect(m, c.model).not.toBeNull();
        expect(models).toContain(m![1]);
      }
    }
  });

  it("KEDA scales on a metric the gpu-node exports", () => {
    const metricsTs = read("gpu-node/observability/metrics.ts");
    const scaled = k8s("ScaledObject", "gpu-node");
    expect(scaled.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: "gpu-node" });
    const trigger = scaled.spec.triggers[0];
    expect(trigger.type).toBe("prometheus");
    const names = [...String(trigger.metadata.query).matchAll(/\b(gpu_node_[a-z_]+)\b/g)].map(
      (m) => m[1]!,
    );
    expect(names).toEqual(["gpu_node_queued_images"]);
    for (const n of names) expect(metricsTs).toContain(`name: "${n}"`);
    expect(String(trigger.metadata.query)).toContain(`namespace="${kustomization.namespace}"`);
    expect(Number(trigger.metadata.threshold)).toBeGreaterThan(0);
  });

  it("cloudflared: named tunnel, h2c origin on the gpu-node's port, a 404 catch-all", () => {
    const k8sConfig = parseYaml(k8s("ConfigMap", "cloudflared").data["config.yml"]);
    const port = configOf(byWhere("systemd gpu-node.service")).port;
    const svcPort = service.spec.ports.find((p: Doc) => p.name === "grpc").port;
    const origins = [
      [cloudflaredTemplate, `http://localhost:${port}`],
      [
        k8sConfig,
        `http://${service.metadata.name}.${kustomization.namespace}.svc.cluster.local:${svcPort}`,
      ],
    ] as const;
    for (const [config, origin] of origins) {
      expect(config.tunnel).toBeTypeOf("string");
      expect(config.originRequest.http2Origin).toBe(true);
      const rules = config.ingress as Doc[];
      expect(rules.at(-1)).toEqual({ service: "http_status:404" });
      expect(rules.slice(0, -1).length).toBeGreaterThan(0);
      for (const r of rules.slice(0, -1)) {
        expect(r.hostname).toBeTypeOf("string");
        expect(r.service).toBe(origin);
      }
    }
    // Compose: host network, so localhost:50051 is the gpu-node's loopback-published port.
    const cf = compose.services.cloudflared;
    expect(cf.network_mode).toBe("host");
    expect(compose.services["gpu-node"].ports).toContain(`127.0.0.1:${port}:${port}`);
    const [, mountTarget] = (cf.volumes[0] as string).split(":");
    expect(dirname(cloudflaredTemplate["credentials-file"])).toBe(mountTarget);
    expect(flagValue(cf.command, "--config")).toBe(`${mountTarget}/config.yml`);
    expect(shellWords(one(cloudflaredUnit, "Service", "ExecStart"))).toContain(
      "/etc/cloudflared/config.yml",
    );
    // Kubernetes: the credentials file is the generated Secret's key, where it is mounted.
    const cfPod = k8s("Deployment", "cloudflared").spec.template.spec;
    const creds = cfPod.volumes.find((v: Doc) => v.secret);
    const gen = kustomization.secretGenerator.find((g: Doc) => g.name === creds.secret.secretName);
    const key = String(gen.files[0]).split("=")[0];
    const mount = cfPod.containers[0].volumeMounts.find((m: Doc) => m.name === creds.name);
    expect(k8sConfig["credentials-file"]).toBe(`${mount.mountPath}/${key}`);
    const cfgMount = cfPod.containers[0].volumeMounts.find((m: Doc) => m.name === "config");
    expect(flagValue(cfPod.containers[0].args, "--config")).toBe(
      `${cfgMount.mountPath}/config.yml`,
    );
  });
});

// Opt-in (it installs production dependencies from the npm registry): the image's files run.
describe.runIf(process.env.DEPLOY_IMAGE_CHECK === "1")("deploy/check-image-contents.sh", () => {
  it("starts and serves the gpu-node with production dependencies only", () => {
    execFileSync("bash", ["deploy/check-image-contents.sh"], {
      cwd: ROOT,
      stdio: "inherit",
      timeout: 600_000,
    });
  }, 600_000);
});
