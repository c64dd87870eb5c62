// Drives the pantau console in Debian's chromium (playwright-core, no browser download):
// log in, wait for a live alert on the wall, acknowledge it, open the incident and assign it,
// take a citizen report on the wall, link it to the alert and close it,
// open the planner chart and download the CSV, draw a counting line, a calibration and a lane in
// the admin page (snooze a rule on the wall on the way), switch
// to Indonesian, hand an incident of city hall's camera over to the police (two agencies, each
// seeing only its own cameras), browse the API docs. Screenshots of each page go to SHOTS_DIR.
// Run by tests/console_e2e.rs, which starts pantau on a replayed clip.
import { createRequire } from "node:module";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(join(process.env.PLAYWRIGHT_DIR, "package.json"));
const { chromium } = require("playwright-core");

const base = process.env.PANTAU_URL;
const user = process.env.PANTAU_USER;
const password = process.env.PANTAU_PASSWORD;
const shots = process.env.SHOTS_DIR;
mkdirSync(shots, { recursive: true });
const step = (msg) => console.log(`step: ${msg}`);
const result = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true, locale: "en-GB" });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Expected refusals: /auth/me before logging in and the deliberately wrong password.
  const expected = (url) => /\/api\/v1\/auth\/(me|login)$/.test(url);
  page.on("console", (m) => {
    if (m.type() === "error" && !expected(m.location().url)) problems.push(`console: ${m.text()} (${m.location().url})`);
  });

  step("login page");
  await page.goto(`${base}/`);
  await page.waitForSelector("#login-form");
  await page.selectOption("#lang", "en");
  await page.screenshot({ path: join(shots, "console-login.png") });
  // A wrong password is refused with a message.
  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", "not the password");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#login-error")?.textContent.length > 0);
  await page.fill("input[name=password]", password);
  await page.click("#login-form button[type=submit]");

  step("wall: tiles and a live alert");
  await page.waitForSelector("#tiles figure");
  const loggedIn = Date.now();
  // An alert that arrives live (not one loaded from history) flashes.
  await page.waitForSelector("#alert-feed li.alert.flash", { timeout: 30000 });
  result.live_alert_after_login_ms = Date.now() - loggedIn;
  await page.waitForFunction(() => [...document.querySelectorAll("#tiles img")].every((i) => i.naturalWidth > 0), null, { timeout: 20000 });
  await page.waitForTimeout(1500); // let the annotated frame replace the first plain one
  await page.screenshot({ path: join(shots, "console-wall.png") });

  step("acknowledge from the wall");
  const first = page.locator("#alert-feed li.alert").filter({ has: page.locator("button.ack") }).first();
  const eventId = await first.getAttribute("data-event");
  await first.locator("button.ack").click();
  await page.waitForSelector(`#alert-feed li[data-event="${eventId}"] .badge[data-state="acknowledged"]`, { timeout: 10000 });
  result.acknowledged = eventId;
  // Alerts are grouped: one item per group, never two items for one alert.
  const ids = await page.$$eval("#alert-feed li.alert", (lis) => lis.map((li) => li.dataset.event));
  if (new Set(ids).size !== ids.length) throw new Error(`an alert shown twice: ${ids}`);
  // Critical before warning, newest first within each.
  const order = await page.$$eval("#alert-feed li.alert", (lis) => lis.map((li) => [li.dataset.severity, li.dataset.time]));
  const rank = { critical: 0, warning: 1, info: 2 };
  for (let i = 1; i < order.length; i++) {
    const [a, b] = [order[i - 1], order[i]];
    if (rank[a[0]] > rank[b[0]] || (a[0] === b[0] && a[1] < b[1])) throw new Error(`feed out of order: ${JSON.stringify(order)}`);
  }

  step("snooze a rule from the wall");
  const item = page.locator(`#alert-feed li[data-event="${eventId}"]`);
  await item.locator("select.snooze-minutes").selectOption("15");
  await item.locator("button.snooze").click();
  await page.waitForFunction(() => [...document.querySelectorAll(".tile-snoozes")].some((s) => s.textContent.startsWith("Snoozed")), null, { timeout: 10000 });
  result.snoozed = await page.$$eval(".tile-snoozes", (s) => s.map((x) => x.textContent).filter(Boolean));

  step("incident view: assign and audit");
  await page.goto(`${base}/console/#/incident/${eventId}`);
  await page.waitForSelector("#audit li");
  await page.fill("#unit", "Patroli 7");
  await page.click("#do-assign");
  await page.waitForFunction(() => document.querySelector("#assignee")?.textContent === "Patroli 7", null, { timeout: 10000 });
  const audit = await page.textContent("#audit");
  if (!audit.includes("incident.acknowledge") || !audit.includes("incident.assign")) throw new Error(`audit trail incomplete: ${audit}`);
  await page.waitForFunction(() => { const i = document.querySelector("#snapshot"); return !i || i.naturalWidth > 0; }, null, { timeout: 10000 });
  await page.screenshot({ path: join(shots, "console-incident.png") });

  step("citizen report: on the wall, linked to the alert, closed");
  // An admin makes the integration in the admin page (its key is shown once); the citizen app
  // sends a report with it.
  await page.goto(`${base}/console/#/admin`);
  await page.fill("#add-integration input[name=name]", "sipokat");
  await page.click("#add-integration button[type=submit]");
  await page.waitForSelector("#integration-key");
  const integration = { key: await page.textContent("#integration-key") };
  await page.waitForSelector('#integration-list tr[data-integration="sipokat"]');
  await page.goto(`${base}/console/#/wall`);
  await page.waitForSelector("#tiles figure");
  await page.waitForTimeout(500); // the wall's live stream is open
  const sent = await fetch(`${base}/api/v1/reports`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${integration.key}` },
    body: JSON.stringify({ source: "sipokat", external_id: "rt-07/2026-001", category: "kerumunan",
      text: "Kerumunan di jalan kampus, lalu lintas terhambat", time: new Date(Date.now() - 2000).toISOString(),
      latitude: -3.2944, longitude: 102.8617 }),
  });
  if (sent.status !== 201) throw new Error(`report refused: ${sent.status} ${await sent.text()}`);
  const reportId = (await sent.json()).id;
  await page.waitForSelector(`#alert-feed li[data-kind="citizen_report"][data-event="${reportId}"]`, { timeout: 10000 });
  result.report_on_wall = reportId;
  await page.goto(`${base}/console/#/incident/${reportId}`);
  await page.waitForSelector("#report-text");
  await page.fill("#link-id", eventId);
  await page.click("#do-link");
  await page.waitForSelector(`#links a[href="#/incident/${eventId}"]`, { timeout: 10000 });
  await page.click("#do-close");
  await page.waitForSelector('h2 .badge[data-state="closed"]', { timeout: 10000 });
  await page.screenshot({ path: join(shots, "console-report.png") });
  // The alert shows the link too.
  await page.goto(`${base}/console/#/incident/${eventId}`);
  await page.waitForSelector(`#links a[href="#/incident/${reportId}"]`, { timeout: 10000 });

  step("planner: chart and CSV");
  const deadline = Date.now() + 60000;
  await page.goto(`${base}/console/#/planner`);
  await page.waitForSelector("#chart");
  for (;;) {
    await page.click("#show");
    await page.waitForTimeout(1000);
    const legend = await page.locator("#legend li i").count();
    if (legend > 0) break;
    if (Date.now() > deadline) throw new Error("no counts reached the planner chart within 60 s");
    await page.waitForTimeout(2000);
  }
  result.legend = await page.textContent("#legend");
  await page.screenshot({ path: join(shots, "console-planner.png") });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv")]);
  const csv = readFileSync(await download.path(), "utf8");
  if (!csv.startsWith("bucket_start,camera,line,class,direction,count\n") || csv.trim().split("\n").length < 2) {
    throw new Error(`CSV download is not history: ${csv.slice(0, 200)}`);
  }
  result.csv_rows = csv.trim().split("\n").length - 1;

  step("admin: draw a counting line on the frame and save");
  await page.goto(`${base}/console/#/admin/campus`);
  await page.waitForFunction(() => document.querySelector("#admin-frame")?.naturalWidth > 0, null, { timeout: 20000 });
  await page.click("#draw-line");
  await page.fill("#shape-name", "crosswalk");
  const box = await page.locator("#overlay").boundingBox();
  await page.mouse.click(box.x + box.width * 0.1, box.y + box.height * 0.8);
  await page.mouse.click(box.x + box.width * 0.9, box.y + box.height * 0.8);
  await page.click("#finish");
  await page.click("#save-camera");
  await page.waitForFunction(async () => {
    const r = await fetch("/api/v1/cameras/campus");
    const c = await r.json();
    return c.config.lines.some((l) => l.name === "crosswalk");
  }, null, { timeout: 10000, polling: 500 });
  step("admin: calibrate by clicking road points, draw a lane with its arrow, save");
  const ground = ["0, 0", "20, 0", "20, 10", "0, 10"];
  const corners = [[0.2, 0.5], [0.8, 0.5], [0.8, 0.9], [0.2, 0.9]];
  // Clicks on the frame at a fraction of its size (the locator scrolls it into view first).
  const overlay = page.locator("#overlay");
  const size = await overlay.boundingBox();
  const clickAt = (fx, fy) => overlay.click({ position: { x: size.width * fx, y: size.height * fy } });
  await page.click("#pick-calib");
  for (let i = 0; i < 4; i++) {
    page.once("dialog", (d) => d.accept(ground[i]));
    await clickAt(corners[i][0], corners[i][1]);
    await page.waitForFunction((n) => document.querySelectorAll("#overlay circle.calib").length === n, i + 1, { timeout: 5000 });
  }
  await page.click("#finish");
  await page.fill("#calib-lat", "-3.2946");
  await page.fill("#calib-lon", "102.8617");
  await page.click("#draw-lane");
  await page.fill("#shape-name", "walkway-east");
  await page.fill("#lane-limit", "20");
  for (const [x, y] of [[0.1, 0.55], [0.9, 0.55], [0.9, 0.75], [0.1, 0.75]]) await clickAt(x, y);
  await page.click("#finish");
  await clickAt(0.15, 0.65);
  await clickAt(0.85, 0.65);
  await page.waitForSelector("#overlay line.lane-arrow", { state: "attached" });
  await page.click(".rules-form summary");
  await page.fill("#rule-stopped_s", "45");
  await page.click("#save-camera");
  await page.waitForFunction(async () => {
    const r = await fetch("/api/v1/cameras/campus");
    const c = (await r.json()).config;
    return c.lanes?.some((l) => l.name === "walkway-east" && l.speed_limit_kmh === 20 && l.direction.length === 2)
      && c.calibration?.image.length === 4 && c.calibration.latitude === -3.2946
      && c.rules?.stopped_s === 45;
  }, null, { timeout: 10000, polling: 500 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, "console-admin.png") });

  step("Bahasa Indonesia");
  await page.selectOption("#lang", "id");
  await page.goto(`${base}/console/#/wall`);
  await page.waitForFunction(() => document.querySelector("#nav a[data-page=wall]")?.textContent === "Layar");
  await page.waitForSelector("#tiles figure");
  await page.screenshot({ path: join(shots, "console-wall-id.png") });

  step("agencies: city hall hands an incident over to the police");
  // The admin (of no agency) adds a police dispatcher in the Admin page, a city hall one by API.
  await page.selectOption("#lang", "en");
  await page.goto(`${base}/console/#/admin`);
  await page.waitForSelector("#users form select[name=agency]");
  const userForm = page.locator("#users form");
  await userForm.locator("input[name=name]").fill("andi");
  await userForm.locator("select[name=role]").selectOption("dispatcher");
  await userForm.locator("select[name=agency]").selectOption("polres");
  await userForm.locator("input[name=password]").fill(password);
  await userForm.locator("button[type=submit]").click();
  await page.waitForSelector('#users tr[data-user="andi"]', { timeout: 10000 });
  const made = await page.evaluate(async (pw) => (await fetch("/api/v1/users", { method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "sari", role: "dispatcher", password: pw, agencies: ["pemkot"] }) })).status, password);
  if (made !== 201) throw new Error(`city hall user not created: ${made}`);
  const loginAs = async (name) => {
    const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: "en-GB" });
    const p = await ctx.newPage();
    p.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
    await p.goto(`${base}/`);
    await p.waitForSelector("#login-form");
    await p.selectOption("#lang", "en");
    await p.fill("input[name=user]", name);
    await p.fill("input[name=password]", password);
    await p.click("#login-form button[type=submit]");
    await p.waitForFunction((n) => document.querySelector("#who")?.textContent.startsWith(n), name, { timeout: 10000 });
    return p;
  };
  // The campus camera is city hall's: the police see neither it nor its alert.
  const police = await loginAs("andi");
  await police.waitForFunction(() => document.querySelector("#who")?.textContent.endsWith("polres"), null, { timeout: 10000 });
  result.police_who = await police.textContent("#who");
  await police.goto(`${base}/console/#/wall`);
  await police.waitForSelector("#tiles");
  await police.waitForTimeout(1500);
  if (await police.locator("#tiles figure").count() !== 0) throw new Error("the police see city hall's camera");
  const hidden = await police.evaluate(async (id) => (await fetch(`/api/v1/events/${id}`)).status, eventId);
  if (hidden !== 404) throw new Error(`city hall's alert answered ${hidden} to the police`);
  const city = await loginAs("sari");
  await city.goto(`${base}/console/#/incident/${eventId}`);
  await city.waitForSelector("#do-handover");
  await city.selectOption("#handover-to", "polres");
  await city.fill("#note", "Kerumunan di jalan kampus, mohon bantuan polisi");
  await city.click("#do-handover");
  await city.waitForFunction(() => document.querySelector("#audit")?.textContent.includes("incident.handover"), null, { timeout: 10000 });
  // Now in the police feed, with the note in its audit trail.
  await police.goto(`${base}/console/#/incidents`);
  await police.waitForSelector(`a[href="#/incident/${eventId}"]`, { timeout: 10000 });
  await police.goto(`${base}/console/#/incident/${eventId}`);
  await police.waitForSelector("#handed-to");
  const trail = await police.textContent("#audit");
  if (!trail.includes("incident.handover") || !trail.includes("mohon bantuan polisi")) throw new Error(`handover not in the audit trail: ${trail}`);
  result.handed_to = await police.textContent("#handed-to");
  await police.context().close();
  await city.context().close();

  step("API docs");
  await page.goto(`${base}/api/docs`);
  await page.waitForSelector("details.op");
  await page.screenshot({ path: join(shots, "console-api-docs.png") });

  if (problems.length) throw new Error(problems.join("\n"));
  console.log(`console e2e ok ${JSON.stringify(result)}`);
} finally {
  await browser.close();
}
