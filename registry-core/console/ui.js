// DOM helpers shared by the pages: element builder, tables with server-side paging, dialogs,
// toasts, a line diff and a small syntax highlighter for config formats.

/** `h('tag#id.class', {attr, onclick}, ...children)`: children may be strings, nodes or arrays. */
export function h(spec, attrs = {}, ...children) {
  const [tagAndId, ...classes] = spec.split('.');
  const [tag, id] = tagAndId.split('#');
  const node = document.createElement(tag || 'div');
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'value') node.value = v;
    else if (k === 'checked') node.checked = !!v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces `node`'s children, skipping absent ones (`cond && child`) as `h` does. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

export function toast(message, kind = 'ok') {
  const t = h(`div.toast.${kind}`, { role: kind === 'error' ? 'alert' : 'status' }, message);
  const box = document.getElementById('toasts');
  box.append(t);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 6000 : 3000);
}

/** Runs `work`; a failure becomes an error toast. Answers the result or undefined. */
export async function attempt(work, done) {
  try {
    const r = await work();
    if (done) toast(done);
    return r;
  } catch (e) {
    toast(e.message, 'error');
    return undefined;
  }
}

/** A table: `columns` are `[title, row => cell]`. */
export function table(columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p.empty', {}, empty);
  return h('div.table-wrap', {}, h('table', {},
    h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', {}, title)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(r))))))));
}

/** Previous / next with "page x of y"; `go(pageNo)` loads a page. */
export function pager(total, pageNo, pageSize, go) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return h('div.pager', {},
    h('span', {}, `${total} total · page ${pageNo} of ${pages}`),
    h('button.ghost', { disabled: pageNo <= 1, onclick: () => go(pageNo - 1) }, '‹ Prev'),
    h('button.ghost', { disabled: pageNo >= pages, onclick: () => go(pageNo + 1) }, 'Next ›'));
}

/** A modal dialog; `actions` are `[label, onclick, kind]`; answers a `close` function. */
export function dialog(title, body, actions = []) {
  const close = () => overlay.remove();
  const overlay = h('div.overlay', { onclick: (e) => { if (e.target === overlay) close(); } },
    h('div.dialog', { role: 'dialog', 'aria-label': title },
      h('h2', {}, title),
      h('div.dialog-body', {}, body),
      h('div.actions', {},
        actions.map(([label, onclick, kind]) => h(`button.${kind || 'primary'}`, { onclick }, label)),
        h('button.ghost', { onclick: close }, 'Close'))));
  document.body.append(overlay);
  return close;
}

export function confirmThen(question, work) {
  const close = dialog('Confirm', h('p', {}, question), [['Yes', async () => { close(); await work(); }, 'danger']]);
}

/** A labelled form field. */
export function field(label, input) {
  return h('label.field', {}, h('span', {}, label), input);
}

/** A form from `[name, label, {type, value, placeholder, options}]`; `values()` reads it. */
export function form(fields) {
  const inputs = {};
  const node = h('div.form', {}, fields.map(([name, label, o = {}]) => {
    let input;
    if (o.options) {
      input = h('select', { name }, o.options.map((v) => h('option', { value: v, selected: v === o.value }, v)));
    } else if (o.type === 'checkbox') {
      input = h('input', { type: 'checkbox', name, checked: o.value });
    } else {
      input = h('input', { name, type: o.type || 'text', value: o.value ?? '', placeholder: o.placeholder || '',
        readonly: o.readonly });
    }
    inputs[name] = input;
    return field(label, input);
  }));
  node.values = () => Object.fromEntries(Object.entries(inputs).map(
    ([k, i]) => [k, i.type === 'checkbox' ? i.checked : i.value]));
  return node;
}

/** Line diff (longest common subsequence): `[op, line]` with op ' ', '-' or '+'. */
export function diffLines(before, after) {
  const a = before.split('\n');
  const b = after.split('\n');
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(['-', a[i++]]);
    else out.push(['+', b[j++]]);
  }
  while (i < n) out.push(['-', a[i++]]);
  while (j < m) out.push(['+', b[j++]]);
  return out;
}

