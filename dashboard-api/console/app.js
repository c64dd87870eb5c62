// pantau web console: login, operator wall, incidents and dispatch, map, planner history, admin.
// Plain JavaScript served by pantau itself; talks only to /api/v1 of the same origin.
"use strict";

// ---- Labels (Bahasa Indonesia, English) -------------------------------------------------------
const LABELS = {
  en: {
    login: "Log in", logout: "Log out", user: "User name", password: "Password",
    wall: "Wall", incidents: "Incidents", planner: "Planner", admin: "Admin", api: "API",
    alerts: "Live alerts", no_alerts: "No alerts yet", acknowledge: "Acknowledge", open: "Open",
    assign: "Assign", unit: "Unit (e.g. Patrol 7)", note: "Note", add_note: "Add note",
    escalate: "Escalate", close: "Close", state: "State", camera: "Camera", rule: "Rule",
    group: "Camera group", agencies: "Agencies", all_agencies: "All agencies (every camera)", node: "Node", handover: "Hand over", handover_to: "Hand over to", handed_to: "Handed over to", handover_note: "Write a note for the receiving agency",
    class: "Class", direction: "Direction", time: "Time", severity: "Severity",
    timeline: "Timeline", audit: "Audit trail", snapshot: "Snapshot", no_snapshot: "No snapshot",
    assignee: "Assigned to", more: "Load more", all: "All", from: "From", to: "To",
    bucket: "Interval", show: "Show", download_csv: "Download CSV", volumes: "Traffic volumes",
    total: "Total", no_data: "No counts in this range", cameras: "Cameras", users: "Users",
    add_camera: "Add camera", save: "Save", remove: "Remove", name: "Name", url: "Stream URL",
    analysis_fps: "Analysed frames per second", lines: "Counting lines", zones: "Zones",
    new_line: "Draw line", new_zone: "Draw zone", finish: "Finish", cancel: "Cancel",
    draw_hint: "Click on the frame to place points, then Finish.", role: "Role",
    add_user: "Add user", disabled: "Disabled", saved: "Saved", streaming: "streaming", degraded: "Node over capacity: every camera is analysed at a lower rate",
    wrong_login: "Wrong user name or password", session_over: "Your session ended; log in again",
    new: "new", acknowledged: "acknowledged", assigned: "assigned", escalated: "escalated", closed: "closed",
    connecting: "connecting", backoff: "reconnecting", stalled: "stalled", failed: "failed", stopped: "stopped",
    live_lost: "Live connection lost; reconnecting…", id: "Id", enable: "Enable", disable: "Disable",
    map: "Map", unplaced: "Cameras without a position", no_position: "add latitude and longitude to its [cameras.calibration]",
    none_placed: "No camera has a position yet", lanes_off: "Lanes not on the map", open_incidents: "open incidents",
    limit: "limit",
    snooze: "Snooze", snoozed: "Snoozed", snooze_for: "Snooze this rule for", minutes: "minutes",
    save_clip: "Save clip", clip_saved: "Clip saved: incident raised", evidence: "Evidence clip",
    recording: "Recording, ready at", clip_failed: "No clip", clip_deleted: "Clip deleted",
    download_evidence: "Download evidence (zip)", keep: "Keep", release: "Release", kept_by: "Kept by",
    report: "Citizen report", category: "Category", source: "Source", place: "Place", photos: "Photos",
    matched_cameras: "Cameras that may see it", no_camera: "No camera sees this place", link_alert: "Link to alert",
    linked: "Linked events", pick_alert: "Alert of a nearby camera", reports: "Reports",
    integrations: "Integrations (citizen apps)", add_integration: "Add integration", callback_url: "Callback URL (optional)",
    key_once: "Give these to the app now; they are not shown again", key: "Key", callback_secret: "Callback secret",
    until: "until", objects: "objects", lanes: "Lanes", new_lane: "Draw lane",
    lane_hint: "Click the lane's corners, then Finish; then click the tail and the head of its direction arrow.",
    speed_limit: "Speed limit km/h (optional)", stopping: "Stopping allowed",
    calibration: "Calibration", calib_points: "Pick road points",
    calib_hint: "Click a point of the road (e.g. the end of a lane marking) and give its place on the ground in metres; four or more.",
    ground_prompt: "Ground position of this point in metres, as x, y", latitude: "Latitude", longitude: "Longitude",
    heading: "Heading (degrees from north)", clear: "Clear",
    zone_kind: "Zone kind", watch: "watch", parking: "parking", crossing: "crossing", box_junction: "box junction",
    no_stopping: "no stopping", max_persons: "Crowd limit (persons)", max_density: "Crowd limit (persons per m²)", loitering_s: "Loitering after (s)",
    rules: "Rule parameters", rules_hint: "Durations in seconds, speeds in km/h; empty: the default.",
  },
  id: {
    login: "Masuk", logout: "Keluar", user: "Nama pengguna", password: "Kata sandi",
    wall: "Layar", incidents: "Insiden", planner: "Perencana", admin: "Admin", api: "API",
    alerts: "Peringatan langsung", no_alerts: "Belum ada peringatan", acknowledge: "Terima", open: "Buka",
    assign: "Tugaskan", unit: "Unit (mis. Patroli 7)", note: "Catatan", add_note: "Tambah catatan",
    escalate: "Eskalasi", close: "Tutup", state: "Status", camera: "Kamera", rule: "Aturan",
    group: "Grup kamera", agencies: "Instansi", all_agencies: "Semua instansi (semua kamera)", node: "Node", handover: "Serahkan", handover_to: "Serahkan ke", handed_to: "Diserahkan ke", handover_note: "Tulis catatan untuk instansi penerima",
    class: "Kelas", direction: "Arah", time: "Waktu", severity: "Tingkat",
    timeline: "Kronologi", audit: "Jejak audit", snapshot: "Cuplikan", no_snapshot: "Tidak ada cuplikan",
    assignee: "Ditugaskan ke", more: "Muat lagi", all: "Semua", from: "Dari", to: "Sampai",
    bucket: "Interval", show: "Tampilkan", download_csv: "Unduh CSV", volumes: "Volume lalu lintas",
    total: "Jumlah", no_data: "Tidak ada hitungan pada rentang ini", cameras: "Kamera", users: "Pengguna",
    add_camera: "Tambah kamera", save: "Simpan", remove: "Hapus", name: "Nama", url: "URL aliran",
    analysis_fps: "Bingkai dianalisis per detik", lines: "Garis hitung", zones: "Zona",
    new_line: "Gambar garis", new_zone: "Gambar zona", finish: "Selesai", cancel: "Batal",
    draw_hint: "Klik pada gambar untuk menaruh titik, lalu Selesai.", role: "Peran",
    add_user: "Tambah pengguna", disabled: "Nonaktif", saved: "Tersimpan", streaming: "mengalir", degraded: "Node melebihi kapasitas: setiap kamera dianalisis lebih jarang",
    wrong_login: "Nama pengguna atau kata sandi salah", session_over: "Sesi berakhir; silakan masuk lagi",
    new: "baru", acknowledged: "diterima", assigned: "ditugaskan", escalated: "dieskalasi", closed: "ditutup",
    connecting: "menyambung", backoff: "menyambung ulang", stalled: "macet", failed: "gagal", stopped: "berhenti",
    live_lost: "Koneksi langsung terputus; menyambung ulang…", id: "Id", enable: "Aktifkan", disable: "Nonaktifkan",
    map: "Peta", unplaced: "Kamera tanpa posisi", no_position: "tambahkan latitude dan longitude di [cameras.calibration]",
    none_placed: "Belum ada kamera dengan posisi", lanes_off: "Lajur yang tidak tampil di peta", open_incidents: "insiden terbuka",
    limit: "batas",
    snooze: "Tunda", snoozed: "Ditunda", snooze_for: "Tunda aturan ini selama", minutes: "menit",
    save_clip: "Simpan klip", clip_saved: "Klip disimpan: insiden dibuat", evidence: "Klip bukti",
    recording: "Sedang merekam, siap pukul", clip_failed: "Tidak ada klip", clip_deleted: "Klip dihapus",
    download_evidence: "Unduh bukti (zip)", keep: "Simpan permanen", release: "Lepaskan", kept_by: "Disimpan oleh",
    report: "Laporan warga", category: "Kategori", source: "Sumber", place: "Lokasi", photos: "Foto",
    matched_cameras: "Kamera yang mungkin melihatnya", no_camera: "Tidak ada kamera yang melihat lokasi ini", link_alert: "Tautkan ke peringatan",
    linked: "Kejadian tertaut", pick_alert: "Peringatan kamera terdekat", reports: "Laporan",
    integrations: "Integrasi (aplikasi warga)", add_integration: "Tambah integrasi", callback_url: "URL callback (opsional)",
    key_once: "Berikan ke aplikasi sekarang; tidak ditampilkan lagi", key: "Kunci", callback_secret: "Rahasia callback",
    until: "sampai", objects: "objek", lanes: "Lajur", new_lane: "Gambar lajur",
    lane_hint: "Klik sudut-sudut lajur, lalu Selesai; lalu klik pangkal dan ujung panah arah lajur.",
    speed_limit: "Batas kecepatan km/jam (opsional)", stopping: "Boleh berhenti",
    calibration: "Kalibrasi", calib_points: "Pilih titik jalan",
    calib_hint: "Klik satu titik jalan (mis. ujung marka) dan isi letaknya di tanah dalam meter; empat atau lebih.",
    ground_prompt: "Letak titik ini di tanah dalam meter, sebagai x, y", latitude: "Lintang", longitude: "Bujur",
    heading: "Arah hadap (derajat dari utara)", clear: "Hapus",
    zone_kind: "Jenis zona", watch: "pantau", parking: "parkir", crossing: "penyeberangan", box_junction: "kotak kuning",
    no_stopping: "dilarang berhenti", max_persons: "Batas kerumunan (orang)", max_density: "Batas kerumunan (orang per m²)", loitering_s: "Berlama-lama setelah (detik)",
    rules: "Parameter aturan", rules_hint: "Durasi dalam detik, kecepatan dalam km/jam; kosong: bawaan.",
  },
};
let lang = localStorage.getItem("pantau.lang") || ((navigator.language || "").startsWith("id") ? "id" : "en");
const t = (k) => LABELS[lang][k] ?? LABELS.en[k] ?? k;

