// The cloudai console: fills the server-rendered pages from /api/v1/ and keeps them live from
// the event stream (GET /api/v1/events). No build step, no dependencies.
"use strict";
(function () {
  const app = document.getElementById("app");
  if (!app) return;
  const ME = app.dataset.user, ADMIN = app.dataset.admin === "true", CSRF = app.dataset.csrf;
  const ACTIVE = new Set(["pending", "running"]);
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") n.textContent = v; else if (k === "cls") n.className = v;
      else n.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) n.append(k);
    return n;
  }
  function toast(msg, bad) {
    const t = $("#toast"); t.textContent = msg; t.className = bad ? "bad" : "ok"; t.hidden = false;
    clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
  }
  async function api(path, opts) {
    opts = opts || {};
    const headers = { "Accept": "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (opts.method && opts.method !== "GET") headers["X-CSRF-Token"] = CSRF;
    const req = () => fetch("/api/v1" + path, { method: opts.method || "GET", headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: "same-origin" });
    let r;
    for (let attempt = 1; ; attempt++) {
      try { r = await req(); break; } catch (err) {
        // A network blip (Chromium drops requests when a network interface comes or goes):
        // try again. Every call here is safe to repeat: reads, and cancel / drain / undrain,
        // which answer the same when already done.
        if (attempt >= 4) throw err;
        await new Promise((ok) => setTimeout(ok, 250 * attempt));
      }
    }
    if (r.status === 401) { location.href = "/login?m=Your+session+ended."; throw new Error("401"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok && !opts.acks) throw new Error((data.error && data.error.message) || data.message || r.statusText);
    return data;
  }
  const when = (iso) => iso ? new Date(iso).toLocaleString() : "—";
  // to the millisecond: the stages of a stop are often within one second
  const fine = (iso) => {
    const d = new Date(iso);
    return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
  };
  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : when(iso);
  }
  const fmt = (x, d) => (x === null || x === undefined) ? "—" : Number(x).toFixed(d === undefined ? 1 : d);
  function bar(used, cap, unit, label) {
    const pct = cap > 0 ? Math.min(100, (100 * used) / cap) : 0;
    const m = el("meter", { min: 0, max: cap || 1, value: used, "aria-label": label,
      title: `${fmt(used)} of ${fmt(cap)} ${unit}` });
    return el("span", { cls: "bar" }, m, el("span", { text: ` ${fmt(used)}/${fmt(cap)} ${unit}` }),
      el("span", { cls: "sr", text: ` (${pct.toFixed(0)}%)` }));
  }
  // an argument as a POSIX shell would need it written
  const shq = (a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
  const statusBadge = (s) => el("span", { cls: `status s-${s}`, text: s });
  const mayCancel = (t) => ADMIN || t.owner === ME;

  // ---- the event stream ----
  const handlers = {};
  function live() {
    const es = new EventSource("/api/v1/events");
    const state = $("#live");
    let connected = false;
    es.addEventListener("hello", () => {
      state.textContent = "live"; state.className = "live on";
      if (connected && handlers.resync) handlers.resync();  // back after a gap: re-read
      connected = true;
    });
    es.onerror = () => { state.textContent = "reconnecting…"; state.className = "live off"; };
    for (const kind of ["task", "worker", "worker_removed", "resync"]) {
      es.addEventListener(kind, (e) => { const f = handlers[kind]; if (f) f(JSON.parse(e.data)); });
    }
  }
  function throttle(fn, ms) {
    let t = null;
    return () => { if (t === null) t = setTimeout(() => { t = null; fn(); }, ms); };
  }

  // ---- workers ----
  function workersView() {
    const rows = new Map();
    const body = $("#workers tbody");
    function render() {
      body.replaceChildren(...[...rows.values()].sort((a, b) => a.worker_id < b.worker_id ? -1 : 1).map(row));
    }
    function row(w) {
      const gpus = w.gpus.length ? w.gpus.map((g) => `${g.id}${g.busy ? " busy" : ""}${g.utilization_percent !== null ? ` ${g.utilization_percent}%` : ""}`).join(", ") : "none";
      const state = w.state + (w.drained ? ", drained" : "");
      let action = null;
      if (ADMIN) {
        const verb = w.drained ? "undrain" : "drain";
        action = el("button", { type: "button", text: w.drained ? "Undrain" : "Drain",
          "aria-label": `${w.drained ? "Undrain" : "Drain"} worker ${w.worker_id}` });
        action.onclick = async () => {
          try { upsert(await api(`/workers/${encodeURIComponent(w.worker_id)}/${verb}`, { method: "POST" }));
            toast(`Worker ${w.worker_id} ${verb}ed.`); } catch (e) { toast(e.message, true); }
        };
      }
      return el("tr", { "data-worker": w.worker_id },
        el("th", { scope: "row", text: w.worker_id }),
        el("td", {}, el("span", { cls: `state w-${w.state}`, text: state })),
        el("td", {}, bar(w.allocated.cpu, w.capacity.cpu, "cores", `CPU allocated on ${w.worker_id}`)),
        el("td", {}, bar(w.allocated.mem_gb, w.capacity.mem_gb, "GB", `Memory allocated on ${w.worker_id}`)),
        el("td", { text: `${w.allocated.gpu}/${w.capacity.gpu} (${gpus})` }),
        el("td", { text: w.cpu_percent === null ? "—" : `${fmt(w.cpu_percent)} %` }),
        el("td", { text: w.mem_used_gb === null ? "—" : `${fmt(w.mem_used_gb, 2)} GB` }),
        el("td", { text: String(w.running_tasks.length) }),
        el("td", { cls: "age", "data-at": w.last_heartbeat || "", text: ago(w.last_heartbeat) }),
        el("td", {}, action));
    }
    function upsert(w) { rows.set(w.worker_id, w); render(); }
    async function load() {
      const data = await api("/workers"); rows.clear();
      for (const w of data.workers) rows.set(w.worker_id, w);
      render();
    }
    handlers.worker = upsert;
    handlers.worker_removed = (d) => { rows.delete(d.worker_id); render(); };
    handlers.resync = load;
    setInterval(() => { for (const c of document.querySelectorAll("td.age")) c.textContent = ago(c.dataset.at); }, 1000);
    load().catch((e) => toast(e.message, true));
  }

  // ---- tasks ----
  function tasksView() {
    const all = new Map();
    const form = $("#filters"), body = $("#tasks tbody");
    const params = new URLSearchParams(location.search);
    for (const k of ["status", "worker", "owner", "q"]) if (params.get(k)) form.elements[k].value = params.get(k);
    function filters() {
      return { status: form.elements.status.value, worker: form.elements.worker.value.trim(),
        owner: form.elements.owner.value.trim(), q: form.elements.q.value.trim().toLowerCase() };
    }
    function shown() {
      const f = filters();
      return [...all.values()].filter((t) => (!f.status || t.status === f.status) &&
        (!f.worker || t.worker_id === f.worker) && (!f.owner || t.owner === f.owner) &&
        (!f.q || t.task_id.toLowerCase().includes(f.q)));
    }
    function row(t) {
      return el("tr", { "data-task": t.task_id },
        el("th", { scope: "row" }, el("a", { href: `/tasks/${encodeURIComponent(t.task_id)}`, text: t.task_id })),
        el("td", { text: t.name || "" }), el("td", { text: t.owner }),
        el("td", {}, statusBadge(t.status)), el("td", { text: t.worker_id || "—" }),
        el("td", { cls: "mono", text: t.image }), el("td", { text: when(t.created_at) }));
    }
    function render() {
      const list = shown();
      body.replaceChildren(...list.map(row));
      performance.mark("tasks-rendered");  // what bench/console.py times
      $("#count").textContent = `${list.length} of ${all.size} shown`;
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(filters())) if (v) q.set(k, v);
      history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
      const pending = [...all.values()].filter((t) => t.status === "pending")
        .sort((a, b) => a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0);
      $("#queue-n").textContent = `(${pending.length})`;
      $("#queue").replaceChildren(...pending.slice(0, 50).map((t) => el("li", {},
        el("a", { href: `/tasks/${encodeURIComponent(t.task_id)}`, text: t.task_id }),
        ` ${t.owner} · cpu ${t.resources.cpu}, ${t.resources.mem_gb} GB`)));
      if (pending.length > 50) $("#queue").append(el("li", { cls: "help", text: `… and ${pending.length - 50} more` }));
      $("#bulk-open").hidden = !list.some((t) => ACTIVE.has(t.status) && mayCancel(t));
      $("#worker-ids").replaceChildren(...[...new Set([...all.values()].map((t) => t.worker_id).filter(Boolean))].map((w) => el("option", { value: w })));
    }
    const later = throttle(render, 150);
    async function load() {
      const data = await api("/tasks"); all.clear();
      for (const t of data.tasks) all.set(t.task_id, t);
      render();
    }
    form.addEventListener("input", render);
    form.addEventListener("submit", (e) => { e.preventDefault(); render(); });
    handlers.task = (d) => { if (d.task) { all.set(d.task_id, d.task); later(); } };
    handlers.resync = load;
    // bulk cancel: a preview of exactly what will be cancelled, then a confirmation
    const dlg = $("#bulk");
    let chosen = [];
    $("#bulk-open").onclick = () => {
      chosen = shown().filter((t) => ACTIVE.has(t.status) && mayCancel(t));
      $("#bulk-n").textContent = String(chosen.length);
      $("#bulk-list").replaceChildren(...chosen.map((t) => el("li", { text: `${t.task_id} (${t.status}, ${t.owner}${t.name ? ", " + t.name : ""})` })));
      dlg.showModal();
    };
    $("#bulk-cancel").onclick = () => dlg.close();
    $("#bulk-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements, body = { task_ids: chosen.map((t) => t.task_id), reason: f.reason.value };
      if (f.how.value === "force") body.force = true; else if (f.grace.value !== "") body.grace = Number(f.grace.value);
      dlg.close();
      try {
        const res = await api("/tasks/cancel", { method: "POST", body });
        const bad = res.acks.filter((a) => !a.success);
        toast(`${res.acks.length - bad.length} cancelled` + (bad.length ? `, ${bad.length} refused: ${bad[0].message}` : "."), bad.length > 0);
      } catch (err) { toast(err.message, true); }
    });
    load().catch((e) => toast(e.message, true));
  }

  // ---- one task ----
  const STAGES = [["requested", "requested_at"], ["delivered", "delivered_at"],
    ["signalled", "signal_at"], ["exited", "exited_at"], ["removed", "removed_at"]];
  function taskView() {
    const id = app.dataset.taskId;
    let logStarted = false, current = null;
    function dl(target, pairs) {
      target.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === null || v === undefined || v === "" ? "—" : String(v) })]));
    }
    function render(t) {
      current = t;
      $("#t-status").replaceChildren(statusBadge(t.status));
      $("#cancel-box").hidden = !(ACTIVE.has(t.status) && mayCancel(t));
      const c = t.cancellation;
      $("#timeline").replaceChildren(...STAGES.map(([name, key]) => {
        const at = c ? c[key] : null;
        return el("li", { cls: at ? "done" : "todo", "data-stage": name },
          el("span", { cls: "stage", text: name }), el("span", { text: at ? ` ${fine(at)}` : " —" }),
          name === "requested" && c ? el("span", { cls: "help", text: ` by ${c.requested_by}${c.force ? ", force" : `, grace ${c.grace_seconds} s`}${c.reason ? ` — “${c.reason}”` : ""}` }) : null,
          name === "signalled" && c && c.killed_at ? el("span", { cls: "help", text: ` (killed ${fine(c.killed_at)})` }) : null,
          name === "exited" && c && c.exit_code !== null && c.exited_at ? el("span", { cls: "help", text: ` (exit ${c.exit_code})` }) : null);
      }));
      dl($("#info"), [["Name", t.name], ["Owner", t.owner], ["Image", t.image], ["Command", t.command.map(shq).join(" ")],
        ["Worker", t.worker_id], ["Created", when(t.created_at)], ["Started", when(t.started_at)],
        ["Completed", when(t.completed_at)], ["Exit code", t.exit_code], ["Reason", t.reason]]);
      const r = t.resources, u = t.usage;
      dl($("#usage"), [["Requested CPU", `${r.cpu} cores`], ["Requested memory", `${r.mem_gb} GB`],
        ["GPUs", t.gpus.join(", ") || r.gpu], ["CPU in use", u.cpu_percent === null ? null : `${fmt(u.cpu_percent)} %`],
        ["Memory in use", u.mem_used_gb === null ? null : `${fmt(u.mem_used_gb, 3)} GB`], ["Measured", when(u.measured_at)]]);
      $("#events tbody").replaceChildren(...t.events.map((e) => el("tr", { cls: e.kind === "denied" ? "audit" : "" },
        el("td", { text: when(e.at) }), el("td", { text: e.kind }), el("td", { text: e.actor }), el("td", { text: e.message }))));
      if (!logStarted) { logStarted = true; follow(); }
    }
    function follow() {
      const pre = $("#log"), state = $("#log-state");
      const es = new EventSource(`/api/v1/tasks/${encodeURIComponent(id)}/logs?follow=1`);
      let fresh = true;  // the stream sends the output from its start: replace, then append
      state.textContent = "(following)";
      es.addEventListener("log", (e) => {
        let text = (fresh ? "" : pre.textContent) + JSON.parse(e.data).data;
        fresh = false;
        if (text.length > 65536) text = text.slice(-65536);
        pre.textContent = text; pre.scrollTop = pre.scrollHeight;
      });
      es.addEventListener("end", () => { es.close(); state.textContent = "(ended)"; });
      es.onerror = () => {
        es.close();
        if (current && ACTIVE.has(current.status)) { state.textContent = "(reconnecting)"; setTimeout(follow, 1000); }
        else state.textContent = "(not available)";
      };
    }
    const load = () => api(`/tasks/${encodeURIComponent(id)}`).then(render).catch((e) => toast(e.message, true));
    handlers.task = (d) => { if (d.task_id === id) load(); };
    handlers.resync = load;
    $("#cancel-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements, body = { reason: f.reason.value };
      if (f.how.value === "force") body.force = true; else if (f.grace.value !== "") body.grace = Number(f.grace.value);
      try { const a = await api(`/tasks/${encodeURIComponent(id)}/cancel`, { method: "POST", body }); toast(a.message); load(); }
      catch (err) { toast(err.message, true); }
    });
    load();
  }

  ({ workers: workersView, tasks: tasksView, task: taskView })[app.dataset.view]();
  live();
  document.documentElement.dataset.console = "up";  // for tests: the script runs
})();
