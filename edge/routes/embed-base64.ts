/** POST /embed/base64, the drop-in for the seed's PyTorch FastAPI endpoint: `{"images": [base64 or data URI, ...]}` in; `{"embeddings", "model_info", "count"}` out, the same JSON. */
import { edgeConfig } from "../config.ts";
import { parseBase64Upload } from "../upload.ts";
import type { Ctx, Embed } from "./context.ts";

export function embedBase64(embed: Embed) {
  return async function embedBase64Handler(c: Ctx) {
    const req = await parseBase64Upload(c.req.raw, edgeConfig(c.env));
    // The seed's answer carries no hashes: none are computed.
    const { config, result } = await embed(c, req.uploads, { hashOriginals: false });
    return c.json({
      embeddings: result.embedded.vectors.map((v) => Array.from(v)),
      model_info: {
        model_name: req.modelName ?? config.modelName,
        pretrained: req.pretrained ?? null,
        embedding_dim: result.embedded.dimension,
        served_model: result.embedded.model,
        model_version: result.embedded.modelVersion,
      },
      count: result.embedded.vectors.length,
    });
  };
}