// ---- Small helpers -----------------------------------------------------------------------------
const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) e.append(k);
  return e;
}
function toast(msg, bad = false) {
  const box = $("#toast");
  box.textContent = msg;
  box.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.className = ""), 4000);
}
const fmtTime = (s) => (s ? new Date(s).toLocaleString(lang === "id" ? "id-ID" : "en-GB") : "");
class ApiFailure extends Error {
  constructor(status, body) { super(body?.message || `HTTP ${status}`); this.status = status; this.body = body; }
}
async function api(path, opts = {}) {
  const res = await fetch(`/api/v1${path}`, {
    method: opts.method || "GET",
    headers: opts.body ? { "content-type": "application/json" } : {},
    body: opts.body ? JSON.stringify(opts.body) : undefined,
    credentials: "same-origin",
  });
  if (res.status === 401 && path !== "/auth/login" && me) {
    me = null;
    toast(t("session_over"), true);
    location.hash = "#/login";
    throw new ApiFailure(401, await res.json().catch(() => null));
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new ApiFailure(res.status, body);
  }
  if (res.status === 204) return null;
  return res.json();
}
function explain(e) {
  const issues = e.body?.issues?.map((i) => `${i.path}: ${i.message}`).join("\n");
  toast(issues ? `${e.message}\n${issues}` : e.message, true);
}
const can = {
  view: () => ["operator", "dispatcher", "admin"].includes(me?.role),
  dispatch: () => ["dispatcher", "admin"].includes(me?.role),
  history: () => ["planner", "admin"].includes(me?.role),
  admin: () => me?.role === "admin",
};

// ---- Live stream, shared by pages ---------------------------------------------------------------
let me = null;
let live = null;
const liveHandlers = new Set();
function startLive() {
  if (live || !can.view()) return;
  live = new EventSource("/api/v1/live");
  for (const kind of ["event", "status", "incident"]) {
    live.addEventListener(kind, (m) => {
      const data = JSON.parse(m.data);
      for (const h of liveHandlers) h(kind, data);
    });
  }
  live.onerror = () => { if (me) toast(t("live_lost"), true); };
}
function stopLive() { live?.close(); live = null; }

function beep() {
  try {
    const ctx = (beep.ctx ||= new AudioContext());
    const o = ctx.createOscillator();
    const g = ctx.createGain();
    o.frequency.value = 880;
    g.gain.setValueAtTime(0.15, ctx.currentTime);
    g.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.4);
    o.connect(g).connect(ctx.destination);
    o.start();
    o.stop(ctx.currentTime + 0.4);
  } catch { /* no audio device: the visual cue remains */ }
}

// ---- Layout ---------------------------------------------------------------------------------------
function renderNav() {
  const nav = $("#nav");
  nav.textContent = "";
  const items = [
    ["wall", can.view()], ["incidents", can.view()], ["map", can.view()], ["planner", can.history()], ["admin", can.admin()],
  ];
  for (const [page, ok] of items) {
    if (ok) nav.append(el("a", { href: `#/${page}`, "data-page": page, text: t(page) }));
  }
  nav.append(el("a", { href: "/api/docs", text: t("api") }));
  const current = location.hash.split("/")[1];
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.page === current);
  $("#who").textContent = me ? `${me.user} · ${me.role}${me.agencies?.length ? ` · ${me.agencies.join(", ")}` : ""}` : "";
  $("#top").hidden = !me;
  $("#logout").textContent = t("logout");
}
let cleanup = [];
// Each navigation gets a number; a page whose data arrives after a newer navigation is dropped.
let routeSeq = 0;
class Stale extends Error {}
function page(seq, ...kids) {
  if (seq !== routeSeq) throw new Stale();
  for (const c of cleanup) c();
  cleanup = [];
  const main = $("#main");
  main.textContent = "";
  main.append(...kids);
  renderNav();
}
const stateBadge = (s) => el("span", { class: `badge st-${s}`, "data-state": s, text: t(s) });

