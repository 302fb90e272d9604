// The dashboard: peers, a live feed over /v1/events, a message view, topics, notices, search
// and a composer. Everything from mail is put in the page as text (textContent), never as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = "";
  const shown = new Map(); // message id -> its feed item

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function when(ms) {
    if (!ms) return "";
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return Math.max(s, 0) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return new Date(ms).toLocaleString();
  }
  async function api(path, options) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (r.status === 401) {
      location.replace("/login");
      throw new Error("logged out");
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const e = new Error((body.error && body.error.message) || "HTTP " + r.status);
      e.status = r.status;
      throw e;
    }
    return body;
  }
  function later(fn, ms) {
    let t = null;
    return () => {
      if (t) return;
      t = setTimeout(() => { t = null; fn(); }, ms);
    };
  }

  // ---- peers ----
  async function loadPeers() {
    const list = await api("/v1/peers?include_gone=true");
    const body = $("peers").tBodies[0];
    body.replaceChildren();
    for (const p of list.peers) {
      const tr = el("tr");
      tr.dataset.peer = p.address;
      tr.append(
        el("td", p.address),
        el("td", p.alive ? "live" : "gone", p.alive ? "alive" : "gone"),
        el("td", p.host),
        el("td", p.git_root || p.cwd),
        el("td", p.summary || ""),
        el("td", p.queued || ""),
        el("td", when(p.last_seen_ms)),
      );
      tr.addEventListener("click", () => { $("compose-to").value = p.name; $("compose-body").focus(); });
      body.append(tr);
    }
    if (!list.peers.length) {
      const tr = el("tr");
      const td = el("td", "no peers yet", "muted");
      td.colSpan = 7;
      tr.append(td);
      body.append(tr);
    }
  }

  // ---- feed ----
  function stateOf(m) {
    if (m.readers && m.readers.length > 1) {
      const done = m.readers.filter((r) => r.status === "delivered").length;
      return done + "/" + m.readers.length + " delivered";
    }
    return m.status;
  }
  function feedItem(m, fresh) {
    const li = el("li", null, fresh ? "new" : "");
    li.dataset.id = m.message_id;
    li.append(
      el("span", "#" + m.message_id + " ", "muted"),
      el("b", m.from),
      el("span", " → "),
      el("b", m.channel || m.to),
      el("span", " "),
      el("span", stateOf(m), "state-" + m.status),
      el("span", " " + when(m.sent_at_ms), "muted"),
    );
    li.addEventListener("click", () => openMessage(m.message_id));
    return li;
  }
  function showInFeed(m, fresh) {
    const old = shown.get(m.message_id);
    const li = feedItem(m, fresh && !old);
    if (old) old.replaceWith(li);
    else $("feed").prepend(li);
    shown.set(m.message_id, li);
  }
  async function loadFeed() {
    const log = await api("/v1/messages?limit=100");
    $("feed").replaceChildren();
    shown.clear();
    for (const m of log.messages.slice().reverse()) showInFeed(m, false);
    if (!log.messages.length) $("feed").append(el("li", "no mail yet", "muted"));
  }

  // ---- one message ----
  let openId = null;
  async function openMessage(id) {
    openId = id;
    const m = await api("/v1/messages/" + encodeURIComponent(id) + "?body=true");
    $("message-box").hidden = false;
    $("message-id").textContent = "#" + m.message_id;
    const meta = $("message-meta");
    meta.replaceChildren();
    const rows = [
      ["from", m.from],
      ["to", m.channel || m.to],
      ["sent", new Date(m.sent_at_ms).toLocaleString()],
      ["status", stateOf(m)],
      ["size", m.bytes + " bytes"],
    ];
    if (m.reply_to) rows.push(["answers", "#" + m.reply_to]);
    for (const [k, v] of rows) meta.append(el("dt", k), el("dd", v));
    $("message-body").textContent = m.body || "";
    const readers = $("message-readers").tBodies[0];
    readers.replaceChildren();
    const list = m.readers && m.readers.length ? m.readers : [{
      to: m.to, status: m.status, delivered_via: m.delivered_via, delivered_at_ms: m.delivered_at_ms,
    }];
    for (const r of list) {
      const tr = el("tr");
      tr.append(
        el("td", r.to),
        el("td", r.status, "state-" + r.status),
        el("td", r.delivered_via || ""),
        el("td", r.delivered_at_ms ? new Date(r.delivered_at_ms).toLocaleTimeString() : ""),
      );
      readers.append(tr);
    }
    const thread = $("message-thread");
    thread.replaceChildren();
    const related = [];
    if (m.reply_to) related.push(["answers", m.reply_to]);
    for (const r of m.replies || []) related.push(["reply", r]);
    if (!related.length) thread.append(el("li", "no replies", "muted"));
    for (const [kind, rid] of related) {
      const li = el("li", kind + " #" + rid);
      li.dataset.id = rid;
      li.addEventListener("click", () => openMessage(rid));
      thread.append(li);
      api("/v1/messages/" + rid + "?body=true").then((r) => {
        li.textContent = kind + " #" + rid + " " + r.from + ": " + (r.body || "").slice(0, 200);
      }).catch(() => {});
    }
  }
  $("message-close").addEventListener("click", () => { $("message-box").hidden = true; openId = null; });

  // ---- topics and notices ----
  async function loadTopics() {
    const ul = $("topics");
    let list;
    try {
      list = await api("/v1/topics");
    } catch (e) {
      if (e.status !== 404) throw e;
      list = { topics: [] };
    }
    ul.replaceChildren();
    for (const t of list.topics) {
      const li = el("li");
      li.append(el("b", "#" + t.topic), el("span", " " + t.subscribers + " subscribers, " + t.posts + " posts", "muted"));
      li.addEventListener("click", () => { $("compose-to").value = "#" + t.topic; });
      ul.append(li);
    }
    if (!list.topics.length) ul.append(el("li", "no topics", "muted"));
  }
  function noticeItem(n) {
    const li = el("li");
    li.append(el("b", n.kind + " "), el("span", n.text), el("span", " — " + n.author + ", " + when(n.at_ms), "muted"));
    return li;
  }
  async function loadNotices() {
    const list = await api("/v1/notices");
    const ul = $("notices");
    ul.replaceChildren();
    for (const n of list.notices) ul.append(noticeItem(n));
    if (!list.notices.length) ul.append(el("li", "no notices", "muted"));
  }

  // ---- search ----
  // A snippet marks each matched term between `**`: the parts go in as text, the marked ones
  // in <mark>, so a body's markup stays text.
  function snippet(s) {
    const span = el("span", null, "snippet");
    (s || "").split("**").forEach((part, i) => {
      if (part) span.append(i % 2 ? el("mark", part) : document.createTextNode(part));
    });
    return span;
  }
  function hitItem(h) {
    const li = el("li");
    li.dataset.id = h.message_id;
    li.append(
      el("span", "#" + h.message_id + " ", "muted"),
      el("b", h.from),
      el("span", " → "),
      el("b", h.to),
      el("span", " " + when(h.sent_at_ms), "muted"),
      el("br"),
      snippet(h.snippet),
    );
    li.addEventListener("click", () => openMessage(h.message_id));
    return li;
  }
  $("search").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $("search-status");
    const hits = $("search-hits");
    const params = new URLSearchParams({ q: $("search-q").value, limit: "50" });
    const from = $("search-from").value.trim();
    const topic = $("search-topic").value.trim();
    if (from) params.set("from", from);
    if (topic) params.set("topic", topic);
    status.className = "hint";
    status.textContent = "searching…";
    try {
      const r = await api("/v1/search?" + params);
      hits.replaceChildren(...r.hits.map(hitItem));
      status.textContent = r.hits.length ? r.hits.length + " found, best first" : "nothing found";
    } catch (e) {
      hits.replaceChildren();
      status.textContent = e.message;
      status.className = "error";
    }
  });

  // ---- composer ----
  $("compose").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $("compose-status");
    status.className = "";
    status.textContent = "sending…";
    try {
      const r = await api("/v1/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Peers-CSRF": csrf },
        body: JSON.stringify({ to: $("compose-to").value.trim(), message: $("compose-body").value }),
      });
      status.textContent = "sent #" + r.message_id + " to " + r.to;
      $("compose-body").value = "";
    } catch (e) {
      status.textContent = e.message;
      status.className = "error";
    }
  });

  // ---- the live stream ----
  const refreshPeers = later(() => loadPeers().catch(() => {}), 300);
  const refreshFeed = later(() => loadFeed().catch(() => {}), 300);
  const refreshTopics = later(() => loadTopics().catch(() => {}), 300);
  const refreshNotices = later(() => loadNotices().catch(() => {}), 300);
  const refreshOpen = later(() => { if (openId !== null) openMessage(openId).catch(() => {}); }, 200);
  function onEvent(e) {
    switch (e.type) {
      case "message":
        $("feed").querySelectorAll("li.muted").forEach((x) => x.remove());
        showInFeed(e.message, true);
        refreshPeers();
        break;
      case "delivered":
        refreshFeed();
        refreshPeers();
        refreshOpen();
        break;
      case "peers":
        refreshPeers();
        break;
      case "notice":
        $("notices").querySelectorAll("li.muted").forEach((x) => x.remove());
        $("notices").prepend(noticeItem(e.notice));
        break;
      case "topic":
        refreshTopics();
        break;
      case "resync":
        refreshPeers(); refreshFeed(); refreshTopics(); refreshNotices(); refreshOpen();
        break;
    }
  }
  function connect() {
    const source = new EventSource("/v1/events");
    source.onopen = () => { $("live").textContent = "live"; $("live").className = "badge on"; };
    source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "badge"; };
    source.onmessage = (m) => {
      try { onEvent(JSON.parse(m.data)); } catch (_) {}
    };
  }

  api("/v1/dashboard/session").then((s) => {
    csrf = s.csrf;
    connect();
    return Promise.all([loadPeers(), loadFeed(), loadTopics(), loadNotices()]);
  }).catch((e) => { $("live").textContent = e.message; $("live").className = "badge error"; });
  setInterval(refreshPeers, 30000);
})();
