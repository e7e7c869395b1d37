// The clerk's page: talks only to this node's /v1 clerk API with the clerk's bearer token.
"use strict";

const KEY = "certledger.clerk.token";
const $ = (id) => document.getElementById(id);
let types = [];
let current = null; // the certificate on show: {cert_id, type, ...}
let qrUrls = [];
let replacing = null; // the certificate a submitted form replaces, or null to issue anew

function token() { return sessionStorage.getItem(KEY) || ""; }

function show(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.className = "msg" + (kind ? " " + kind : "");
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, { method: options.method || "GET", headers, body: options.body });
  let doc = null;
  const ctype = r.headers.get("content-type") || "";
  if (options.blob && r.ok) return { status: r.status, ok: true, blob: await r.blob() };
  if (ctype.includes("json")) doc = await r.json();
  return { status: r.status, ok: r.ok, doc };
}

function errorText(res) {
  const d = res.doc;
  if (d && typeof d.error === "string") return d.error;
  if (d && Array.isArray(d.detail)) return d.detail.map((x) => (x.loc || []).join(".") + ": " + x.msg).join("; ");
  if (res.status === 401) return "令牌无效 · token not accepted";
  return "HTTP " + res.status;
}

function problemsText(res) {
  return (res.doc && res.doc.problems || []).map((p) => p.field + ": " + p.rule).join("; ");
}

// ---- sign in ----

async function signIn(value) {
  sessionStorage.setItem(KEY, value);
  const res = await api("/v1/certificates?limit=1");
  if (!res.ok) {
    sessionStorage.removeItem(KEY);
    show("signin-msg", "登录失败 · sign-in failed: " + errorText(res), "bad");
    return;
  }
  const parts = value.split(".");
  $("signed-in").textContent = "已登录 · signed in: " + (parts[1] || "") + " #" + (parts[2] || "");
  show("signin-msg", "", "");
  $("signin-box").hidden = true;
  $("desk").hidden = false;
  await loadTypes();
}

function signOut() {
  sessionStorage.removeItem(KEY);
  $("token").value = "";
  $("desk").hidden = true;
  $("signin-box").hidden = false;
  clearQr();
}

// ---- issuing form from the type's schema ----

async function loadTypes() {
  const res = await api("/v1/types");
  if (!res.ok) { show("issue-msg", errorText(res), "bad"); return; }
  $("member").textContent = res.doc.member;
  types = res.doc.types;
  const sel = $("type");
  sel.replaceChildren();
  for (const t of types) {
    if (!t.may_issue) continue;
    const o = document.createElement("option");
    o.value = t.code;
    o.textContent = t.name + " (" + t.code + ")";
    sel.append(o);
  }
  const reasons = $("reason");
  reasons.replaceChildren();
  for (const r of res.doc.reasons || []) {
    const o = document.createElement("option");
    o.value = r.name;
    o.textContent = r.zh + " · " + r.en;
    reasons.append(o);
  }
  buildForm();
}

function typeOf(code) { return types.find((t) => t.code === code); }

function buildForm() {
  const box = $("fields");
  box.replaceChildren();
  const t = typeOf($("type").value);
  if (!t) return;
  for (const c of t.claims) {
    const label = document.createElement("label");
    label.htmlFor = "f-" + c.name;
    label.textContent = c.label + " ";
    const en = document.createElement("span");
    en.className = "en";
    en.textContent = c.name;
    label.append(en);
    if (c.required) {
      const star = document.createElement("span");
      star.className = "req";
      star.textContent = " *";
      star.title = "必填 · required";
      label.append(star);
    }
    const input = document.createElement("input");
    input.id = "f-" + c.name;
    input.name = c.name;
    input.dataset.kind = c.kind;
    input.type = c.kind === "date" ? "date" : c.kind === "integer" ? "number" : "text";
    if (c.kind === "integer") input.step = "1";
    if (c.max_length && c.kind !== "integer" && c.kind !== "date") input.maxLength = c.max_length;
    if (c.required) input.required = true;
    const err = document.createElement("span");
    err.className = "field-error";
    err.id = "err-" + c.name;
    box.append(label, input, err);
  }
}