/** The diff as a two-gutter view: removed lines red, added green. */
export function diffView(before, after, labels = ['before', 'after']) {
  const rows = diffLines(before, after);
  const changed = rows.filter(([op]) => op !== ' ').length;
  return h('div.diff', {},
    h('div.diff-head', {}, h('span.del', {}, `− ${labels[0]}`), h('span.add', {}, `+ ${labels[1]}`),
      h('span.muted', {}, changed ? `${changed} changed line(s)` : 'identical')),
    h('pre', {}, rows.map(([op, line]) =>
      h(`div.line${op === '-' ? '.del' : op === '+' ? '.add' : ''}`, {}, h('span.op', {}, op), line))));
}

const RULES = {
  json: [[/"(?:[^"\\]|\\.)*"(?=\s*:)/y, 'key'], [/"(?:[^"\\]|\\.)*"/y, 'str'],
    [/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y, 'num'], [/\b(?:true|false|null)\b/y, 'kw']],
  yaml: [[/#.*/y, 'com'], [/[\w.\-]+(?=\s*:(\s|$))/y, 'key'], [/"(?:[^"\\]|\\.)*"|'[^']*'/y, 'str'],
    [/-?\d+(?:\.\d+)?\b/y, 'num'], [/\b(?:true|false|null|yes|no)\b/y, 'kw']],
  properties: [[/^[ \t]*[#!].*/my, 'com'], [/^[ \t]*[^=:\s]+(?=\s*[=:])/my, 'key']],
  xml: [[/<!--[\s\S]*?-->/y, 'com'], [/<\/?[\w:.\-]+/y, 'key'], [/"[^"]*"|'[^']*'/y, 'str'], [/\/?>/y, 'key']],
  toml: [[/#.*/y, 'com'], [/^\s*\[[^\]]*\]/my, 'kw'], [/^[ \t]*[\w.\-]+(?=\s*=)/my, 'key'],
    [/"(?:[^"\\]|\\.)*"|'[^']*'/y, 'str'], [/-?\d+(?:\.\d+)?\b/y, 'num'], [/\b(?:true|false)\b/y, 'kw']],
};
RULES.yml = RULES.yaml;
RULES.html = RULES.xml;

/** `text` as highlighted spans for config `type` (plain text for unknown types). */
export function highlight(text, type) {
  const rules = RULES[type];
  const out = document.createDocumentFragment();
  if (!rules) { out.append(text); return out; }
  let plain = '';
  let i = 0;
  outer: while (i < text.length) {
    for (const [re, cls] of rules) {
      re.lastIndex = i;
      const m = re.exec(text);
      if (m && m[0].length) {
        if (plain) { out.append(plain); plain = ''; }
        out.append(h(`span.tok-${cls}`, {}, m[0]));
        i += m[0].length;
        continue outer;
      }
    }
    plain += text[i++];
  }
  if (plain) out.append(plain);
  return out;
}

/** A textarea over a highlighted copy of its text; `editor.value` reads it. */
export function codeEditor(value, type, readonly = false) {
  const code = h('pre.code-layer', { 'aria-hidden': 'true' });
  const area = h('textarea.code-input', { spellcheck: 'false', name: 'content', readonly, value });
  const wrap = h('div.code-editor', {}, code, area);
  wrap.type = type;
  const paint = () => {
    code.replaceChildren(highlight(area.value + '\n', wrap.type));
    code.scrollTop = area.scrollTop;
    code.scrollLeft = area.scrollLeft;
  };
  area.addEventListener('input', paint);
  area.addEventListener('scroll', paint);
  wrap.setType = (t) => { wrap.type = t; paint(); };
  Object.defineProperty(wrap, 'value', { get: () => area.value, set: (v) => { area.value = v; paint(); } });
  paint();
  return wrap;
}

export const fmtTime = (ms) => (ms ? new Date(Number(ms)).toLocaleString() : '');
