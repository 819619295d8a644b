// The "G-MIS is unavailable" page and the login page's operator notice in Debian's chromium
// (playwright-core), against a gateway whose [idp] status_url probe finds G-MIS down. Run by
// tests/idp_outage.rs:
//
//   node tests/browser/idp_down.mjs --base URL --out DIR --notice TEXT [--chromium PATH]
//
// /saml/login in ja and en (idp-down-ja.png, idp-down-en.png, and -phone variants): 503, one
// h1, the notice, a working link to the ID/password login, the 事務局 contact; axe-core clean
// (serious/critical) at desktop and phone width. /login with the notice (login-notice-ja.png).
// Exit 0 when every check passed.

import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const PHONE = { width: 390, height: 844 };
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const { base: BASE, out: OUT, notice: NOTICE } = args;
const CHROMIUM = args.chromium || "/usr/bin/chromium";
fs.mkdirSync(OUT, { recursive: true });

const failures = [];
let checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) {
    failures.push(what);
    console.error("FAIL: " + what);
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});

async function axe(page, name, file) {
  const desktop = page.viewportSize();
  for (const [label, vp] of [["desktop", desktop], ["phone", PHONE]]) {
    await page.setViewportSize(vp);
    await page.evaluate(AXE_SOURCE + "\n;0");
    const v = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return r.violations
        .filter((x) => x.impact === "serious" || x.impact === "critical")
        .map((x) => `${x.id} (${x.impact}): ${x.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
    });
    check(v.length === 0, `${name} (${label}): axe violations: ${JSON.stringify(v)}`);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    check(!wide, `${name} (${label}): scrolls sideways`);
    const f = label === "desktop" ? file : file.replace(/\.png$/, "-phone.png");
    await page.screenshot({ path: path.join(OUT, f), fullPage: true });
  }
  await page.setViewportSize(desktop);
  console.log(`${name}: axe clean at ${desktop.width}px and ${PHONE.width}px`);
}

async function outagePage(locale, lang, file) {
  const context = await browser.newContext({ locale, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  // Console errors (a CSP violation shows up here) and failed sub-resources; the document's own
  // 503 is the point of the page, and chromium asks for /favicon.ico on its own.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && errors.push(m.text()));
  page.on("response", (r) => {
    const sub = r.request().resourceType() !== "document" && !r.url().endsWith("/favicon.ico");
    if (sub && r.status() >= 400) errors.push(`${r.status()} ${r.url()}`);
  });
  const resp = await page.goto(`${BASE}/saml/login?return_to=%2Fmenu%2F`);
  const name = `outage ${lang}`;
  check(resp.status() === 503, `${name}: status ${resp.status()}, want 503`);
  check(resp.headers()["x-samlgate-reason"] === "idp_unavailable", `${name}: reason header`);
  check((await page.getAttribute("html", "lang")) === lang, `${name}: html lang`);
  check((await page.locator("h1").count()) === 1, `${name}: one h1`);
  const body = await page.locator("main").innerText();
  check(body.includes(NOTICE), `${name}: the operator's notice is missing`);
  check(/G-MIS/.test(body), `${name}: does not name G-MIS`);
  const footer = await page.locator("footer").innerText();
  check(footer.trim().length > 0, `${name}: no contact in the footer`);
  check(/\d{4}-\d{4}/.test(body), `${name}: no support reference`);
  await axe(page, name, file);
  check(errors.length === 0, `${name}: console errors ${JSON.stringify(errors)}`);
  // The way forward: the ID/password login, keeping the return path.
  const link = page.locator("a.button");
  const href = await link.getAttribute("href");
  check(href.startsWith("/login") && href.includes("return_to=%2Fmenu%2F"), `${name}: local login link ${href}`);
  await link.click();
  await page.waitForLoadState();
  check(new URL(page.url()).pathname === "/login", `${name}: the button led to ${page.url()}`);
  check((await page.locator("input[name=password]").count()) === 1, `${name}: no password form after the button`);
  await context.close();
}

await outagePage("ja-JP", "ja", "idp-down-ja.png");
await outagePage("en-US", "en", "idp-down-en.png");

{
  const context = await browser.newContext({ locale: "ja-JP", viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${BASE}/login`);
  const n = page.locator("section.announce");
  check((await n.count()) === 1, "login: no notice section");
  check((await n.innerText()).includes(NOTICE), "login: notice text missing");
  check((await n.getAttribute("role")) === "status", "login: the notice is not a status region");
  await axe(page, "login with notice", "login-notice-ja.png");
  await context.close();
}

await browser.close();
console.log(`${checks} checks: ${checks - failures.length} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
