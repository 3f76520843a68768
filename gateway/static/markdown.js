// A small markdown renderer for the demo page, safe for model output: it builds DOM nodes and puts
// every piece of text in with text nodes, never innerHTML, so `<img onerror=...>` or `<script>` in an
// answer shows as the characters it is. Links get an href only for http(s) URLs (and open with
// rel="noopener noreferrer"); a `javascript:` or `data:` link stays plain text.
//
// The subset: paragraphs, line breaks, headings, **bold**, *italic*, `inline code`, fenced code
// blocks, bullet and numbered lists (one level), horizontal rules, [links](https://...) and bare
// http(s) URLs. It renders text that is still streaming: an open fence runs to the end, an unclosed
// ** stays literal until it closes.
//
//   import { renderMarkdown } from "/static/markdown.js";
//   bubble.replaceChildren(renderMarkdown(answerText));

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
// `code` | **bold** | __bold__ | *italic* | _italic_ | [label](url) | a bare http(s) URL
const INLINE = new RegExp(
  [
    /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/.source,
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,
    /\b__(?=\S)([\s\S]*?\S)__\b/.source,
    /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source,
    /\b_(?=[^\s_])([\s\S]*?[^\s_])_\b/.source,
    /\[([^\]\n]+)\]\(\s*<?([^\s<>)]+)>?\s*\)/.source,
    /(https?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]])/.source,
  ].join("|"),
  "g",
);

// The URL as an href if it is http(s), else null.
export function safeUrl(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function kind(line) {
  if (FENCE.test(line)) return "fence";
  if (HEADING.test(line)) return "heading";
  if (RULE.test(line)) return "rule";
  if (BULLET.test(line)) return "ul";
  if (NUMBERED.test(line)) return "ol";
  return line.trim() ? "text" : "blank";
}

export function renderMarkdown(text, doc = document) {
  const el = (tag) => doc.createElement(tag);
  const fragment = doc.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const type = kind(line);
    if (type === "blank") {
      i += 1;
    } else if (type === "fence") {
      const [, marker, lang] = FENCE.exec(line);
      const closing = new RegExp(`^ {0,3}${marker[0] === "`" ? "`" : "~"}{${marker.length},}\\s*$`);
      const body = [];
      for (i += 1; i < lines.length && !closing.test(lines[i]); i += 1) body.push(lines[i]);
      i += 1; // past the closing fence (or the end, while the block still streams)
      const pre = el("pre");
      const code = el("code");
      code.textContent = body.join("\n");
      if (lang) code.dataset.lang = lang;
      pre.append(code);
      fragment.append(pre);
    } else if (type === "heading") {
      const [, hashes, content] = HEADING.exec(line);
      const heading = el(`h${Math.min(6, hashes.length + 2)}`); // under the page's own headings
      appendInline(heading, content, doc);
      fragment.append(heading);
      i += 1;
    } else if (type === "rule") {
      fragment.append(el("hr"));
      i += 1;
    } else if (type === "ul" || type === "ol") {
      const list = el(type);
      const pattern = type === "ul" ? BULLET : NUMBERED;
      if (type === "ol" && Number(NUMBERED.exec(line)[1]) !== 1) list.start = Number(NUMBERED.exec(line)[1]);
      while (i < lines.length) {
        const item = pattern.exec(lines[i]);
        if (!item) break;
        const content = [item[item.length - 1]];
        // Lines indented under the item, or plain lines right after it, continue it.
        for (i += 1; i < lines.length && kind(lines[i]) === "text"; i += 1) content.push(lines[i].trim());
        const li = el("li");
        appendInline(li, content.join("\n"), doc);
        list.append(li);
        // A blank line between two items of the same list keeps the list going.
        let next = i;
        while (next < lines.length && kind(lines[next]) === "blank") next += 1;
        if (next < lines.length && kind(lines[next]) === type) i = next;
      }
      fragment.append(list);
    } else {
      const content = [];
      for (; i < lines.length && kind(lines[i]) === "text"; i += 1) content.push(lines[i]);
      const paragraph = el("p");
      appendInline(paragraph, content.join("\n"), doc);
      fragment.append(paragraph);
    }
  }
  return fragment;
}

// Text with line breaks as <br>.
function appendText(parent, text, doc) {
  text.split("\n").forEach((part, index) => {
    if (index) parent.append(doc.createElement("br"));
    if (part) parent.append(doc.createTextNode(part));
  });
}

function appendInline(parent, text, doc, links = true) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    const [whole, , code, bold, bold2, italic, italic2, label, href, bare] = match;
    if (!links && (label !== undefined || bare !== undefined)) continue; // no link inside a link
    appendText(parent, text.slice(last, match.index), doc);
    last = match.index + whole.length;
    if (code !== undefined) {
      const node = doc.createElement("code");
      node.textContent = code.length > 2 && code.startsWith(" ") && code.endsWith(" ") ? code.slice(1, -1) : code;
      parent.append(node);
    } else if (bold !== undefined || bold2 !== undefined) {
      const node = doc.createElement("strong");
      appendInline(node, bold ?? bold2, doc, links);
      parent.append(node);
    } else if (italic !== undefined || italic2 !== undefined) {
      const node = doc.createElement("em");
      appendInline(node, italic ?? italic2, doc, links);
      parent.append(node);
    } else {
      const url = safeUrl(label !== undefined ? href : bare);
      if (url === null) {
        appendText(parent, whole, doc); // not a web link: shown as written, inert
        continue;
      }
      const anchor = doc.createElement("a");
      anchor.href = url;
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer";
      appendInline(anchor, label ?? bare, doc, false);
      parent.append(anchor);
    }
  }
  appendText(parent, text.slice(last), doc);
}
