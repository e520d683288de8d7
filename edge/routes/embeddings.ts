/** POST /v1/embeddings: one raw image body or multipart `image` parts in; an OpenAI-style embeddings list (float or base64 vectors, per image its sha256 and sizes) out. */
import { edgeConfig } from "../config.ts";
import { parseEmbeddingsUpload, toBase64 } from "../upload.ts";
import type { Ctx, Embed } from "./context.ts";

export function embeddings(embed: Embed) {
  return async function embeddingsHandler(c: Ctx) {
    const { uploads, encodingFormat } = await parseEmbeddingsUpload(c.req.raw, edgeConfig(c.env));
    const { config, result } = await embed(c, uploads, { hashOriginals: true });
    return c.json({
      object: "list",
      data: result.embedded.vectors.map((v, index) => ({
        object: "embedding",
        index,
        embedding:
          encodingFormat === "base64"
            ? toBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))
            : Array.from(v),
        ...result.images[index],
      })),
      model: config.modelName,
      model_version: result.embedded.modelVersion,
      usage: { images: uploads.length, prompt_tokens: 0, total_tokens: 0 },
    });
  };
}