// ---- Login -----------------------------------------------------------------------------------------
function loginPage() {
  const mine = routeSeq;
  stopLive();
  const err = el("p", { class: "error", id: "login-error" });
  const form = el("form", { class: "card login", id: "login-form" },
    el("h1", { text: "pantau" }),
    el("label", { text: t("user") }, el("input", { name: "user", autocomplete: "username", required: true })),
    el("label", { text: t("password") }, el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    err,
    el("button", { type: "submit", text: t("login") }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    try {
      const r = await api("/auth/login", { method: "POST", body: { user: f.get("user"), password: f.get("password") } });
      // The session as the API sees it (with the user's agencies).
      try { me = await api("/auth/me"); } catch { me = { user: r.user, role: r.role }; }
      beep.ctx ||= (window.AudioContext ? new AudioContext() : undefined); // unlock audio on this click
      location.hash = can.view() ? "#/wall" : "#/planner";
    } catch (e) {
      err.textContent = e.status === 401 ? t("wrong_login") : e.message;
    }
  });
  page(mine, form);
}

// ---- Wall --------------------------------------------------------------------------------------------
// One item per alert group: the group's first alert is the incident dispatch acts on; later
// alerts of the group update its count and time. `size` is how many alerts it gathered.
function alertItem(ev, dispatch, size = 1, latest = ev) {
  if (ev.kind === "citizen_report") return reportItem(ev, dispatch);
  const o = latest.object;
  const what = o ? `${o.class} #${o.track_id}` : latest.kind.replaceAll("_", " ");
  const count = size > 1 ? ` · ${size} ${t("objects")}` : "";
  const li = el("li", { class: `alert sev-${ev.severity}`, "data-event": ev.id, "data-severity": ev.severity,
                        "data-time": latest.captured_at },
    el("div", { class: "row" },
      el("strong", { text: `${ev.camera} · ${ev.rule} · ${ev.kind.replaceAll("_", " ")}` }),
      stateBadge(dispatch?.state || "new")),
    el("div", { class: "meta", text: `${fmtTime(latest.captured_at)} · ${what}${count}` }),
    latest.snapshot ? el("img", { class: "alert-snapshot", loading: "lazy", alt: t("snapshot"),
      src: `/api/v1/snapshots/${latest.snapshot}` }) : null,
    el("div", { class: "row" },
      can.view() && ["new", "escalated"].includes(dispatch?.state || "new")
        ? el("button", { class: "ack", text: t("acknowledge"), onclick: (e) => act(ev.id, { action: "acknowledge" }, e.target) })
        : null,
      can.view() ? snoozeControl(ev.camera, ev.rule) : null,
      el("a", { class: "button ghost", href: `#/incident/${ev.id}`, text: t("open") })));
  return li;
}
// Critical before warning; within each, the newest first.
const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
// A citizen report on the wall: what and where, from which app; opened like an alert.
function reportItem(ev, dispatch) {
  const d = ev.details || {};
  const text = (d.text || "").length > 140 ? `${d.text.slice(0, 140)}…` : d.text || "";
  return el("li", { class: `alert report sev-${ev.severity}`, "data-event": ev.id, "data-kind": "citizen_report",
                    "data-severity": ev.severity, "data-time": ev.captured_at },
    el("div", { class: "row" },
      el("strong", { text: `${t("report")} · ${d.category || ""} · ${d.source || ""}` }),
      stateBadge(dispatch?.state || "new")),
    el("div", { class: "meta", text: `${fmtTime(ev.captured_at)} · ${ev.camera === "reports" ? t("no_camera") : ev.camera}` }),
    el("p", { class: "report-text", text }),
    el("div", { class: "row" },
      can.view() && ["new", "escalated"].includes(dispatch?.state || "new")
        ? el("button", { class: "ack", text: t("acknowledge"), onclick: (e) => act(ev.id, { action: "acknowledge" }, e.target) })
        : null,
      el("a", { href: `#/incident/${ev.id}`, text: t("open") })));
}

function sortFeed(feed) {
  const items = [...feed.querySelectorAll("li.alert")];
  items.sort((a, b) => (SEVERITY_RANK[a.dataset.severity] - SEVERITY_RANK[b.dataset.severity])
    || (b.dataset.time > a.dataset.time ? 1 : b.dataset.time < a.dataset.time ? -1 : 0));
  for (const li of items) feed.append(li);
}
function snoozeControl(camera, rule) {
  const minutes = el("select", { class: "snooze-minutes", title: t("snooze_for") },
    ...[15, 30, 60, 240, 1440].map((m) => el("option", { value: m, text: `${m} ${t("minutes")}` })));
  const button = el("button", { class: "ghost snooze", text: t("snooze"), onclick: async () => {
    button.disabled = true;
    try {
      const s = await api(`/cameras/${encodeURIComponent(camera)}/snoozes`, { method: "POST", body: { rule, minutes: Number(minutes.value) } });
      toast(`${t("snoozed")}: ${camera} · ${rule} ${t("until")} ${fmtTime(s.until)}`);
      document.dispatchEvent(new CustomEvent("pantau-snooze", { detail: s }));
    } catch (e) { explain(e); }
    button.disabled = false;
  } });
  return el("span", { class: "snooze-control" }, minutes, button);
}
async function act(id, body, button) {
  if (button) button.disabled = true;
  try {
    await api(`/events/${id}/actions`, { method: "POST", body });
    toast(`${t(body.action)} ✓`);
    return true;
  } catch (e) {
    explain(e);
    if (button) button.disabled = false;
    return false;
  }
}
async function wallPage() {
  const mine = routeSeq;
  const grid = el("div", { class: "tiles", id: "tiles" });
  const feed = el("ul", { class: "feed", id: "alert-feed" }, el("li", { class: "empty", text: t("no_alerts") }));
  page(mine, el("div", { class: "wall" }, grid, el("aside", { class: "card" }, el("h2", { text: t("alerts") }), feed)));
  startLive();
  const cams = await api("/cameras");
  if (mine !== routeSeq) return;
  const tiles = {};
  // What is snoozed on a tile: camera -> rule -> until.
  const snoozed = {};
  const showSnoozes = (id) => {
    const list = Object.entries(snoozed[id] || {}).filter(([, until]) => new Date(until) > new Date());
    const box = tiles[id]?.snoozes;
    if (!box) return;
    box.textContent = list.length ? `${t("snoozed")}: ${list.map(([r, u]) => `${r} ${t("until")} ${new Date(u).toLocaleTimeString(lang === "id" ? "id-ID" : "en-GB", { hour: "2-digit", minute: "2-digit" })}`).join(", ")}` : "";
  };
  for (const c of cams) {
    const id = c.status?.id || c.config?.id;
    const img = el("img", { alt: id, "data-camera": id });
    const badge = el("span", { class: `badge cam-${c.status?.state || "stopped"}`, text: t(c.status?.state || "stopped") });
    if (c.status?.degraded) {
      // Fair degradation: the node is over capacity and analyses every camera at a lower rate.
      badge.textContent += ` · ${c.status.analysis_fps_now}/${c.status.analysis_fps} fps`;
      badge.title = t("degraded");
    }
    const snoozes = el("span", { class: "tile-snoozes", "data-camera": id });
    tiles[id] = { img, badge, snoozes };
    snoozed[id] = Object.fromEntries((c.snoozes || []).map((s) => [s.rule, s.until]));
    // "Save clip": an incident with the video around now (pre- and post-roll).
    const save = el("button", { class: "ghost small save-clip", "data-camera": id, text: t("save_clip"),
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          const r = await api(`/cameras/${encodeURIComponent(id)}/clips`, { method: "POST", body: {} });
          toast(`${t("clip_saved")} · ${t("recording")} ${fmtTime(r.ready_at)}`);
        } catch (err) { explain(err); }
        e.target.disabled = false;
      } });
    grid.append(el("figure", { class: "tile" }, img,
      el("figcaption", {}, el("span", { text: c.config?.name || c.status?.name || id }),
        // In a fleet: the node that runs the camera now.
        c.node ? el("span", { class: "tile-node", "data-camera": id, title: t("node"), text: c.node }) : null,
        snoozes, save, badge)));
    showSnoozes(id);
  }
  const onSnooze = (e) => {
    const s = e.detail;
    (snoozed[s.camera] ||= {})[s.rule] = s.until;
    showSnoozes(s.camera);
  };
  document.addEventListener("pantau-snooze", onSnooze);
  cleanup.push(() => document.removeEventListener("pantau-snooze", onSnooze));
  // Snoozes end by themselves: the tiles follow.
  const snoozeTimer = setInterval(() => Object.keys(tiles).forEach(showSnoozes), 30000);
  cleanup.push(() => clearInterval(snoozeTimer));
  const refresh = () => {
    for (const [id, tile] of Object.entries(tiles)) {
      const next = new Image();
      next.onload = () => (tile.img.src = next.src);
      next.src = `/api/v1/cameras/${encodeURIComponent(id)}/frame.jpg?t=${Date.now()}`;
    }
  };
  refresh();
  const timer = setInterval(refresh, 1000);
  cleanup.push(() => clearInterval(timer));
  const items = {};
  // Alert groups: group id -> { first alert, dispatch, size, latest alert }.
  const groups = {};
  const show = (ev, dispatch, fresh) => {
    $(".empty", feed)?.remove();
    const gid = ev.details?.group || ev.id;
    const g = groups[gid] || (groups[gid] = { first: ev, dispatch, size: 0, latest: ev });
    // Each new alert (not an update of one) is one more object in the group.
    const adds = ev.lifecycle === "new" || ev.lifecycle === "single";
    g.size = adds ? Math.max(g.size + 1, ev.details?.group_size || 1) : Math.max(g.size, 1);
    if (ev.captured_at >= g.latest.captured_at) g.latest = ev;
    if (dispatch) g.dispatch = dispatch;
    const li = alertItem(g.first, g.dispatch, g.size, g.latest);
    items[g.first.id]?.remove();
    items[g.first.id] = li;
    feed.append(li);
    sortFeed(feed);
    if (fresh) {
      li.classList.add("flash");
      beep();
    }
    while (feed.children.length > 50) feed.lastChild.remove();
  };
  try {
    const recent = await api("/events?severity=warning,critical&limit=20");
    for (const it of recent.items.reverse()) {
      if (!it.event.details?.snoozed_until) show(it.event, it.dispatch, false);
    }
  } catch (e) { explain(e); }
  if (mine !== routeSeq) return;
  const onLive = (kind, data) => {
    // Snoozed alerts are stored and searchable, but do not ring on the wall.
    if (kind === "event" && data.severity !== "info" && data.lifecycle !== "end" && !data.details?.snoozed_until) {
      show(data, null, data.lifecycle !== "update");
    }
    if (kind === "incident" && items[data.event_id]) {
      const old = items[data.event_id];
      old.querySelector(".badge").replaceWith(stateBadge(data.state));
      if (!["new", "escalated"].includes(data.state)) old.querySelector("button.ack")?.remove();
    }
    if (kind === "status" && tiles[data.camera_id]) {
      const b = tiles[data.camera_id].badge;
      b.className = `badge cam-${data.state}`;
      b.textContent = t(data.state);
    }
  };
  liveHandlers.add(onLive);
  cleanup.push(() => liveHandlers.delete(onLive));
}

// ---- Incidents list and incident view -----------------------------------------------------------------
async function incidentsPage() {
  const mine = routeSeq;
  const stateSel = el("select", { id: "state-filter" },
    el("option", { value: "", text: t("all") }),
    ...["new", "acknowledged", "assigned", "escalated", "closed"].map((s) => el("option", { value: s, text: t(s) })));
  const body = el("tbody");
  const more = el("button", { class: "ghost", text: t("more"), hidden: true });
  let cursor = null;
  const load = async (reset) => {
    if (reset) { body.textContent = ""; cursor = null; }
    const q = new URLSearchParams({ severity: "warning,critical", limit: "25" });
    if (stateSel.value) q.set("state", stateSel.value);
    if (cursor) q.set("cursor", cursor);
    try {
      const r = await api(`/events?${q}`);
      for (const it of r.items) {
        const ev = it.event;
        body.append(el("tr", {},
          el("td", { text: fmtTime(ev.captured_at) }), el("td", { text: ev.camera }), el("td", { text: ev.rule }),
          el("td", { text: ev.object?.class || "" }), el("td", {}, stateBadge(it.dispatch?.state || "new")),
          el("td", { text: it.dispatch?.assignee || "" }),
          el("td", {}, el("a", { href: `#/incident/${ev.id}`, text: t("open") }))));
      }
      cursor = r.next_cursor;
      more.hidden = !cursor;
    } catch (e) { explain(e); }
  };
  stateSel.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  page(mine, el("section", { class: "card" },
    el("div", { class: "row" }, el("h2", { text: t("incidents") }), el("label", { class: "inline", text: t("state") }, stateSel)),
    el("table", { class: "list" },
      el("thead", {}, el("tr", {}, ...["time", "camera", "rule", "class", "state", "assignee", ""].map((k) => el("th", { text: k ? t(k) : "" })))),
      body),
    more));
  await load(true);
}

