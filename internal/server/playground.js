// The persona-router playground: edits a request and shows, as you type, what
// POST /admin/explain and POST /admin/split answer for it. Everything is rendered as text
// (textContent): a rendered persona holds user-controlled text. The admin token lives in
// sessionStorage and travels only in the Authorization header, never in a URL.
"use strict";

(function () {
  const tokenKey = "persona-router.admin-token";
  const debounceMs = 250;

  const $ = (id) => document.getElementById(id);
  const ui = {
    tokenForm: $("token-form"), token: $("token"), forget: $("token-forget"), status: $("status"),
    context: $("context"), metadata: $("metadata"), metadataError: $("metadata-error"),
    user: $("user"), userError: $("user-error"), all: $("all"), users: $("users"),
    schemaNote: $("schema-note"), schemaKeys: $("schema-keys"),
    refusal: $("refusal"), refusalStatus: $("refusal-status"), refusalCode: $("refusal-code"),
    refusalError: $("refusal-error"),
    decision: $("decision"), persona: $("persona"), rule: $("rule"), reason: $("reason"),
    overlays: $("overlays"), configVersion: $("config-version"), hint: $("hint"),
    renderError: $("render-error"),
    trace: document.querySelector("#trace tbody"), request: $("request"),
    splitNote: $("split-note"), split: $("split"),
  };

  // el makes an element holding text (never markup).
  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  }

  function row(cells, className) {
    const tr = el("tr", null, className);
    for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
    return tr;
  }

  function token() {
    return sessionStorage.getItem(tokenKey) || "";
  }

  // state tells whoever watches the page (people, the browser test) what it is doing:
  // needs-token, editing, loading, ready, invalid, unauthorized or error.
  function setState(state, message, bad) {
    document.body.dataset.state = state;
    ui.status.textContent = message || "";
    ui.status.classList.toggle("bad", Boolean(bad));
  }

  class Unauthorized extends Error {}

  // call sends one admin request with the token; it answers {status, body}.
  async function call(method, path, body, signal) {
    const init = {
      method,
      headers: { Authorization: "Bearer " + token() },
      signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error("the service did not answer: " + e.message);
    }
    if (resp.status === 401) throw new Unauthorized();
    let parsed = null;
    try {
      parsed = await resp.json();
    } catch (_) {
      parsed = null;
    }
    return { status: resp.status, body: parsed };
  }

  // object reads a JSON-object field of the editor: null when empty, undefined when invalid
  // (and says why under the field).
  function object(field, errorEl, name) {
    const text = field.value.trim();
    errorEl.textContent = "";
    field.classList.remove("invalid");
    if (text === "") return null;
    let v;
    try {
      v = JSON.parse(text);
    } catch (e) {
      errorEl.textContent = name + " is not JSON: " + e.message;
      field.classList.add("invalid");
      return undefined;
    }
    if (v !== null && (typeof v !== "object" || Array.isArray(v))) {
      errorEl.textContent = name + " must be a JSON object";
      field.classList.add("invalid");
      return undefined;
    }
    return v;
  }

  // Schema: the declared metadata keys, offered as buttons that add the key to the metadata.
  let schemaVersion = null;

  async function loadSchema() {
    const a = await call("GET", "/admin/metadata-schema");
    schemaVersion = a.body && a.body.configVersion;
    ui.schemaKeys.replaceChildren();
    const keys = (a.body && a.body.keys) || [];
    if (a.status !== 200) {
      ui.schemaNote.textContent = "metadata schema unavailable (" + a.status + ")";
      return;
    }
    ui.schemaNote.textContent = keys.length === 0
      ? "The configuration declares no metadata schema: any key is accepted."
      : "Click a key to add it to the metadata.";
    for (const k of keys) {
      const b = el("button", k.name);
      b.type = "button";
      b.dataset.key = k.name;
      const enumText = k.enum && k.enum.length ? ": " + k.enum.map((v) => JSON.stringify(v)).join(" | ") : "";
      b.append(el("span", k.type + enumText, "type"));
      b.title = "add " + k.name + " to the metadata";
      b.addEventListener("click", () => addKey(k));
      const li = el("li");
      li.append(b);
      ui.schemaKeys.append(li);
    }
  }

  function addKey(k) {
    const md = object(ui.metadata, ui.metadataError, "metadata");
    if (md === undefined) return;
    const next = md || {};
    if (!(k.name in next)) {
      const zero = { string: "", number: 0, integer: 0, boolean: false };
      next[k.name] = k.enum && k.enum.length ? k.enum[0] : zero[k.type];
    }
    ui.metadata.value = JSON.stringify(next, null, 2);
    edited();
  }

  // Answers: the decision (or refusal), the trace, the request to Anam, the split.
  function clearDecision() {
    for (const e of [ui.persona, ui.rule, ui.reason, ui.overlays, ui.configVersion, ui.hint, ui.renderError,
      ui.refusalStatus, ui.refusalCode, ui.refusalError, ui.request]) {
      e.textContent = "";
    }
    ui.trace.replaceChildren();
    ui.split.replaceChildren();
    ui.splitNote.textContent = "";
    ui.refusal.hidden = true;
    ui.decision.hidden = false;
  }

  function renderExplain(x) {
    clearDecision();
    ui.configVersion.textContent = x.configVersion || "";
    if (x.refused) {
      ui.refusal.hidden = false;
      ui.decision.hidden = true;
      ui.refusalStatus.textContent = String(x.refused.status);
      ui.refusalCode.textContent = x.refused.code;
      ui.refusalError.textContent = x.refused.error;
      ui.request.textContent = "(refused: nothing is sent to Anam)";
      return;
    }
    ui.persona.textContent = x.persona;
    ui.rule.textContent = x.rule === null ? "none (default)" : x.rule;
    ui.reason.textContent = x.reason;
    ui.overlays.textContent = x.overlays && x.overlays.length ? x.overlays.join(", ") : "none";
    ui.hint.textContent = x.hint || "";
    ui.renderError.textContent = x.error ? "cannot render: " + x.error : "";
    ui.request.textContent = x.request === null ? "(not rendered)" : JSON.stringify(x.request, null, 2);
    for (const st of x.trace || []) {
      let result = st.matched ? "matched" : "not matched";
      let className = st.matched ? "matched" : "failed";
      if (st.skipped) {
        result = "skipped (" + st.skipped + ")";
        className = "skipped";
      } else if (st.error) {
        result = "error";
        className = "errored";
      }
      const buckets = Object.entries(st.buckets || {}).map(([k, v]) => "bucket(" + JSON.stringify(k) + ") = " + v);
      ui.trace.append(row([
        el("td", st.rule, "mono"), el("td", result), el("td", st.error || st.failed || "", "mono"),
        el("td", buckets.join("\n"), "mono"),
      ], className));
    }
    if (!x.trace || x.trace.length === 0) {
      ui.trace.append(row([el("td", "no rule tried: the context index holds none for this context"), "", "", ""]));
    }
  }

  function pct(n) {
    return (Math.round(n * 10) / 10).toFixed(1) + "%";
  }

  function shareCell(share) {
    const td = el("td", null, "share");
    td.append(el("span", pct(share), "pct"));
    const bar = el("span", null, "bar");
    bar.style.width = Math.max(0, Math.min(100, share)) * 0.6 + "%";
    td.append(bar);
    return td;
  }

  function splitTable(head, rows) {
    const table = el("table", null, "split");
    const thead = el("thead");
    thead.append(row(head.map((h) => el("th", h))));
    const tbody = el("tbody");
    for (const r of rows) tbody.append(r);
    table.append(thead, tbody);
    return table;
  }

  function renderSplit(a) {
    ui.split.replaceChildren();
    ui.splitNote.textContent = "";
    if (a.status === 404) {
      ui.splitNote.textContent = "split unavailable: this service has no POST /admin/split";
      return;
    }
    if (a.status !== 200) {
      ui.splitNote.textContent = "no split: " + ((a.body && a.body.error) || "status " + a.status);
      return;
    }
    const sp = a.body;
    ui.splitNote.textContent = sp.users + " simulated signed-in users (ids u-0 … u-" + (sp.users - 1) +
      ") with this context and metadata";
    const rules = (sp.rules || []).map((r) => {
      const buckets = (r.buckets || []).map((b) => b.condition + ": nominal " + pct(b.nominal));
      return row([
        el("td", r.rule === null ? "default" : r.rule, "mono"), el("td", r.persona || "", "mono"), shareCell(r.share),
        el("td", r.users + " of " + r.reached + " reached (" + pct(r.shareOfReached) + ")"),
        el("td", buckets.join("\n") + (r.failed ? "\nfailed at run time for " + r.failed : ""), "mono"),
      ]);
    });
    ui.split.append(el("h3", "Rules"), splitTable(["rule", "persona", "share", "users", "rollout"], rules));
    const personas = (sp.personas || []).map((p) => row([el("td", p.persona, "mono"), shareCell(p.share), el("td", p.users)]));
    ui.split.append(el("h3", "Personas"), splitTable(["persona", "share", "users"], personas));
    if (sp.overlays && sp.overlays.length) {
      const overlays = sp.overlays.map((o) => row([el("td", o.rule, "mono"), shareCell(o.share), el("td", o.users)]));
      ui.split.append(el("h3", "Overlays"), splitTable(["overlay", "share", "users"], overlays));
    }
    if (sp.renderErrors) {
      ui.split.append(el("p", sp.renderErrors + " users' persona could not be rendered: " + sp.renderError, "error"));
    }
  }

  // Running: every edit waits debounceMs for the next; a newer run cancels an older one.
  let timer = null;
  let running = null;

  function edited() {
    // An answer to an older request must not show after this edit.
    if (running) running.abort();
    setState("editing", "");
    clearTimeout(timer);
    timer = setTimeout(run, debounceMs);
  }

  async function run() {
    if (running) running.abort();
    if (!token()) {
      setState("needs-token", "Type the admin token (ADMIN_TOKEN) to start.");
      return;
    }
    const metadata = object(ui.metadata, ui.metadataError, "metadata");
    const user = object(ui.user, ui.userError, "user");
    if (metadata === undefined || user === undefined) {
      setState("invalid", "Fix the request to see its answer.", true);
      return;
    }
    const ctl = new AbortController();
    running = ctl;
    setState("loading", "…");
    const context = ui.context.value === "" ? null : ui.context.value;
    const users = ui.users.value === "" ? null : Number(ui.users.value);
    try {
      if (schemaVersion === null) await loadSchema();
      const explained = await call("POST", "/admin/explain", { context, metadata, user, all: ui.all.checked }, ctl.signal);
      if (ctl.signal.aborted) return;
      if (explained.status !== 200) {
        clearDecision();
        setState("error", "explain failed: " + ((explained.body && explained.body.error) || "status " + explained.status), true);
        return;
      }
      // A request the endpoint refuses has no split either: the refusal says why.
      const split = explained.body.refused
        ? { status: explained.body.refused.status, body: { error: "the request is refused (see above)" } }
        : await call("POST", "/admin/split", { context, metadata, users }, ctl.signal);
      if (ctl.signal.aborted) return;
      renderExplain(explained.body);
      renderSplit(split);
      if (explained.body.configVersion !== schemaVersion) await loadSchema();
      setState("ready", "configuration " + explained.body.configVersion);
    } catch (e) {
      if (ctl.signal.aborted) return;
      if (e instanceof Unauthorized) {
        schemaVersion = null;
        clearDecision();
        setState("unauthorized", "The admin token is missing or wrong.", true);
        return;
      }
      setState("error", "Error: " + e.message, true);
    } finally {
      if (running === ctl) running = null;
    }
  }

  ui.tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(tokenKey, ui.token.value);
    schemaVersion = null;
    run();
  });
  ui.forget.addEventListener("click", () => {
    sessionStorage.removeItem(tokenKey);
    ui.token.value = "";
    schemaVersion = null;
    ui.schemaKeys.replaceChildren();
    ui.schemaNote.textContent = "";
    clearDecision();
    run();
  });
  for (const field of [ui.context, ui.metadata, ui.user, ui.users]) field.addEventListener("input", edited);
  ui.all.addEventListener("change", edited);

  ui.token.value = token();
  run();
})();
