// Reference renderer for the Go chat-template tests (chat_jinja_test.go):
// renders chat templates with Hugging Face's own JS Jinja (@huggingface/jinja)
// and, optionally, encodes the result with @huggingface/tokenizers.
//
//   node chat_ref.mjs NPM_DIR < cases.json > results.json
//
// NPM_DIR holds node_modules (build/npm, installed by `make refs`). Input: a
// JSON array of {template, vars, tokenizer_dir?}; vars are the template
// variables (messages, add_generation_prompt, bos_token, ...). Output: a JSON
// array of {text} or {error}, with ids (encoded without adding special
// tokens, as apply_chat_template does) when tokenizer_dir is given.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const npm = process.argv[2];
const mod = (p) => import(pathToFileURL(join(npm, "node_modules", p)).href);
const { Template } = await mod("@huggingface/jinja/dist/index.js");
const { Tokenizer } = await mod("@huggingface/tokenizers/dist/tokenizers.mjs");

const cases = JSON.parse(readFileSync(0, "utf8"));
const toks = new Map();
const out = [];
for (const c of cases) {
  try {
    const text = new Template(c.template).render(c.vars);
    const r = { text };
    if (c.tokenizer_dir) {
      if (!toks.has(c.tokenizer_dir)) {
        const tj = JSON.parse(readFileSync(join(c.tokenizer_dir, "tokenizer.json"), "utf8"));
        const cfg = JSON.parse(readFileSync(join(c.tokenizer_dir, "tokenizer_config.json"), "utf8"));
        toks.set(c.tokenizer_dir, new Tokenizer(tj, cfg));
      }
      r.ids = toks.get(c.tokenizer_dir).encode(text, { add_special_tokens: false }).ids;
    }
    out.push(r);
  } catch (e) {
    out.push({ error: String(e && e.message ? e.message : e) });
  }
}
process.stdout.write(JSON.stringify(out));