async function incidentPage(id) {
  const mine = routeSeq;
  let d;
  try { d = await api(`/events/${encodeURIComponent(id)}`); } catch (e) { explain(e); return; }
  const ev = d.event;
  const state = d.dispatch?.state;
  const unit = el("input", { id: "unit", placeholder: t("unit") });
  const note = el("textarea", { id: "note", rows: 3, placeholder: t("note") });
  const run = async (body, btn) => { if (await act(id, body, btn)) incidentPage(id); };
  const actions = el("div", { class: "actions" });
  if (d.dispatch) {
    if (["new", "escalated"].includes(state)) {
      actions.append(el("button", { id: "do-ack", text: t("acknowledge"), onclick: (e) => run({ action: "acknowledge" }, e.target) }));
    }
    if (can.dispatch() && state !== "closed") {
      actions.append(
        el("div", { class: "row" }, unit, el("button", { id: "do-assign", text: t("assign"), onclick: (e) => unit.value.trim() ? run({ action: "assign", unit: unit.value.trim() }, e.target) : unit.focus() })),
        el("div", { class: "row" },
          el("button", { id: "do-escalate", class: "warn", text: t("escalate"), onclick: (e) => run({ action: "escalate", note: note.value.trim() || undefined }, e.target) }),
          el("button", { id: "do-close", class: "ghost", text: t("close"), onclick: (e) => run({ action: "close", note: note.value.trim() || undefined }, e.target) })));
    }
    if (can.dispatch()) {
      actions.append(note, el("button", { id: "do-note", class: "ghost", text: t("add_note"), onclick: (e) => note.value.trim() && run({ action: "note", note: note.value.trim() }, e.target) }));
    }
    // Agencies (police, city hall) hand incidents to each other with a note.
    let agencies = [];
    try { agencies = await api("/agencies"); } catch { agencies = []; }
    if (mine !== routeSeq) return;
    const others = agencies.filter((a) => !a.mine);
    if (can.dispatch() && state !== "closed" && others.length) {
      const to = el("select", { id: "handover-to", "aria-label": t("handover_to") },
        ...others.map((a) => el("option", { value: a.id, text: a.name })));
      actions.append(el("div", { class: "row" }, to, el("button", { id: "do-handover", text: t("handover"),
        onclick: (e) => note.value.trim() ? run({ action: "handover", agency: to.value, note: note.value.trim() }, e.target)
          : (toast(t("handover_note"), true), note.focus()) })));
    }
  }
  const timeline = el("ol", { class: "timeline", id: "timeline" },
    el("li", {}, el("time", { text: fmtTime(ev.captured_at) }), ` ${ev.kind} ${ev.lifecycle} · ${ev.object?.class || ""}`),
    ...d.related.map((r) => el("li", {}, el("time", { text: fmtTime(r.captured_at) }), ` ${r.kind} ${r.lifecycle}`)));
  const audit = el("ol", { class: "timeline", id: "audit" },
    ...d.audit.map((a) => el("li", {}, el("time", { text: fmtTime(a.at) }), ` ${a.actor}: ${a.action}`,
      a.detail?.agency ? ` ⇒ ${a.detail.agency}` : a.detail?.assignee ? ` → ${a.detail.assignee}` : "", a.detail?.note ? ` — “${a.detail.note}”` : "")));
  page(mine, el("div", { class: "incident" },
    el("section", { class: "card" },
      el("h2", {}, ev.kind === "citizen_report" ? `${t("report")} · ${ev.details?.category || ""} ` : `${ev.camera} · ${ev.rule} `, d.dispatch ? stateBadge(state) : null),
      ev.snapshot ? el("img", { class: "snapshot", id: "snapshot", src: `/api/v1/snapshots/${ev.snapshot}`, alt: t("snapshot") })
        : ev.kind === "citizen_report" ? null : el("p", { text: t("no_snapshot") }),
      el("dl", {},
        el("dt", { text: t("time") }), el("dd", { text: fmtTime(ev.captured_at) }),
        el("dt", { text: t("severity") }), el("dd", { text: ev.severity }),
        el("dt", { text: t("class") }), el("dd", { text: ev.object ? `${ev.object.class} #${ev.object.track_id}` : "" }),
        el("dt", { text: t("assignee") }), el("dd", { id: "assignee", text: d.dispatch?.assignee || "—" }),
        d.dispatch?.handed_to?.length ? el("dt", { text: t("handed_to") }) : null,
        d.dispatch?.handed_to?.length ? el("dd", { id: "handed-to", text: d.dispatch.handed_to.join(", ") }) : null,
        el("dt", { text: t("id") }), el("dd", {}, el("code", { text: ev.id })))),
    el("section", { class: "card" }, actions, el("h3", { text: t("timeline") }), timeline, el("h3", { text: t("audit") }), audit),
    ev.kind === "citizen_report" ? reportPanel(id, ev, d, mine) : null,
    ev.kind !== "citizen_report" && ev.details?.evidence ? evidencePanel(id, mine) : null,
    ev.kind !== "citizen_report" && d.links?.length ? linksPanel(d.links) : null));
  const onLive = (kind, data) => { if (kind === "incident" && data.event_id === id) incidentPage(id); };
  liveHandlers.add(onLive);
  cleanup.push(() => liveHandlers.delete(onLive));
}

// Events linked to this one (a citizen report and an alert: one incident).
function linksPanel(links) {
  return el("section", { class: "card", id: "links" }, el("h3", { text: t("linked") }),
    el("ul", {}, ...links.map((l) => el("li", {}, el("a", { href: `#/incident/${l.event_id}`, text: l.event_id }),
      ` · ${l.linked_by} · ${fmtTime(l.linked_at)}`))));
}

// A citizen report: what the citizen said and sent, where, the cameras that may see the place
// (live frame and, for a recent report, a clip of each at the report's time), linking.
function reportPanel(id, ev, d, mine) {
  const r = ev.details || {};
  const cams = r.cameras || [];
  const clips = Object.fromEntries((r.evidence_clips || []).map((c) => [c.camera, c.clip]));
  const box = el("section", { class: "card report", id: "report" },
    el("h3", { text: `${t("report")} · ${r.category || ""}` }),
    el("p", { class: "report-text", id: "report-text", text: r.text || "" }),
    el("dl", {},
      el("dt", { text: t("source") }), el("dd", { text: `${r.source || ""} · ${r.external_id || ""}` }),
      el("dt", { text: t("place") }), el("dd", { text: `${r.latitude}, ${r.longitude}` })),
    r.photos?.length ? el("div", { class: "photos" }, ...r.photos.map((src) => el("img", { class: "report-photo", src, alt: t("photos"), loading: "lazy" }))) : null,
    el("h3", { text: t("matched_cameras") }),
    cams.length ? null : el("p", { text: t("no_camera") }));
  const frames = [];
  for (const c of cams) {
    const img = el("img", { class: "snapshot", alt: c.id, "data-camera": c.id, src: `/api/v1/cameras/${encodeURIComponent(c.id)}/frame.jpg?t=${Date.now()}` });
    frames.push([c.id, img]);
    box.append(el("figure", { class: "matched", "data-camera": c.id }, img,
      el("figcaption", { text: `${c.id} · ${Math.round(c.distance_m)} m` }),
      clips[c.id] ? evidencePanel(id, mine, c.id) : null));
  }
  // The matched cameras' live frames, every few seconds while the report is open.
  const timer = setInterval(() => {
    for (const [cam, img] of frames) img.src = `/api/v1/cameras/${encodeURIComponent(cam)}/frame.jpg?t=${Date.now()}`;
  }, 3000);
  cleanup.push(() => clearInterval(timer));
  if (d.links?.length) box.append(linksPanel(d.links));
  if (can.dispatch()) {
    // Link to an alert: recent alerts of the nearest camera, or any event id.
    const pick = el("select", { id: "link-pick" }, el("option", { value: "", text: t("pick_alert") }));
    const other = el("input", { id: "link-id", placeholder: t("id") });
    box.append(el("h3", { text: t("link_alert") }), el("div", { class: "row" }, pick, other,
      el("button", { id: "do-link", text: t("link_alert"), onclick: async (e) => {
        const target = other.value.trim() || pick.value;
        if (!target) { pick.focus(); return; }
        e.target.disabled = true;
        try { await api(`/events/${encodeURIComponent(id)}/links`, { method: "POST", body: { event_id: target } }); incidentPage(id); }
        catch (err) { explain(err); e.target.disabled = false; }
      } })));
    if (cams.length) {
      api(`/events?camera=${encodeURIComponent(cams[0].id)}&severity=warning,critical&limit=20`).then((page) => {
        for (const it of page.items) {
          if (it.event.id === id || it.event.kind === "citizen_report") continue;
          pick.append(el("option", { value: it.event.id, text: `${fmtTime(it.event.captured_at)} · ${it.event.rule} · ${it.event.kind.replaceAll("_", " ")}` }));
        }
      }).catch(explain);
    }
  }
  return box;
}