function clearFieldErrors() {
  for (const el of document.querySelectorAll(".field-error")) el.textContent = "";
}

async function issue(ev) {
  ev.preventDefault();
  clearFieldErrors();
  show("issue-msg", "签发中… · issuing…", "");
  const t = typeOf($("type").value);
  const claims = {};
  for (const c of t.claims) {
    const v = $("f-" + c.name).value.trim();
    if (v === "") continue;
    claims[c.name] = c.kind === "integer" && /^-?\d+$/.test(v) ? Number(v) : v;
  }
  const res = replacing
    ? await api("/v1/certificates/" + encodeURIComponent(replacing) + "/replace", {
        method: "POST",
        json: { claims, reason: $("reason").value || null },
      })
    : await api("/v1/certificates", { method: "POST", json: { type: t.code, claims } });
  if (res.status === 422) {
    const loose = [];
    for (const p of (res.doc && res.doc.problems) || []) {
      const name = String(p.field).replace(/^claims\./, "");
      if (name === "reason") { loose.push("原因 reason: " + p.rule); continue; }
      const err = $("err-" + name);
      if (err) err.textContent = p.rule; else loose.push(p.field + ": " + p.rule);
    }
    show("issue-msg", "请更正标出的信息 · please correct the marked fields" + (loose.length ? " — " + loose.join("; ") : ""), "bad");
    return;
  }
  if (!res.ok) { show("issue-msg", "签发失败 · not issued: " + errorText(res), "bad"); return; }
  $("issued-id").textContent = res.doc.cert_id;
  show("issue-msg", replacing ? "已换发 · replaced " + replacing : "已签发 · issued", "good");
  $("issue-form").reset();
  stopReplacing();
  $("lookup-id").value = res.doc.cert_id;
  await lookup();
}

// ---- look up, history, status changes ----

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  tr.append(td);
}

