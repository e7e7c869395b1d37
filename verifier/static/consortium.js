// The consortium page: members, log sizes, age of each witnessed checkpoint, alerts,
// and certificates issued and revoked per day per member (counts only).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const COLOURS = ["#0b57d0", "#0a7a2f", "#b86e00", "#7b1fa2", "#00838f", "#c2185b", "#5d4037", "#455a64"];
  let chart = null;

  function fmtTime(sec) {
    return sec === null || sec === undefined ? "—" : new Date(sec * 1000).toLocaleString("zh-CN", { hour12: false });
  }

  function fmtAge(s) {
    if (s === null || s === undefined) return "—";
    if (s < 120) return `${s} 秒 · ${s} s`;
    const m = Math.round(s / 60);
    if (m < 120) return `${m} 分钟 · ${m} min`;
    const h = Math.round(m / 60);
    if (h < 48) return `${h} 小时 · ${h} h`;
    const d = Math.round(h / 24);
    return `${d} 天 · ${d} days`;
  }

  function cell(tr, value, cls) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "—" : String(value);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function renderStatus(s) {
    const policy = s.policy ? `信任策略 v${s.policy.version}，${fmtTime(s.policy.expires)} 到期 · trust policy v${s.policy.version}, expires ${fmtTime(s.policy.expires)}` : "";
    const expired = s.policy && s.policy.expired ? "（已过期 · EXPIRED）" : "";
    const checked =
      s.policy && s.policy.last_check
        ? `　策略检查于 ${fmtTime(s.policy.last_check)} · policy checked ${fmtTime(s.policy.last_check)}`
        : "";
    $("summary").textContent =
      `${policy}${expired}${checked}　更新于 ${fmtTime(s.checked_at)} · as of ${fmtTime(s.checked_at)}`;
    const alerts = $("alerts");
    alerts.replaceChildren();
    for (const a of s.alerts || []) {
      const li = document.createElement("li");
      li.textContent = `${a.member ? a.member + ": " : ""}${a.kind ? "[" + a.kind + "] " : ""}${a.message}${a.at ? " (" + fmtTime(a.at) + ")" : ""}`;
      alerts.appendChild(li);
    }
    if (!alerts.children.length) {
      const li = document.createElement("li");
      li.className = "ok";
      li.textContent = "无告警 · no alerts";
      alerts.appendChild(li);
    }
    const body = $("members");
    body.replaceChildren();
    for (const m of s.members || []) {
      const tr = document.createElement("tr");
      const who = cell(tr, m.name || m.id);
      const small = document.createElement("div");
      small.className = "en";
      small.textContent = m.id + (m.origin ? " · " + m.origin : "");
      who.appendChild(small);
      cell(tr, m.log_size, "num");
      cell(tr, m.witnessed_size, "num");
      const cp = cell(tr, fmtTime(m.witnessed_at));
      if (m.cosigners && m.cosigners.length) {
        const by = document.createElement("div");
        by.className = "en";
        by.textContent = "见证 witnessed by " + m.cosigners.join(", ");
        cp.appendChild(by);
      }
      const fresh = cell(tr, (m.fresh ? "新鲜 fresh · " : "过旧 stale · ") + fmtAge(m.age_seconds), m.fresh ? "ok" : "bad");
      if (m.error) fresh.title = m.error;
      cell(tr, fmtTime(m.last_sync) + (m.error ? " ⚠ " + m.error : ""));
      body.appendChild(tr);
    }
  }

  function renderStats(st) {
    if (!window.Chart) return;
    const datasets = [];
    (st.members || []).forEach((m, i) => {
      const colour = COLOURS[i % COLOURS.length];
      datasets.push({ label: `${m.name || m.id} 签发 issued`, data: m.issued, backgroundColor: colour, stack: "issued" });
      datasets.push({ label: `${m.name || m.id} 撤销 revoked`, data: m.revoked, backgroundColor: colour + "80",
                      borderColor: colour, borderWidth: 1, stack: "revoked" });
    });
    const data = { labels: st.days || [], datasets };
    if (chart) {
      chart.data = data;
      chart.update();
      return;
    }
    chart = new window.Chart($("chart"), {
      type: "bar",
      data,
      options: {
        responsive: true,
        animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  async function refresh() {
    try {
      const [s, st] = await Promise.all([
        fetch("/v1/status").then((r) => r.json()),
        fetch("/v1/stats").then((r) => r.json()),
      ]);
      renderStatus(s);
      renderStats(st);
    } catch (e) {
      $("summary").textContent = "无法获取状态 · cannot load the status: " + e.message;
    }
  }

  refresh();
  setInterval(refresh, 30000);
})();
