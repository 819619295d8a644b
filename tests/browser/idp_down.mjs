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

import { args, axeBothWidths as axe, check, finish, launch } from "./kit.mjs";

const { base: BASE, notice: NOTICE } = args;
const browser = await launch();

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

await finish(browser, "idp down pages");