function when(t) {
  return new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

async function lookup(ev) {
  if (ev) ev.preventDefault();
  const id = $("lookup-id").value.trim();
  if (!id) return;
  clearQr();
  const res = await api("/v1/certificates/" + encodeURIComponent(id));
  if (!res.ok) {
    $("cert").hidden = true;
    current = null;
    show("lookup-msg", "查询失败 · not found: " + errorText(res), "bad");
    return;
  }
  show("lookup-msg", "", "");
  current = res.doc;
  render();
}

function render() {
  const d = current;
  $("cert").hidden = false;
  $("cert-status").textContent = d.status;
  $("cert-status").dataset.status = d.status;
  const t = typeOf(d.type);
  $("cert-type").textContent = (t ? t.name + " " : "") + d.type + " · " + d.cert_id;
  const cred = typeof d.credential === "string" ? JSON.parse(d.credential) : d.credential;
  const claims = (cred && cred.claims) || {};
  const table = $("claims");
  table.replaceChildren();
  const reveal = $("reveal");
  reveal.replaceChildren();
  for (const c of t ? t.claims : Object.keys(claims).map((name) => ({ name, label: name }))) {
    if (!(c.name in claims)) continue;
    const tr = document.createElement("tr");
    cell(tr, c.label);
    cell(tr, claims[c.name]);
    table.append(tr);
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = c.name;
    box.id = "reveal-" + c.name;
    label.append(box, " " + c.label);
    reveal.append(label);
  }
  const body = $("history");
  body.replaceChildren();
  for (const h of d.history) {
    const tr = document.createElement("tr");
    cell(tr, h.index);
    cell(tr, h.event);
    cell(tr, when(h.time));
    cell(tr, h.reason || "");
    cell(tr, h.operator);
    body.append(tr);
  }
}

async function changeStatus(action) {
  if (!current) return;
  show("action-msg", "提交中… · sending…", "");
  const res = await api("/v1/certificates/" + encodeURIComponent(current.cert_id) + "/" + action, {
    method: "POST",
    json: { reason: $("reason").value || null },
  });
  if (!res.ok) {
    const extra = problemsText(res);
    show("action-msg", "未能办理 · refused: " + errorText(res) + (extra ? " (" + extra + ")" : ""), "bad");
    return;
  }
  show("action-msg", "已办理 · done: " + action, "good");
  await lookup();
}

function startReplacing() {
  if (!current) return;
  const cred = typeof current.credential === "string" ? JSON.parse(current.credential) : current.credential;
  $("type").value = current.type;
  buildForm();
  clearFieldErrors();
  for (const [name, value] of Object.entries((cred && cred.claims) || {})) {
    const input = $("f-" + name);
    if (input) input.value = String(value);
  }
  replacing = current.cert_id;
  $("replacing").textContent = replacing;
  $("replace-note").hidden = false;
  $("type").disabled = true;
  show("issue-msg", "修改后提交（原因见下方选择） · edit and submit (reason as chosen below)", "");
  $("issue-box").scrollIntoView();
}

function stopReplacing() {
  replacing = null;
  $("replace-note").hidden = true;
  $("type").disabled = false;
}

// ---- QR code ----

function clearQr() {
  for (const u of qrUrls) URL.revokeObjectURL(u);
  qrUrls = [];
  $("qr-area").hidden = true;
  $("qr-img").removeAttribute("src");
  show("qr-msg", "", "");
}

async function showQr() {
  if (!current) return;
  clearQr();
  const chosen = Array.from(document.querySelectorAll("#reveal input:checked")).map((b) => b.value);
  const q = chosen.length ? "?reveal=" + encodeURIComponent(chosen.join(",")) : "";
  const base = "/v1/certificates/" + encodeURIComponent(current.cert_id);
  const [png, svg] = await Promise.all([api(base + "/qr.png" + q, { blob: true }), api(base + "/qr.svg" + q, { blob: true })]);
  if (!png.ok || !svg.ok) { show("qr-msg", "二维码获取失败 · QR not available: " + errorText(png.ok ? svg : png), "bad"); return; }
  const pngUrl = URL.createObjectURL(png.blob);
  const svgUrl = URL.createObjectURL(svg.blob);
  qrUrls = [pngUrl, svgUrl];
  const suffix = chosen.length ? "-partial" : "";
  $("qr-img").src = pngUrl;
  $("qr-png").href = pngUrl;
  $("qr-png").download = current.cert_id + suffix + ".png";
  $("qr-svg").href = svgUrl;
  $("qr-svg").download = current.cert_id + suffix + ".svg";
  $("qr-area").hidden = false;
  show("qr-msg", chosen.length ? "出示 · reveals: " + chosen.join(", ") : "全部信息 · all claims", "");
}

async function printQr() {
  if (!qrUrls.length) await showQr();
  if (qrUrls.length) window.print();
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value.trim()); });
  $("signout").addEventListener("click", signOut);
  $("type").addEventListener("change", () => { clearFieldErrors(); buildForm(); });
  $("issue-form").addEventListener("submit", issue);
  $("lookup-form").addEventListener("submit", lookup);
  $("revoke").addEventListener("click", () => changeStatus("revoke"));
  $("suspend").addEventListener("click", () => changeStatus("suspend"));
  $("reinstate").addEventListener("click", () => changeStatus("reinstate"));
  $("replace").addEventListener("click", startReplacing);
  $("replace-cancel").addEventListener("click", () => { stopReplacing(); $("issue-form").reset(); show("issue-msg", "", ""); });
  $("qr-show").addEventListener("click", showQr);
  $("qr-print").addEventListener("click", printQr);
  if (token()) signIn(token());
});
