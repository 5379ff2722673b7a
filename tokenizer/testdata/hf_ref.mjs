// Reference ids from Hugging Face's tokenizers.js (@huggingface/tokenizers).
// usage: node hf_ref.mjs NPM_DIR TOKENIZER_JSON CONFIG_JSON CORPUS_JSON [bench SECONDS]
// Prints a JSON array: for each corpus string, encode(text).ids (special
// tokens added, the library's default), then the ids with
// add_special_tokens: false. With "bench" it prints {"mbps": ...}: encoding
// throughput over the corpus strings joined by newlines.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [npmDir, tokPath, cfgPath, corpusPath, mode, secs] = process.argv.slice(2);
const { Tokenizer } = await import(pathToFileURL(join(npmDir, "node_modules/@huggingface/tokenizers/dist/tokenizers.mjs")).href);
const tok = new Tokenizer(JSON.parse(readFileSync(tokPath, "utf8")), JSON.parse(readFileSync(cfgPath, "utf8")));
const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));
if (mode === "bench") {
  const text = corpus.join("\n");
  const bytes = Buffer.byteLength(text, "utf8");
  tok.encode(text, { add_special_tokens: false });
  const limit = Number(secs || 2) * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < limit) {
    // a fresh string each time, so that the BPE cache does not see repeats of the whole text
    for (const line of corpus) tok.encode(line + " " + n, { add_special_tokens: false });
    n++;
  }
  const dt = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ mbps: (bytes * n) / dt / 1e6 }));
} else {
  const out = corpus.map((t) => [tok.encode(t).ids, tok.encode(t, { add_special_tokens: false }).ids]);
  console.log(JSON.stringify(out));
}
