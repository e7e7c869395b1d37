// The verifier's web page: camera, photo, paste or USB scanner in; one large verdict out.
// Served by the verifier itself; talks only to its own origin.
"use strict";

(function () {
  const TITLES = {
    VALID: ["有效", "VALID"],
    REVOKED: ["已撤销", "REVOKED"],
    SUSPENDED: ["已暂停", "SUSPENDED"],
    REPLACED: ["已被替换", "REPLACED"],
    EXPIRED: ["已过期", "EXPIRED"],
    NOT_YET_VALID: ["尚未生效", "NOT YET VALID"],
    UNKNOWN_ISSUER: ["发证方不明", "UNKNOWN ISSUER"],
    NOT_AUTHORISED: ["无权签发", "NOT AUTHORISED"],
    BAD_SIGNATURE: ["签名无效", "BAD SIGNATURE"],
    CLAIM_MISMATCH: ["信息不符", "CLAIM MISMATCH"],
    NOT_IN_LEDGER: ["账本中未找到", "NOT IN LEDGER"],
    STALE: ["数据过旧", "STALE"],
    MALFORMED: ["无法识别", "MALFORMED"],
  };
  const WARNINGS = {
    input_mangled: ["输入被改动", "input mangled"],
  };
  const B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  const PREFIX = "CL1:";
  const MAX_UPLOAD = 8 * 1024 * 1024;
  const MAX_SIDE = 2400;

  const $ = (id) => document.getElementById(id);
  let busy = false;

  // -- showing a verdict ------------------------------------------------------------

  function fmtTime(sec) {
    if (sec === null || sec === undefined) return "—";
    const d = new Date(sec * 1000);
    return d.toLocaleString("zh-CN", { hour12: false });
  }

  function fmtAge(sec) {
    if (sec === null || sec === undefined) return "";
    const s = Math.max(0, Math.round(Date.now() / 1000 - sec));
    if (s < 120) return `（${s} 秒前 · ${s} s ago）`;
    const m = Math.round(s / 60);
    if (m < 120) return `（${m} 分钟前 · ${m} min ago）`;
    const h = Math.round(m / 60);
    if (h < 48) return `（${h} 小时前 · ${h} h ago）`;
    const days = Math.round(h / 24);
    return `（${days} 天前 · ${days} days ago）`;
  }

  function fmtDate(sec) {
    if (sec === null || sec === undefined) return null;
    return new Date(sec * 1000).toLocaleDateString("zh-CN");
  }

  function setPanel(cls, code, zh, en, reasonZh, reasonEn) {
    const panel = $("verdict");
    panel.className = "verdict " + cls;
    panel.dataset.code = code;
    $("verdict-title").textContent = zh;
    $("verdict-sub").textContent = en;
    $("reason-zh").textContent = reasonZh || "";
    $("reason-en").textContent = reasonEn || "";
  }

  function text(id, value) {
    $(id).textContent = value === null || value === undefined || value === "" ? "—" : value;
  }

  function show(v) {
    const [zh, en] = TITLES[v.code] || [v.code, v.code];
    setPanel(v["class"] || "invalid", v.code, zh, en, v.reason && v.reason.zh, v.reason && v.reason.en);
    const details = $("details");
    const known = v.issuer || v.cert_type || v.cert_id || (v.claims && v.claims.length) || v.as_of;
    details.hidden = !known && !(v.warnings && v.warnings.length);
    text("d-issuer", v.issuer ? `${v.issuer.name || ""} (${v.issuer.id})` : null);
    text("d-type", v.cert_type ? `${v.cert_type.name || ""} (${v.cert_type.code})` : null);
    text("d-id", v.cert_id);
    const from = fmtDate(v.valid_from);
    const until = fmtDate(v.valid_until);
    text("d-validity", from ? `${from} — ${until || "长期 open-ended"}` : null);
    text("d-asof", v.as_of ? fmtTime(v.as_of) + " " + fmtAge(v.as_of) : "未查询账本 · no ledger data used");
    text("d-checked", fmtTime(v.checked_at));
    const e = v.evidence;
    text(
      "d-ledger",
      e
        ? `第 ${e.entry_index} 条 · entry ${e.entry_index} of ${e.checkpoint_size}; ` +
            `见证 witnessed by ${e.cosigners.join(", ") || "—"}`
        : null,
    );
    const replaced = v.replaced_by || "";
    $("d-replaced").hidden = $("d-replaced-dt").hidden = !replaced;
    $("d-replaced").textContent = replaced;

    const body = $("d-claims");
    body.replaceChildren();
    for (const c of v.claims || []) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = c.label;
      const small = document.createElement("span");
      small.className = "en";
      small.textContent = " " + c.name;
      th.appendChild(small);
      const td = document.createElement("td");
      td.textContent = c.value;
      tr.append(th, td);
      body.appendChild(tr);
    }
    const hidden = v.hidden || [];
    $("d-hidden").textContent = hidden.length
      ? `未出示 ${hidden.length} 项 · ${hidden.length} not disclosed: ${hidden.join(", ")}`
      : "";
    const warn = $("d-warnings");
    warn.replaceChildren();
    for (const w of v.warnings || []) {
      const li = document.createElement("li");
      const pair = WARNINGS[w];
      li.textContent = pair ? `${pair[0]} · ${pair[1]}` : w;
      warn.appendChild(li);
    }
    $("d-evidence-box").hidden = !v.evidence;
    $("d-evidence").textContent = v.evidence ? JSON.stringify(v.evidence, null, 2) : "";
  }

  function showProblem(zh, en) {
    setPanel("unsure", "INPUT", "请重新扫描", "SCAN AGAIN", zh, en);
    $("details").hidden = true;
  }

  // -- talking to the verifier --------------------------------------------------------

  async function post(url, body, type) {
    if (busy) return;
    busy = true;
    setPanel("busy", "", "核验中…", "Checking…", "", "");
    $("details").hidden = true;
    try {
      const r = await fetch(url, { method: "POST", headers: { "Content-Type": type }, body: body });
      let v = null;
      try {
        v = await r.json();
      } catch (e) {
        v = null;
      }
      if (v && v.code) show(v);
      else showProblem(`核验服务返回 HTTP ${r.status}`, `the verifier answered HTTP ${r.status}`);
    } catch (e) {
      showProblem("无法连接核验服务", "cannot reach the verifier: " + e.message);
    } finally {
      busy = false;
    }
  }

  // Mirrors the server's check: text a scanner or an input method altered is not judged.
  function mangled(t) {
    if (t.startsWith(PREFIX)) {
      const bad = [...new Set([...t.slice(PREFIX.length)].filter((c) => !B45.includes(c)))];
      if (!bad.length) return null;
      if (bad.some((c) => c.charCodeAt(0) > 0x2e7f)) {
        return ["输入被改动：含有全角字符，请关闭中文输入法后重新扫描",
                "input mangled: full-width characters; switch off the Chinese input method and scan again"];
      }
      if (bad.some((c) => c !== c.toUpperCase())) {
        return ["输入被改动：含有小写字母，请关闭大写锁定后重新扫描",
                "input mangled: lower-case letters; switch off Caps Lock and scan again"];
      }
      return ["输入被改动：含有二维码中不可能出现的字符，请重新扫描",
              "input mangled: characters a certledger code cannot hold; scan again"];
    }
    if (t.normalize("NFKC").toUpperCase().startsWith(PREFIX)) {
      return ["输入被改动：含有全角字符或小写字母，请关闭中文输入法或大写锁定后重新扫描",
              "input mangled: full-width or lower-case characters; switch off the input method or Caps Lock and scan again"];
    }
    return null;
  }

  function verifyText(raw) {
    const t = raw.replace(/^[\r\n\t\ufeff]+|[\r\n\t\ufeff]+$/g, "");
    if (!t) return;
    const how = mangled(t);
    if (how) {
      showProblem(how[0], how[1]);
      $("verdict").dataset.code = "MANGLED";
      return;
    }
    post("/v1/verify", JSON.stringify({ text: t }), "application/json");
  }

  // -- images: upload and photo capture ----------------------------------------------

  async function shrink(file) {
    // Large or unusual photos are redrawn as a JPEG of at most MAX_SIDE pixels a side.
    const ok = file.type === "image/png" || file.type === "image/jpeg";
    if (ok && file.size <= MAX_UPLOAD / 2) return file;
    if (!window.createImageBitmap) return file;
    try {
      const bmp = await createImageBitmap(file);
      const scale = Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height));
      const c = document.createElement("canvas");
      c.width = Math.round(bmp.width * scale);
      c.height = Math.round(bmp.height * scale);
      c.getContext("2d").drawImage(bmp, 0, 0, c.width, c.height);
      return await new Promise((res) => c.toBlob((b) => res(b || file), "image/jpeg", 0.92));
    } catch (e) {
      return file;
    }
  }

  async function verifyImage(file) {
    if (!file) return;
    const img = await shrink(file);
    if (img.size > MAX_UPLOAD) {
      showProblem("图片过大，请重拍或截图", "image too large: take a smaller photo or a screenshot");
      return;
    }
    post("/v1/verify/image", img, img.type || "application/octet-stream");
  }

  $("upload-input").addEventListener("change", (e) => {
    verifyImage(e.target.files[0]);
    e.target.value = "";
  });
  $("capture-input").addEventListener("change", (e) => {
    verifyImage(e.target.files[0]);
    e.target.value = "";
  });

  // -- camera -------------------------------------------------------------------------

  let stream = null;
  let timer = null;

  function stopCamera() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    $("camera-video").hidden = true;
    $("camera-stop").hidden = true;
    $("camera-start").hidden = false;
  }

  function fallbackToPhoto(zh, en) {
    $("camera-start").hidden = true;
    $("capture-label").hidden = false;
    $("camera-note").textContent = `${zh} · ${en}`;
  }

  function scanFrame() {
    const video = $("camera-video");
    if (!stream) return;
    if (video.readyState >= 2 && video.videoWidth && window.jsQR) {
      const scale = Math.min(1, 960 / Math.max(video.videoWidth, video.videoHeight));
      const w = Math.round(video.videoWidth * scale);
      const h = Math.round(video.videoHeight * scale);
      const canvas = $("camera-canvas");
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(video, 0, 0, w, h);
      const found = window.jsQR(ctx.getImageData(0, 0, w, h).data, w, h, { inversionAttempts: "dontInvert" });
      if (found && found.data) {
        stopCamera();
        verifyText(found.data);
        return;
      }
    }
    timer = setTimeout(scanFrame, 150);
  }

  async function startCamera() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 } },
        audio: false,
      });
    } catch (e) {
      fallbackToPhoto("无法使用摄像头，请拍照核验", "camera not available (" + e.name + "): take a photo instead");
      return;
    }
    const video = $("camera-video");
    video.srcObject = stream;
    video.hidden = false;
    $("camera-stop").hidden = false;
    $("camera-start").hidden = true;
    $("camera-note").textContent = "将二维码置于画面中 · Hold the QR code in view";
    await video.play().catch(() => null);
    scanFrame();
  }

  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    $("camera-start").addEventListener("click", startCamera);
    $("camera-stop").addEventListener("click", stopCamera);
  } else {
    fallbackToPhoto("此浏览器无法直接使用摄像头，请拍照核验",
                    "this browser gives no camera access here: take a photo instead");
  }

  // -- paste and USB keyboard-wedge scanners ------------------------------------------
  // A scanner types the code as fast keystrokes and usually ends with Enter; some end
  // without it, so a fast burst that pauses is submitted too.

  const input = $("text-input");
  let lastKey = 0;
  let fastKeys = 0;
  let idle = null;

  // One submission per scan: a pending idle timer is cancelled, and the field's text is
  // selected afterwards, so the next scan's keystrokes replace it instead of joining it.
  function submitText() {
    if (idle) clearTimeout(idle);
    idle = null;
    fastKeys = 0;
    const text = input.value;
    input.select();
    if (text.trim()) verifyText(text);
  }

  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submitText();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing) {
      e.preventDefault();
      submitText();
    }
  });
  input.addEventListener("paste", () => setTimeout(submitText, 0));
  input.addEventListener("input", () => {
    const now = performance.now();
    fastKeys = now - lastKey < 50 ? fastKeys + 1 : 0;
    lastKey = now;
    if (idle) clearTimeout(idle);
    idle = fastKeys > 20 ? setTimeout(submitText, 400) : null;
  });
  input.addEventListener("focus", () => input.select());
  window.addEventListener("load", () => input.focus());
})();