// The incident's evidence clip: the video once written, its manifest, export and "keep". A
// citizen report has one per matched camera (`camera`).
function evidencePanel(id, mine, camera) {
  const box = el("section", { class: "card evidence", id: camera ? `evidence-${camera}` : "evidence" }, el("h3", { text: t("evidence") }));
  const which = camera ? `?camera=${encodeURIComponent(camera)}` : "";
  const base = `/api/v1/events/${encodeURIComponent(id)}/evidence`;
  const load = async () => {
    if (mine !== routeSeq) return;
    let st;
    try { st = await api(`/events/${encodeURIComponent(id)}/evidence${which}`); } catch (e) { box.append(el("p", { text: e.message })); return; }
    box.replaceChildren(el("h3", { text: t("evidence") }));
    if (st.state === "recording") {
      box.append(el("p", { class: "evidence-state", text: `${t("recording")} ${fmtTime(st.ready_at)}` }));
      setTimeout(load, Math.max(1000, new Date(st.ready_at) - Date.now() + 500));
      return;
    }
    if (st.state !== "ready") {
      box.append(el("p", { class: "evidence-state", text: `${t(st.state === "failed" ? "clip_failed" : "clip_deleted")}: ${st.reason || ""}` }));
      return;
    }
    const m = st.manifest;
    box.append(
      el("video", { class: "snapshot evidence-video", controls: true, preload: "metadata", src: `${base}.mp4${which}` }),
      el("p", { class: "muted", text: `${fmtTime(m.start)} – ${fmtTime(m.end)} · ${m.duration_s} s · ${m.codec} ${m.width || ""}x${m.height || ""} · ${m.frames} frames · SHA-256 ${m.sha256.slice(0, 16)}… · key ${m.key_id}` }));
    if (st.kept_by) box.append(el("p", { class: "evidence-kept", text: `${t("kept_by")} ${st.kept_by} · ${fmtTime(st.kept_at)}` }));
    if (can.dispatch()) {
      box.append(el("div", { class: "row" },
        el("a", { class: "button evidence-zip", href: `${base}.zip${which}`, download: "", text: t("download_evidence") }),
        el("button", { class: "ghost evidence-keep", text: t(st.kept_by ? "release" : "keep"),
          onclick: async (e) => {
            e.target.disabled = true;
            try { await api(`/events/${encodeURIComponent(id)}/evidence/keep${which}`, { method: "PUT", body: { keep: !st.kept_by } }); load(); } catch (err) { explain(err); e.target.disabled = false; }
          } })));
    }
  };
  load();
  return box;
}

