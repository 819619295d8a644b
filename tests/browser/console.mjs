// Real-browser checks of the 事務局 console (issue 14, item 6) in Debian's chromium driven by
// playwright-core, with axe-core on every page at desktop and phone width. Run by
// tests/browser_console.rs:
//
//   node tests/browser/console.mjs --base URL --out DIR --user ID --password PW --code TOTP
//
// Login (password, then the TOTP code) -> queues -> search with full-width input -> account
// detail -> a password reset (the one-time password page) -> support reference -> a missing
// page -> English -> log out. Screenshots: DIR/console-*.png and console-*-phone.png.
// Exit 0 when every check passed.

import { args, axeBothWidths, check, failures, finish, launch } from "./kit.mjs";

const DESKTOP = { width: 1200, height: 900 };
const { base: BASE, user: USER, password: PASSWORD, code: CODE } = args;
const browser = await launch();

/** lang, one h1, no script or inline style, axe clean and no sideways scroll at both widths;
 *  screenshots of both. */
async function pageChecks(page, name, lang, file) {
  const f = await page.evaluate(() => ({
    lang: document.documentElement.lang,
    h1: document.querySelectorAll("h1").length,
    scripts: document.querySelectorAll("script").length,
    inline: document.querySelectorAll("[style], style").length,
  }));
  check(f.lang === lang, `${name}: lang ${f.lang}, want ${lang}`);
  check(f.h1 === 1, `${name}: ${f.h1} h1 elements`);
  check(f.scripts === 0 && f.inline === 0, `${name}: scripts or inline styles`);
  await axeBothWidths(page, name, file, DESKTOP);
}

try {
  const context = await browser.newContext({ locale: "ja-JP", viewport: DESKTOP });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) failures.push("console error: " + m.text());
  });

  await page.goto(BASE + "/console/");
  check(page.url().endsWith("/console/login"), "an anonymous visit goes to the login page: " + page.url());
  await pageChecks(page, "login", "ja", "console-login.png");
  await page.fill("#user_id", USER);
  await page.fill("#password", PASSWORD);
  await Promise.all([page.waitForURL("**/console/totp"), page.click("button[type=submit]")]);
  await pageChecks(page, "totp", "ja", "console-totp.png");
  await page.fill("#code", CODE);
  await Promise.all([page.waitForURL("**/console/"), page.click("main button[type=submit]")]);

  const pending = await page.locator("#h-pending").locator("xpath=..").innerText();
  check(pending.includes("GM7000001") && pending.includes("保健 太郎") && pending.includes("03-1111-2222"), "pending queue: " + pending);
  const rejected = await page.locator("#h-rejected").locator("xpath=..").innerText();
  check(rejected.includes("GM7000002") && rejected.includes("hanako@hosp.example.jp"), "rejected queue: " + rejected);
  await pageChecks(page, "queues", "ja", "console-home.png");

  // Search as a person types it on a Japanese keyboard.
  await page.fill("#q", "ｇｍ７０００００１");
  await Promise.all([page.waitForURL("**/console/search**"), page.press("#q", "Enter")]);
  check((await page.locator("main").innerText()).includes("千代田保健所"), "full-width search finds GM7000001");
  await pageChecks(page, "search", "ja", "console-search.png");

  await page.click("a[href='/console/account?id=GM7000001']");
  await page.waitForURL("**/console/account?id=GM7000001");
  check(await page.isVisible("#do-approve") && await page.isVisible("#do-reject"), "approve and reject forms");
  await pageChecks(page, "account", "ja", "console-account.png");

  await page.goto(BASE + "/console/account?id=staff1");
  await page.fill("#note-reset_password", "本人から電話、本人確認済み");
  await Promise.all([page.waitForLoadState(), page.click("#do-reset_password")]);
  const pw = (await page.textContent("#temporary-password")) || "";
  check(pw.length >= 16, "the one-time password is shown: " + pw);
  await pageChecks(page, "password reset", "ja", "console-done.png");

  await page.goto(BASE + "/console/support?ref=1234-5678");
  await pageChecks(page, "support reference", "ja", "console-support.png");

  const r = await page.goto(BASE + "/console/nothing-here");
  check(r.status() === 404, "a missing console page is 404");
  await pageChecks(page, "not found", "ja", "console-404.png");

  await page.goto(BASE + "/console/?lang=en");
  check((await page.getAttribute("a[hreflang=en]", "aria-current")) === "true", "English marked aria-current");
  check((await page.textContent("h1")).includes("Queues"), "English heading");
  await page.goto(BASE + "/console/account?id=GM7000002");
  check((await page.getAttribute("html", "lang")) === "en", "the language stays English");
  await pageChecks(page, "account (en)", "en", "console-account-en.png");

  await Promise.all([page.waitForURL("**/console/login?why=out"), page.click("nav button[type=submit]")]);
  check((await page.textContent("main")).includes("logged out") || (await page.textContent("main")).includes("ログアウトしました"), "logged out");
  await page.goto(BASE + "/console/");
  check(page.url().includes("/console/login"), "after logout the console asks for a login");
  await context.close();
} catch (e) {
  failures.push("exception: " + (e.stack || e));
}
await finish(browser, "console");
