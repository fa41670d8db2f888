// Reference ids from Hugging Face's tokenizer logic for JavaScript (@lenml/tokenizers, a fork of transformers.js'
// tokenizers), run with node. Used by tests/tokenizer/test_hf_tokenizer.cpp through tests/tokenizer/CMakeLists.txt.
//
// usage: node hf_reference.js <@lenml/tokenizers dist/main.js> <out dir> <speed text> <name>=<folder>... -- <text>...
//   Writes <out dir>/hard/*.txt (hard strings as raw bytes, some of them invalid UTF-8) and
//   <out dir>/reference.json: { texts: [paths], tokenizers: { name: { folder, bos, eos, ids: [[with specials],
//   [without]] per text, speed: { bytes, tokens, seconds, cpu_seconds (the node process's) } } } }.
// Text files are read as Node reads them (Buffer.toString("utf8"): WHATWG UTF-8 decoding, each maximal invalid
// subpart -> U+FFFD, a leading BOM kept).
"use strict";
const fs = require("fs");
const path = require("path");

const [lib, outDir, speedText, ...rest] = process.argv.slice(2);
const sep = rest.indexOf("--");
const specs = rest.slice(0, sep), texts = rest.slice(sep + 1);
const { TokenizerLoader } = require(lib);

// Hard strings: contractions in any case, digit runs, CJK, emoji and other 4-byte UTF-8, white space runs, trailing
// spaces, tabs, CR LF, control characters, invalid UTF-8, special-token strings inside text.
const hard = {
  contractions: "I'm, you're, he's, we've, they'll, I'd; I'M YOU'RE HE'S WE'VE THEY'LL I'D; don't DON'T Don'T o'clock 'tis 'S",
  digits: "1 12 123 1234 12345 123456 1234567 3.14159 2,718,281 007 0x1F 1e-9 ٣٤٥ ①②③ ½",
  cjk: "日本語のテキストと中文文本，한국어 텍스트。漢字かなカナ混じり文。",
  emoji: "emoji 😀👍🏽👨‍👩‍👧‍👦 🇺🇸 math 𝔸𝕓𝒞 old 𐍈 music 𝄞 done",
  spaces: "a  b   c    d\u00a0e\u2003f\u3000g     ",
  trailing: "trailing spaces   \n\n  leading and trailing  \n   ",
  tabs: "\tcol1\tcol2\t\tcol3\t\n\t\tindented\t \t",
  crlf: "line one\r\nline two\r\n\r\nline four\rcarriage\n\r\n",
  controls: "bell\u0007 null\u0000 esc\u001b[0m del\u007f c1\u0085\u009f zwj\u200d zwsp\u200b bom\ufeff end",
  specials: "<s>Hello</s> <|begin_of_text|>x<|end_of_text|> <|im_start|>user\n<|im_end|><bos><eos> <pad> <unk>< s>",
  mixed_case: "HELLO World hELLo WoRlD McDonald's O'NEILL iPhone eBay camelCaseWord snake_case_word",
  punctuation: "Wait... what?! (yes) [no] {maybe} «quote» “smart” ‘single’ — – - ... ,,, !!! ??? ;;",
  accents: "café naïve résumé Zürich e\u0301 A\u030a \u1e9b\u0323 ﬁ ﬂ Å Ω K",
  empty: "",
  one_space: " ",
  newlines: "\n\n\n",
  long_word: "Pneumonoultramicroscopicsilicovolcanoconiosis".repeat(12),
  // Where regex engines may disagree on \s and case folding: NEL, BOM, line/paragraph separators, NBSP, U+180E,
  // zero-width space, the long s after an apostrophe.
  unicode_spaces: "a\u0085 b\u0085\u0085c x\ufeff \ufeff\n\ufeffy a\u2028b \u2029 c a\u00a0\u00a0 b a\u180e b a\u200b\u200b b it'\u017f THE'\u017f",
};
const hardBytes = {
  invalid_utf8: Buffer.from([0x61, 0xe2, 0x82, 0x20, 0x62, 0xed, 0xa0, 0x80, 0x63, 0xc0, 0xaf, 0xff, 0x80, 0x80, 0x64,
                             0xf0, 0x9f, 0x98, 0x20, 0xf4, 0x90, 0x80, 0x80, 0x65, 0xf0, 0x9f, 0x98]),
};
fs.mkdirSync(path.join(outDir, "hard"), { recursive: true });
const files = [];
for (const [name, s] of Object.entries(hard)) {
  const f = path.join(outDir, "hard", name + ".txt");
  fs.writeFileSync(f, Buffer.from(s, "utf8"));
  files.push(f);
}
for (const [name, b] of Object.entries(hardBytes)) {
  const f = path.join(outDir, "hard", name + ".txt");
  fs.writeFileSync(f, b);
  files.push(f);
}
files.push(...texts);

const out = { texts: files, speed_text: speedText, tokenizers: {} };
for (const spec of specs) {
  const [name, folder] = spec.split("=");
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(folder, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(folder, "tokenizer_config.json"), "utf8")),
  });
  const entry = { folder, ids: [] };
  for (const f of files) {
    const text = fs.readFileSync(f).toString("utf8");
    entry.ids.push([tok.encode(text), tok.encode(text, { add_special_tokens: false })]);
  }
  const speed = fs.readFileSync(speedText).toString("utf8");
  tok.encode(speed);  // warm-up (the BPE cache is cleared below)
  if (tok.model.clear_cache) tok.model.clear_cache();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const n = tok.encode(speed).length;
  const t1 = process.hrtime.bigint();
  const c1 = process.cpuUsage(c0);
  entry.speed = { bytes: fs.statSync(speedText).size, tokens: n, seconds: Number(t1 - t0) / 1e9,
                  cpu_seconds: (c1.user + c1.system) / 1e6 };
  out.tokenizers[name] = entry;
  console.log(`${name}: ${files.length} texts, ${entry.speed.bytes} bytes in ${entry.speed.seconds.toFixed(3)} s`);
}
fs.writeFileSync(path.join(outDir, "reference.json"), JSON.stringify(out));