// ---- Map: cameras and lanes from /map.geojson, drawn in SVG -------------------------------------
// Web Mercator in 256-pixel tiles, so the plain background and map tiles line up. Without
// api.map_tiles nothing is loaded from elsewhere: a grid with a scale bar is the background.
const SVG_NS = "http://www.w3.org/2000/svg";
function svgNode(tag, attrs = {}, ...kids) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function mercator(lon, lat, z) {
  const n = 256 * 2 ** z;
  const s = Math.sin((Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180);
  return [((lon + 180) / 360) * n, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * n];
}
const stateTone = (s) => ({ streaming: "ok", connecting: "warn", backing_off: "warn", stalled: "bad", failed: "bad" })[s] || "off";
function drawMap(svg, g) {
  const W = 1000, H = 640;
  svg.textContent = "";
  svg.append(svgNode("defs", {}, svgNode("marker", { id: "map-head", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" },
    svgNode("path", { d: "M0,0 L10,5 L0,10 Z", class: "map-head" }))));
  svg.append(svgNode("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  const cams = g.features.filter((f) => f.geometry.type === "Point");
  const lanes = g.features.filter((f) => f.geometry.type === "Polygon");
  const reports = (g.reports || []).filter((r) => Number.isFinite(r.details?.longitude) && Number.isFinite(r.details?.latitude));
  if (!cams.length && !reports.length) {
    svg.append(svgNode("text", { x: W / 2, y: H / 2, class: "map-note", "text-anchor": "middle" }, t("none_placed")));
    return;
  }
  const where = (r) => [r.details.longitude, r.details.latitude];
  const all = [...cams.map((f) => f.geometry.coordinates), ...lanes.flatMap((f) => f.geometry.coordinates[0]), ...reports.map(where)];
  // The closest zoom (up to 19) at which everything fits in 80 % of the picture.
  const box = (z) => {
    const xy = all.map(([lon, lat]) => mercator(lon, lat, z));
    const xs = xy.map((p) => p[0]), ys = xy.map((p) => p[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  };
  let z = 19;
  for (; z > 1; z--) { const [a, b, c, d] = box(z); if (c - a <= W * 0.8 && d - b <= H * 0.8) break; }
  const [a, b, c, d] = box(z);
  const x0 = (a + c) / 2 - W / 2, y0 = (b + d) / 2 - H / 2;
  const at = ([lon, lat]) => { const [x, y] = mercator(lon, lat, z); return [x - x0, y - y0]; };
  const lat = all[0][1];
  const metresPerPx = (40075016.686 * Math.cos((lat * Math.PI) / 180)) / (256 * 2 ** z);
  const step = [5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000].find((m) => m / metresPerPx >= 90) || 100000;
  const stepPx = step / metresPerPx;
  if (g.tiles) {
    const n = 2 ** z;
    for (let ty = Math.floor(y0 / 256); ty <= Math.floor((y0 + H) / 256); ty++) {
      if (ty < 0 || ty >= n) continue;
      for (let tx = Math.floor(x0 / 256); tx <= Math.floor((x0 + W) / 256); tx++) {
        const href = g.tiles.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
        svg.append(svgNode("image", { href, x: tx * 256 - x0, y: ty * 256 - y0, width: 256, height: 256, class: "map-tile" }));
      }
    }
  } else {
    for (let x = ((-x0 % stepPx) + stepPx) % stepPx; x < W; x += stepPx) svg.append(svgNode("line", { x1: x, y1: 0, x2: x, y2: H, class: "map-grid" }));
    for (let y = ((-y0 % stepPx) + stepPx) % stepPx; y < H; y += stepPx) svg.append(svgNode("line", { x1: 0, y1: y, x2: W, y2: y, class: "map-grid" }));
  }
  for (const f of lanes) {
    const p = f.properties;
    const ring = f.geometry.coordinates[0].map(at);
    svg.append(svgNode("polygon", { points: ring.map((q) => q.join(",")).join(" "), class: "map-lane", "data-lane": `${p.camera}/${p.name}` },
      svgNode("title", {}, `${p.camera} · ${p.name}${p.speed_limit_kmh ? ` · ${t("limit")} ${p.speed_limit_kmh} km/h` : ""}`)));
    if (p.direction?.length === 2) {
      const [[x1, y1], [x2, y2]] = p.direction.map(at);
      svg.append(svgNode("line", { x1, y1, x2, y2, class: "map-arrow", "marker-end": "url(#map-head)" }));
    }
  }
  for (const f of cams) {
    const p = f.properties;
    const [x, y] = at(f.geometry.coordinates);
    const tone = stateTone(p.state);
    const cam = svgNode("g", { transform: `translate(${x},${y})`, class: "map-camera", "data-camera": p.id },
      svgNode("title", {}, `${p.name} · ${t(p.state)}${p.open_incidents ? ` · ${p.open_incidents} ${t("open_incidents")}` : ""}`));
    if (p.heading_deg !== null && p.heading_deg !== undefined) {
      const r = 46, half = ((p.fov_deg || 60) * Math.PI) / 360, h = (p.heading_deg * Math.PI) / 180;
      const edge = (b) => `${(Math.sin(b) * r).toFixed(1)},${(-Math.cos(b) * r).toFixed(1)}`;
      cam.append(svgNode("path", { d: `M0,0 L${edge(h - half)} A${r},${r} 0 0 1 ${edge(h + half)} Z`, class: "map-fov" }),
        svgNode("polygon", { points: "0,-15 8,7 0,3 -8,7", transform: `rotate(${p.heading_deg})`, class: `map-cam ${tone}`, "data-state": p.state }));
    } else {
      cam.append(svgNode("circle", { r: 8, class: `map-cam ${tone}`, "data-state": p.state }));
    }
    cam.append(svgNode("text", { y: 26, class: "map-label" }, p.name));
    if (p.open_incidents) {
      cam.append(svgNode("a", { href: `#/incident/${encodeURIComponent(p.incident_ids[0])}`, class: "map-incidents" },
        svgNode("circle", { cx: 13, cy: -13, r: 10, class: "map-badge" }),
        svgNode("text", { x: 13, y: -9, class: "map-badge-text" }, String(p.open_incidents))));
    }
    svg.append(cam);
  }
  // Citizen reports beside the cameras: a pin each, to its incident.
  for (const r of reports) {
    const [x, y] = at(where(r));
    svg.append(svgNode("a", { href: `#/incident/${encodeURIComponent(r.id)}`, class: "map-report", "data-report": r.id },
      svgNode("title", {}, `${t("report")} · ${r.details.category} · ${r.details.text || ""}`),
      svgNode("path", { d: `M${x},${y} l-7,-14 a8,8 0 1 1 14,0 z`, class: "map-pin" })));
  }
  svg.append(svgNode("line", { x1: 20, y1: H - 24, x2: 20 + stepPx, y2: H - 24, class: "map-scale" }),
    svgNode("text", { x: 20, y: H - 32, class: "map-note" }, step >= 1000 ? `${step / 1000} km` : `${step} m`),
    svgNode("text", { x: W - 24, y: 34, class: "map-north", "text-anchor": "middle" }, "N"),
    svgNode("line", { x1: W - 24, y1: 62, x2: W - 24, y2: 42, class: "map-arrow", "marker-end": "url(#map-head)" }));
}
async function mapPage() {
  const mine = routeSeq;
  const svg = svgNode("svg", { id: "map", class: "map", viewBox: "0 0 1000 640", role: "img", "aria-label": t("map") });
  const unplaced = el("ul", { class: "unplaced", id: "unplaced" });
  const lanesOff = el("p", { class: "hint", id: "lanes-off" });
  page(mine, el("section", { class: "card" }, el("h2", { text: t("map") }), svg, lanesOff, el("h3", { text: t("unplaced") }), unplaced));
  startLive();
  const draw = async () => {
    let g;
    try { g = await api("/map.geojson"); } catch (e) { explain(e); return; }
    // Reports of the last day, as the events search has them.
    try { g.reports = (await api("/events?kind=citizen_report&limit=100")).items.map((it) => it.event); } catch (e) { g.reports = []; }
    if (mine !== routeSeq) return;
    drawMap(svg, g);
    unplaced.textContent = "";
    for (const p of g.unplaced) unplaced.append(el("li", { "data-camera": p.id }, `${p.name} (${t(p.state)}) — ${t("no_position")}`));
    const off = g.features.filter((f) => f.properties.lanes_unplaced?.length).map((f) => `${f.properties.id}: ${f.properties.lanes_unplaced.join(", ")}`);
    lanesOff.textContent = off.length ? `${t("lanes_off")}: ${off.join("; ")}` : "";
  };
  await draw();
  // New alerts and dispatch changes move the badges; state changes recolour at once.
  let soon = null;
  const later = () => { clearTimeout(soon); soon = setTimeout(draw, 1000); };
  const timer = setInterval(draw, 15000);
  const onLive = (kind, data) => {
    if (kind === "status") {
      for (const m of svg.querySelectorAll(`[data-camera="${CSS.escape(data.camera_id)}"] .map-cam`)) {
        m.setAttribute("class", `map-cam ${stateTone(data.state)}`);
        m.dataset.state = data.state;
      }
    }
    if ((kind === "event" && data.severity !== "info") || kind === "incident") later();
  };
  liveHandlers.add(onLive);
  cleanup.push(() => { liveHandlers.delete(onLive); clearInterval(timer); clearTimeout(soon); });
}

// ---- Planner -----------------------------------------------------------------------------------------
const COLORS = ["#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#56ccf2", "#bb6bd9", "#219653", "#f2c94c", "#828282"];
function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
const BUCKET_MS = { "5m": 300e3, "15m": 900e3, "1h": 3600e3, "1d": 86400e3 };
// Stacked bars per bucket over the whole requested range, one colour per class and direction.
function drawChart(canvas, rows, bucket, from, to) {
  const ctx = canvas.getContext("2d");
  const W = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const H = (canvas.height = canvas.clientHeight * devicePixelRatio);
  ctx.scale(devicePixelRatio, devicePixelRatio);
  const w = W / devicePixelRatio, h = H / devicePixelRatio;
  ctx.clearRect(0, 0, w, h);
  const width = BUCKET_MS[bucket];
  const start = Math.floor(from.getTime() / width) * width;
  const slots = Math.max(1, Math.ceil((to.getTime() - start) / width));
  const series = [...new Set(rows.map((r) => `${r.class} ${r.direction}`))].sort();
  const value = new Map();
  for (const r of rows) {
    const slot = Math.floor((Date.parse(r.bucket_start) - start) / width);
    const k = `${slot}|${r.class} ${r.direction}`;
    value.set(k, (value.get(k) || 0) + r.count);
  }
  const totals = [];
  for (let i = 0; i < slots; i++) totals.push(series.reduce((s, x) => s + (value.get(`${i}|${x}`) || 0), 0));
  // A round top for the axis: 1, 2 or 5 times a power of ten.
  const peak = Math.max(4, ...totals);
  const mag = 10 ** Math.floor(Math.log10(peak / 4));
  const tick = [1, 2, 5, 10].map((m) => m * mag).find((t) => t * 4 >= peak);
  const max = tick * 4;
  const left = 48, bottom = 28, top = 10, right = 10;
  const plotW = w - left - right, plotH = h - top - bottom;
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#2a3340";
  ctx.fillStyle = "#9aa4b2";
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
    ctx.fillText(String(tick * i), 4, y + 4);
  }
  const bw = plotW / slots;
  for (let i = 0; i < slots; i++) {
    let y = top + plotH;
    series.forEach((s, j) => {
      const v = value.get(`${i}|${s}`) || 0;
      const bh = (plotH * v) / max;
      ctx.fillStyle = COLORS[j % COLORS.length];
      ctx.fillRect(left + i * bw + (bw > 4 ? 1 : 0), y - bh, Math.max(1, bw - (bw > 4 ? 2 : 0)), bh);
      y -= bh;
    });
  }
  ctx.fillStyle = "#9aa4b2";
  const every = Math.ceil(slots / 8);
  for (let i = 0; i < slots; i += every) {
    const d = new Date(start + i * width);
    const label = bucket === "1d" ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    ctx.fillText(label, left + i * bw, h - 8);
  }
  return series.map((s, j) => [s, COLORS[j % COLORS.length], [...value].filter(([k]) => k.endsWith(`|${s}`)).reduce((n, [, v]) => n + v, 0)]);
}

async function plannerPage() {
  const mine = routeSeq;
  const now = new Date();
  const from = el("input", { type: "datetime-local", id: "from", value: localInput(new Date(now - 3 * 3600e3)) });
  const to = el("input", { type: "datetime-local", id: "to", value: localInput(new Date(+now + 3600e3)) });
  const bucket = el("select", { id: "bucket" }, ...["5m", "15m", "1h", "1d"].map((b) => el("option", { value: b, text: b, selected: b === "5m" })));
  const camera = el("select", { id: "camera" }, el("option", { value: "", text: t("all") }));
  const canvas = el("canvas", { id: "chart", class: "chart" });
  const legend = el("ul", { class: "legend", id: "legend" });
  const csv = el("a", { class: "button", id: "csv", text: t("download_csv"), download: "pantau-history.csv" });
  const query = () => {
    const q = new URLSearchParams({ from: new Date(from.value).toISOString(), to: new Date(to.value).toISOString(), bucket: bucket.value });
    if (camera.value) q.set("camera", camera.value);
    return q;
  };
  const show = async () => {
    const q = query();
    csv.href = `/api/v1/history.csv?${q}`;
    try {
      const rows = await api(`/history?${q}`);
      legend.textContent = "";
      if (!rows.length) legend.append(el("li", { text: t("no_data") }));
      const totals = drawChart(canvas, rows, bucket.value, new Date(from.value), new Date(to.value));
      for (const [name, color, n] of totals) {
        const swatch = el("i");
        swatch.style.background = color; // CSSOM, allowed by the page's style policy
        legend.append(el("li", {}, swatch, `${name}: ${n}`));
      }
      for (const c of new Set(rows.map((r) => r.camera))) {
        if (![...camera.options].some((o) => o.value === c)) camera.append(el("option", { value: c, text: c }));
      }
    } catch (e) { explain(e); }
  };
  page(mine, el("section", { class: "card planner" },
    el("h2", { text: t("volumes") }),
    el("form", { class: "row", id: "range", onsubmit: (e) => { e.preventDefault(); show(); } },
      el("label", { class: "inline", text: t("from") }, from), el("label", { class: "inline", text: t("to") }, to),
      el("label", { class: "inline", text: t("bucket") }, bucket), el("label", { class: "inline", text: t("camera") }, camera),
      el("button", { type: "submit", id: "show", text: t("show") }), csv),
    canvas, legend));
  if (can.view()) {
    try { for (const c of await api("/cameras")) { const id = c.config?.id || c.status?.id; camera.append(el("option", { value: id, text: id })); } } catch { /* planners do not see cameras */ }
  }
  await show();
}

// ---- Admin: cameras (lines and zones drawn on the frame) and users ---------------------------------
async function adminPage(selected) {
  const mine = routeSeq;
  const cams = await api("/cameras");
  const list = el("ul", { class: "camlist" });
  for (const c of cams) {
    const id = c.config?.id || c.status?.id;
    list.append(el("li", {}, el("a", { href: `#/admin/${id}`, class: id === selected ? "active" : "", text: `${id} (${t(c.status?.state || "stopped")})` })));
  }
  const addForm = el("form", { class: "stack", id: "add-camera" },
    el("h3", { text: t("add_camera") }),
    el("input", { name: "id", placeholder: t("id"), required: true }),
    el("input", { name: "name", placeholder: t("name") }),
    el("input", { name: "url", placeholder: "rtsp://host/path", required: true }),
    // With agencies: the camera group it belongs to (who sees it).
    el("input", { name: "group", placeholder: t("group"), list: "groups" }),
    el("button", { type: "submit", text: t("add_camera") }));
  api("/agencies").then((agencies) => {
    const groups = [...new Set(agencies.flatMap((a) => a.groups))];
    addForm.querySelector("input[name=group]").hidden = !groups.length;
    addForm.append(el("datalist", { id: "groups" }, ...groups.map((g) => el("option", { value: g }))));
  }).catch(() => {});
  addForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(addForm);
    const body = { id: f.get("id"), url: f.get("url") };
    if (f.get("name")) body.name = f.get("name");
    if (f.get("group")) body.group = f.get("group");
    try { await api("/cameras", { method: "POST", body }); toast(t("saved")); location.hash = `#/admin/${body.id}`; } catch (err) { explain(err); }
  });
  const editor = el("div", { id: "editor" });
  page(mine, el("div", { class: "admin" },
    el("aside", { class: "card" }, el("h2", { text: t("cameras") }), list, addForm),
    el("section", { class: "card" }, editor),
    el("section", { class: "card", id: "users" }),
    el("section", { class: "card", id: "integrations" })));
  const cam = cams.find((c) => (c.config?.id || c.status?.id) === selected) || cams[0];
  if (cam?.config) cameraEditor(editor, cam.config);
  usersPanel($("#users"));
  integrationsPanel($("#integrations"));
}

// Citizen apps that send reports: their keys are made here and shown once.
async function integrationsPanel(root, made) {
  root.textContent = "";
  root.append(el("h2", { text: t("integrations") }));
  if (made) {
    root.append(el("div", { class: "key-once", id: "integration-made" }, el("p", { text: t("key_once") }),
      el("dl", {}, el("dt", { text: t("key") }), el("dd", {}, el("code", { id: "integration-key", text: made.key })),
        el("dt", { text: t("callback_secret") }), el("dd", {}, el("code", { text: made.callback_secret })))));
  }
  try {
    const list = await api("/integrations");
    root.append(el("table", { class: "list", id: "integration-list" },
      el("tr", {}, el("th", { text: t("name") }), el("th", { text: t("key") }), el("th", { text: t("callback_url") }), el("th", {})),
      ...list.map((i) => el("tr", { "data-integration": i.name },
        el("td", { text: i.name + (i.disabled ? ` (${t("disabled")})` : "") }), el("td", {}, el("code", { text: `${i.key_prefix}…` })),
        el("td", { text: i.callback_url || "—" }),
        el("td", {}, el("button", { class: "ghost small", text: i.disabled ? t("enable") : t("disable"),
          onclick: async () => { try { await api(`/integrations/${encodeURIComponent(i.name)}`, { method: "PATCH", body: { disabled: !i.disabled } }); integrationsPanel(root); } catch (e) { explain(e); } } }))))));
  } catch (e) { explain(e); }
  const form = el("form", { class: "stack", id: "add-integration" }, el("h3", { text: t("add_integration") }),
    el("input", { name: "name", placeholder: "sipokat", required: true }),
    el("input", { name: "callback_url", placeholder: t("callback_url") }),
    el("button", { type: "submit", text: t("add_integration") }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get("name") };
    if (f.get("callback_url")) body.callback_url = f.get("callback_url");
    try { integrationsPanel(root, await api("/integrations", { method: "POST", body })); } catch (err) { explain(err); }
  });
  root.append(form);
}
function cameraEditor(root, config) {
  const cfg = structuredClone(config);
  cfg.lines ||= [];
  cfg.zones ||= [];
  cfg.lanes ||= [];
  const calib = cfg.calibration ? structuredClone(cfg.calibration) : { image: [], ground: [] };
  const img = el("img", { id: "admin-frame", alt: cfg.id, src: `/api/v1/cameras/${cfg.id}/frame.jpg?overlay=none&t=${Date.now()}` });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.id = "overlay";
  const stage = el("div", { class: "stage" }, img, svg);
  let drawing = null; // { kind: "line"|"zone", points: [] }
  const items = el("ul", { class: "shapes", id: "shapes" });
  const fps = el("input", { type: "number", id: "analysis-fps", min: "0.1", max: "120", step: "0.1", value: cfg.analysis_fps ?? "" , placeholder: "default"});
  const hint = el("p", { class: "hint", id: "draw-hint" });
  const shapeName = el("input", { id: "shape-name", placeholder: t("name") });
  const svgEl = (tag, attrs) => { const e = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const redraw = () => {
    const w = img.naturalWidth || 640, h = img.naturalHeight || 360;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.textContent = "";
    const pts = (p) => p.map(([x, y]) => `${x},${y}`).join(" ");
    for (const z of cfg.zones) svg.append(svgEl("polygon", { points: pts(z.polygon), class: "zone" }));
    for (const l of cfg.lines) svg.append(svgEl("polyline", { points: pts(l.points), class: "line" }));
    for (const l of cfg.lanes) {
      svg.append(svgEl("polygon", { points: pts(l.polygon), class: "lane" }));
      svg.append(svgEl("line", { x1: l.direction[0][0], y1: l.direction[0][1], x2: l.direction[1][0], y2: l.direction[1][1],
        class: "lane-arrow", "marker-end": "url(#arrow-head)" }));
    }
    const defs = svgEl("defs", {});
    const marker = svgEl("marker", { id: "arrow-head", viewBox: "0 0 10 10", refX: "8", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto" });
    marker.append(svgEl("path", { d: "M0,0 L10,5 L0,10 z", class: "lane-head" }));
    defs.append(marker);
    svg.append(defs);
    calib.image.forEach(([x, y], i) => {
      svg.append(svgEl("circle", { cx: x, cy: y, r: Math.max(4, w / 120), class: "calib" }));
      const label = svgEl("text", { x: x + 6, y: y - 6, class: "calib-label" });
      label.textContent = `${calib.ground[i]?.join(", ")} m`;
      svg.append(label);
    });
    if (drawing) {
      svg.append(svgEl(drawing.kind === "zone" || drawing.kind === "lane" ? "polygon" : "polyline", { points: pts(drawing.points), class: "drawing" }));
      for (const [x, y] of drawing.points) svg.append(svgEl("circle", { cx: x, cy: y, r: Math.max(3, w / 160), class: "drawing" }));
      if (drawing.arrow) {
        svg.append(svgEl("polygon", { points: pts(drawing.lane.polygon), class: "drawing" }));
      }
    }
    items.textContent = "";
    if (calib.image.length) {
      items.append(el("li", {}, `${t("calibration")}: ${calib.image.length} `,
        el("button", { class: "ghost small", text: t("clear"), onclick: () => { calib.image = []; calib.ground = []; redraw(); } })));
    }
    for (const [kind, arr] of [["lines", cfg.lines], ["zones", cfg.zones], ["lanes", cfg.lanes]]) {
      arr.forEach((s, i) => items.append(el("li", {}, `${t(kind)}: ${s.name} `,
        el("button", { class: "ghost small", text: t("remove"), onclick: () => { arr.splice(i, 1); redraw(); } }))));
    }
  };
  img.addEventListener("load", redraw);
  svg.addEventListener("click", (e) => {
    if (!drawing) return;
    const r = svg.getBoundingClientRect();
    const x = Math.round(((e.clientX - r.left) / r.width) * (img.naturalWidth || 640));
    const y = Math.round(((e.clientY - r.top) / r.height) * (img.naturalHeight || 360));
    if (drawing.kind === "calib") {
      const answer = prompt(t("ground_prompt"), "0, 0");
      const g = (answer || "").split(",").map((v) => parseFloat(v));
      if (g.length === 2 && g.every(Number.isFinite)) { calib.image.push([x, y]); calib.ground.push(g); }
      redraw();
      return;
    }
    drawing.points.push([x, y]);
    // The lane's arrow: two clicks after its corners, then the lane is done.
    if (drawing.arrow && drawing.points.length === 2) {
      cfg.lanes.push({ ...drawing.lane, direction: drawing.points });
      drawing = null; hint.textContent = "";
    }
    redraw();
  });
  const zoneKind = el("select", { id: "zone-kind", title: t("zone_kind") },
    ...["watch", "parking", "crossing", "box_junction", "no_stopping"].map((k) => el("option", { value: k, text: t(k) })));
  const maxPersons = el("input", { type: "number", id: "zone-max-persons", min: "1", max: "10000", placeholder: t("max_persons") });
  const loiter = el("input", { type: "number", id: "zone-loitering", min: "1", max: "86400", placeholder: t("loitering_s") });
  const density = el("input", { type: "number", id: "zone-density", min: "0.01", max: "10", step: "any", placeholder: t("max_density") });
  // The rules' parameters: empty means the documented default (docs/rules.md).
  const RULE_FIELDS = ["stopped_s", "box_blocked_s", "person_on_carriageway_s", "wrong_way_s", "wrong_way_distance",
    "speeding_margin_kmh", "stationary_kmh", "incident_gap_s", "queue_period_s", "heavy_kmh", "congested_kmh",
    "crowd_surge_per_min", "sudden_stop_vehicles", "sudden_stop_from_kmh", "sudden_stop_s", "sudden_stop_radius_m", "speed_window_s"];
  const ruleInputs = Object.fromEntries(RULE_FIELDS.map((f) => [f, el("input", { type: "number", step: "any", id: `rule-${f}`,
    value: config.rules?.[f] ?? "", placeholder: f })]));
  const rulesForm = el("details", { class: "rules-form" }, el("summary", { text: t("rules") }), el("p", { class: "hint", text: t("rules_hint") }),
    el("div", { class: "rules-grid" }, ...RULE_FIELDS.map((f) => el("label", { text: f }, ruleInputs[f]))));
  const speedLimit = el("input", { type: "number", id: "lane-limit", min: "5", max: "200", placeholder: t("speed_limit") });
  const stopping = el("input", { type: "checkbox", id: "lane-stopping" });
  const lat = el("input", { type: "number", id: "calib-lat", step: "any", value: calib.latitude ?? "", placeholder: t("latitude") });
  const lon = el("input", { type: "number", id: "calib-lon", step: "any", value: calib.longitude ?? "", placeholder: t("longitude") });
  const heading = el("input", { type: "number", id: "calib-heading", min: "0", max: "359", value: calib.heading_deg ?? "", placeholder: t("heading") });
  const start = (kind) => {
    drawing = { kind, points: [] };
    hint.textContent = t(kind === "lane" ? "lane_hint" : kind === "calib" ? "calib_hint" : "draw_hint");
    if (kind !== "calib") shapeName.value = "";
    redraw();
  };
  const finish = () => {
    if (!drawing) return;
    if (drawing.kind === "calib") { drawing = null; hint.textContent = ""; redraw(); return; }
    if (drawing.kind === "lane" && !drawing.arrow) {
      const name = shapeName.value.trim() || `lane${cfg.lanes.length + 1}`;
      const lane = { name, polygon: drawing.points, stopping: stopping.checked };
      const limit = parseFloat(speedLimit.value);
      if (Number.isFinite(limit)) lane.speed_limit_kmh = limit;
      drawing = { kind: "lane", arrow: true, lane, points: [] };
      redraw();
      return;
    }
    const name = shapeName.value.trim() || `${drawing.kind}${(drawing.kind === "line" ? cfg.lines : cfg.zones).length + 1}`;
    if (drawing.kind === "line") cfg.lines.push({ name, points: drawing.points });
    else {
      const zone = { name, polygon: drawing.points, kind: zoneKind.value };
      const n = parseInt(maxPersons.value, 10);
      if (Number.isFinite(n)) zone.max_persons = n;
      const l = parseFloat(loiter.value);
      if (Number.isFinite(l)) zone.loitering_s = l;
      const d = parseFloat(density.value);
      if (Number.isFinite(d)) zone.max_density = d;
      cfg.zones.push(zone);
    }
    drawing = null; hint.textContent = ""; redraw();
  };
  const save = async () => {
    const v = parseFloat(fps.value);
    if (Number.isFinite(v)) cfg.analysis_fps = v; else delete cfg.analysis_fps;
    const num = (input) => { const n = parseFloat(input.value); return Number.isFinite(n) ? n : undefined; };
    const rules = {};
    for (const [f, input] of Object.entries(ruleInputs)) {
      const n = num(input);
      if (n !== undefined) rules[f] = n;
    }
    cfg.rules = rules;
    if (calib.image.length) {
      cfg.calibration = { ...calib, latitude: num(lat), longitude: num(lon), heading_deg: num(heading) };
      for (const k of ["latitude", "longitude", "heading_deg"]) if (cfg.calibration[k] === undefined) delete cfg.calibration[k];
    } else {
      delete cfg.calibration;
    }
    try { await api(`/cameras/${cfg.id}`, { method: "PUT", body: cfg }); toast(t("saved")); } catch (e) { explain(e); }
  };
  const remove = async () => {
    if (!confirm(`${t("remove")} ${cfg.id}?`)) return;
    try { await api(`/cameras/${cfg.id}`, { method: "DELETE" }); location.hash = "#/admin"; } catch (e) { explain(e); }
  };
  root.append(el("h2", { text: cfg.name || cfg.id }), el("p", {}, el("code", { text: cfg.url })), stage, hint,
    el("div", { class: "row" }, shapeName,
      el("button", { id: "draw-line", class: "ghost", text: t("new_line"), onclick: () => start("line") }),
      el("button", { id: "draw-zone", class: "ghost", text: t("new_zone"), onclick: () => start("zone") }),
      el("button", { id: "draw-lane", class: "ghost", text: t("new_lane"), onclick: () => start("lane") }),
      el("button", { id: "pick-calib", class: "ghost", text: t("calib_points"), onclick: () => start("calib") }),
      el("button", { id: "finish", class: "ghost", text: t("finish"), onclick: finish }),
      el("button", { class: "ghost", text: t("cancel"), onclick: () => { drawing = null; hint.textContent = ""; redraw(); } })),
    el("div", { class: "row" }, zoneKind, maxPersons, density, loiter),
    el("div", { class: "row" }, speedLimit, el("label", { class: "inline", text: t("stopping") }, stopping)),
    el("div", { class: "row" }, lat, lon, heading),
    items,
    rulesForm,
    el("label", { class: "inline", text: t("analysis_fps") }, fps),
    el("div", { class: "row" }, el("button", { id: "save-camera", text: t("save"), onclick: save }),
      el("button", { class: "warn", text: t("remove"), onclick: remove })));
}
async function usersPanel(root) {
  root.textContent = "";
  root.append(el("h2", { text: t("users") }));
  try {
    const users = await api("/users");
    root.append(el("table", { class: "list" }, el("tr", {}, el("th", { text: t("name") }), el("th", { text: t("role") }), el("th", { text: t("agencies") }), el("th", {})),
      ...users.map((u) => el("tr", { "data-user": u.name }, el("td", { text: u.name + (u.disabled ? ` (${t("disabled")})` : "") }), el("td", { text: u.role }),
        el("td", { text: (u.agencies || []).join(", ") || "—" }),
        el("td", {}, el("button", { class: "ghost small", text: u.disabled ? t("enable") : t("disable"),
          onclick: async () => { try { await api(`/users/${u.name}`, { method: "PATCH", body: { disabled: !u.disabled } }); usersPanel(root); } catch (e) { explain(e); } } }))))));
  } catch (e) { explain(e); }
  const form = el("form", { class: "stack" }, el("h3", { text: t("add_user") }),
    el("input", { name: "name", placeholder: t("name"), required: true }),
    el("select", { name: "role" }, ...["operator", "dispatcher", "planner", "admin"].map((r) => el("option", { value: r, text: r }))),
    el("input", { name: "password", type: "password", placeholder: t("password"), minlength: 10, required: true }),
    el("button", { type: "submit", text: t("add_user") }));
  // With agencies: the agency the user belongs to (none: every camera).
  let agencies = [];
  try { agencies = await api("/agencies"); } catch { agencies = []; }
  if (agencies.length) {
    form.insertBefore(el("select", { name: "agency", "aria-label": t("agencies") },
      ...(me?.agencies?.length ? [] : [el("option", { value: "", text: t("all_agencies") })]),
      ...agencies.filter((a) => !me?.agencies?.length || a.mine).map((a) => el("option", { value: a.id, text: a.name }))),
    form.querySelector("button"));
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get("name"), role: f.get("role"), password: f.get("password") };
    if (f.get("agency")) body.agencies = [f.get("agency")];
    try { await api("/users", { method: "POST", body }); toast(t("saved")); usersPanel(root); } catch (err) { explain(err); }
  });
  root.append(form);
}

// ---- Router -------------------------------------------------------------------------------------------
async function route() {
  routeSeq += 1;
  const [, name, arg] = location.hash.split("/");
  if (!me && name !== "login") {
    try { me = await api("/auth/me"); } catch { me = null; }
    if (!me) { location.hash = "#/login"; return; }
  }
  try {
    switch (name) {
      case "login": return loginPage();
      case "wall": return await wallPage();
      case "incidents": return await incidentsPage();
      case "incident": return await incidentPage(decodeURIComponent(arg || ""));
      case "map": return await mapPage();
      case "planner": return await plannerPage();
      case "admin": return await adminPage(arg && decodeURIComponent(arg));
      default: location.hash = can.view() ? "#/wall" : "#/planner";
    }
  } catch (e) { if (!(e instanceof Stale) && e.status !== 401) explain(e); }
}
$("#lang").value = lang;
$("#lang").addEventListener("change", (e) => {
  lang = e.target.value;
  localStorage.setItem("pantau.lang", lang);
  document.documentElement.lang = lang;
  route();
});
document.documentElement.lang = lang;
$("#logout").addEventListener("click", async () => {
  try { await api("/auth/logout", { method: "POST" }); } catch { /* already gone */ }
  me = null;
  stopLive();
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
