// Real-browser checks of samlgate's pages against a running `samlgate demo`, in Debian's
// chromium driven by playwright-core. Run by tests/browser.rs:
//
//   node tests/browser/pages.mjs --base http://127.0.0.1:PORT --out target/screenshots
//
// Flows (each in a fresh browser context, so fresh cookies):
//   1. ja, JavaScript on:  /login -> 「G-MISからのログインはこちら」 -> demo IdP, first user ->
//      consent page (consent-ja.png, consent-ja-mobile.png) -> 同意する -> / (home-ja.png)
//   2. en-US:              second user -> consent page (consent-en.png) -> "I do not agree" ->
//      blocked page (blocked-en.png)
//   3. ja, JavaScript off: third user -> consent page -> 同意する -> / (home-nojs.png)
//   4. ja:                 fourth user (保健所) -> the application-needed page (application-ja.png)
// With --flow lang-links instead: the header's 日本語 | English links, on the login and consent
// pages and on pages that answer a POST (the application-needed and blocked pages).
// On every samlgate page: lang, one h1, accessible names of form controls, no script, no console
// error, text contrast (WCAG AA), a visible focus outline; on the consent page the Tab order
// reaches 同意する before 同意しない.
// Exit 0 when every check passed; otherwise the failures are listed and the exit code is 1.

import { PHONE, args, axeBothWidths, check, finish, launch, shot } from "./kit.mjs";

const BASE = args.base;
const OUT = args.out;
const FLOW = args.flow || "main";
if (!BASE || !OUT) {
  console.error("usage: node pages.mjs --base http://127.0.0.1:PORT --out DIR [--chromium PATH]");
  process.exit(2);
}

const browser = await launch({
  flags: ["--disable-quic", "--disable-component-update", "--disable-sync"],
  timeout: 60_000,
});

/** A fresh context and page; console errors and failed requests on samlgate's origin recorded. */
async function open(name, { locale = "ja-JP", javaScriptEnabled = true, viewport } = {}) {
  const context = await browser.newContext({
    locale,
    javaScriptEnabled,
    viewport: viewport || { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  // Console errors on samlgate's pages (a CSP violation shows up here). A failed sub-resource
  // load is reported by the response listener below, with its URL.
  page.on("console", (m) => {
    if (m.type() === "error" && page.url().startsWith(BASE) && !m.text().startsWith("Failed to load resource")) {
      check(false, `${name}: console error on ${page.url()}: ${m.text()}`);
    }
  });
  // Sub-resources of samlgate's pages must load; the favicon Chromium asks for on its own is
  // not one of ours (samlgate serves none), so it is left out.
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (r.url().startsWith(BASE) && r.request().resourceType() !== "document" && u.pathname !== "/favicon.ico") {
      check(r.status() === 200, `${name}: ${r.url()} answered ${r.status()}`);
    }
  });
  return { context, page };
}

/** DOM facts of the current page (needs JavaScript in the page's context, i.e. evaluate). */
async function facts(page) {
  return page.evaluate(() => {
    const visible = (el) => {
      const s = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      return s.visibility !== "hidden" && s.display !== "none" && r.width > 0 && r.height > 0;
    };
    const nameOf = (el) => {
      const aria = el.getAttribute("aria-label");
      if (aria && aria.trim()) return aria.trim();
      const by = el.getAttribute("aria-labelledby");
      if (by) {
        const t = by
          .split(/\s+/)
          .map((id) => document.getElementById(id)?.textContent || "")
          .join(" ")
          .trim();
        if (t) return t;
      }
      if (el.tagName === "BUTTON" || el.tagName === "A") return el.textContent.trim();
      if (el.id) {
        const l = document.querySelector(`label[for="${CSS.escape(el.id)}"]`);
        if (l && l.textContent.trim()) return l.textContent.trim();
      }
      const wrap = el.closest("label");
      if (wrap && wrap.textContent.trim()) return wrap.textContent.trim();
      if (el.type === "submit" || el.type === "button") return (el.value || "").trim();
      return (el.getAttribute("title") || "").trim();
    };
    const controls = [...document.querySelectorAll("input, select, textarea, button, a[href]")]
      .filter((el) => !(el.tagName === "INPUT" && el.type === "hidden"))
      .map((el) => ({ tag: el.tagName.toLowerCase(), html: el.outerHTML.slice(0, 120), name: nameOf(el) }));

    // Contrast of every visible element that has its own text, against the first opaque
    // background behind it (WCAG 2.x relative luminance).
    const rgb = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
      };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const bgOf = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.99) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const contrast = [];
    for (const el of document.body.querySelectorAll("*")) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || !visible(el)) continue;
      const s = getComputedStyle(el);
      const fg = rgb(s.color);
      const bg = bgOf(el);
      const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (l1 + 0.05) / (l2 + 0.05);
      const size = parseFloat(s.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
      contrast.push({
        text: el.textContent.trim().slice(0, 40),
        tag: el.tagName.toLowerCase(),
        ratio: Math.round(ratio * 100) / 100,
        need: large ? 3 : 4.5,
        fg: s.color,
        bg: `rgb(${bg.r}, ${bg.g}, ${bg.b})`,
      });
    }
    // Horizontal overflow (a table wider than a phone's screen, say).
    const overflow = document.documentElement.scrollWidth > window.innerWidth + 1;
    return {
      lang: document.documentElement.lang,
      title: document.title,
      h1: [...document.querySelectorAll("h1")].map((h) => h.textContent.trim()),
      // The login pages' 表示 checkbox script is an enhancement (the field stays masked without it).
      scripts: [...document.querySelectorAll("script")].filter((s) => s.getAttribute("src") !== "/_samlgate/login.js").length,
      inlineStyles: document.querySelectorAll("[style], style").length,
      controls,
      contrast,
      overflow,
      scrollWidth: document.documentElement.scrollWidth,
    };
  });
}

/** The checks every samlgate page must pass. */
async function commonChecks(page, name, lang, file) {
  const f = await facts(page);
  check(f.lang === lang, `${name}: <html lang> is ${JSON.stringify(f.lang)}, want ${lang}`);
  check(f.h1.length === 1, `${name}: ${f.h1.length} h1 elements (${JSON.stringify(f.h1)}), want one`);
  check(f.title.trim().length > 0, `${name}: empty <title>`);
  check(f.scripts === 0, `${name}: ${f.scripts} <script> elements on a page that must work without JS`);
  check(f.inlineStyles === 0, `${name}: inline styles (the CSP forbids them)`);
  for (const c of f.controls) {
    check(c.name.length > 0, `${name}: form control without an accessible name: ${c.html}`);
  }
  for (const c of f.contrast) {
    check(
      c.ratio >= c.need,
      `${name}: contrast ${c.ratio} < ${c.need} for <${c.tag}> "${c.text}" (${c.fg} on ${c.bg})`,
    );
  }
  check(!f.overflow, `${name}: the page scrolls sideways (scrollWidth ${f.scrollWidth})`);
  // The support desk is in the footer of every page.
  const footer = await page.locator("footer").innerText();
  check(/0120-000-000/.test(footer) && /gmis-support@example.go.jp/.test(footer), `${name}: the footer lacks the support desk: ${JSON.stringify(footer)}`);
  await axeBothWidths(page, name, file);
  const worst = f.contrast.reduce((a, c) => (a && a.ratio <= c.ratio ? a : c), null);
  console.log(
    `${name}: lang=${f.lang} h1=${JSON.stringify(f.h1)} controls=${f.controls.length} ` +
      `text elements=${f.contrast.length} lowest contrast=${worst ? `${worst.ratio} ("${worst.text}")` : "-"}`,
  );
  return f;
}

/** Presses Tab up to n times from the top; returns the focused elements' descriptions. */
async function tabOrder(page, n = 12) {
  await page.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
  });
  const seen = [];
  for (let i = 0; i < n; i++) {
    await page.keyboard.press("Tab");
    seen.push(
      await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return { key: "body" };
        const s = getComputedStyle(el);
        return {
          key: `${el.tagName.toLowerCase()}:${el.getAttribute("value") || el.getAttribute("href") || ""}`,
          text: el.textContent.trim(),
          outline: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2,
        };
      }),
    );
  }
  return seen;
}

/** From samlgate's /login through the demo IdP (user index `user`) to wherever it ends. */
async function loginThroughDemoIdp(page, name, { user, linkName, js = true, start = "/login" }) {
  await page.goto(BASE + start);
  const link = page.getByRole("link", { name: linkName });
  check((await link.count()) === 1, `${name}: one link named ${linkName} on /login`);
  await link.click();
  // The demo IdP's page: a radio per test user.
  const radios = page.locator('input[type="radio"][name="user"]');
  await radios.first().waitFor();
  check((await radios.count()) >= 4, `${name}: the demo IdP lists its test users`);
  await radios.nth(user).check();
  await page.locator('form[action="/login"] button[type="submit"]').click();
  if (!js) {
    // Without JavaScript the demo IdP's auto-post does not run: press its button.
    await page.getByRole("button", { name: /続ける/ }).click();
  }
  // The ACS answers 303 (a redirect does not commit a URL) or a page of its own (a refusal).
  await page.waitForURL((u) => u.href.startsWith(BASE), { timeout: 20_000 });
}

/** Clicks the header's language link and checks the page keeps saying the same thing. */
async function switchLanguage(page, name, { to, reason }) {
  const label = to === "en" ? "English" : "日本語";
  const from = page.url();
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().isNavigationRequest() && r.url().startsWith(BASE)),
    page.getByRole("link", { name: label, exact: true }).click(),
  ]);
  await page.waitForLoadState();
  const ct = (await resp.headerValue("content-type")) || "";
  const lang = ct.startsWith("text/html") ? await page.evaluate(() => document.documentElement.lang) : "";
  check(
    ct.startsWith("text/html") && lang === to,
    `${name}: 「${label}」 on ${from} led to ${resp.status()} ${ct} ${resp.url()} (lang ${JSON.stringify(lang)}), want the same page in ${to}`,
  );
  const got = await resp.headerValue("x-samlgate-reason");
  check(
    got === reason,
    `${name}: after 「${label}」 the page's reason is ${JSON.stringify(got)} (status ${resp.status()}), want ${JSON.stringify(reason)}`,
  );
}

/** A terminal page: no language links in the header, the message also in the other language. */
async function bothLanguages(page, name, { main, other, text }) {
  const links = await page.locator("header .langs a").count();
  check(links === 0, `${name}: ${links} language links on a page that answers a POST`);
  const lang = await page.evaluate(() => document.documentElement.lang);
  check(lang === main, `${name}: page lang ${JSON.stringify(lang)}, want ${main}`);
  const alt = page.locator(`p.other-lang[lang="${other}"]`);
  check((await alt.count()) === 1, `${name}: no message in ${other}`);
  if ((await alt.count()) === 1) {
    const t = await alt.innerText();
    check(text.test(t), `${name}: the ${other} message ${JSON.stringify(t)} does not match ${text}`);
  }
}

if (FLOW === "apply") {
  // A refused 保健所 user applies from the refusal page; `samlgate applications approve`;
  // the next login reaches the consent page.
  const { execFileSync } = await import("node:child_process");
  const cli = (...a) => execFileSync(args.samlgate, [...a, "--config", args.config], { encoding: "utf8" });
  const name = "apply";
  const { context, page } = await open(name);
  await loginThroughDemoIdp(page, name, { user: 3, linkName: "G-MISからのログインはこちら" });
  const form = page.getByRole("button", { name: "SSO利用申請を行う", exact: true });
  check((await form.count()) === 1, `${name}: no 「SSO利用申請を行う」 on the refusal page`);
  await commonChecks(page, `${name} refusal page with the form`, "ja", "apply-form-ja.png");
  // A bad phone number: the form again with a message, nothing filed.
  await page.getByLabel("連絡先電話番号（必須）").fill("abc");
  await page.getByLabel("申請の理由（必須）").fill("保健所の業務で医療機関の情報を確認するため");
  await form.click();
  await page.waitForLoadState();
  check((await page.getByRole("alert").count()) === 1, `${name}: no error message for a bad phone number`);
  check(!/GM0034567/.test(cli("applications", "list")), `${name}: a refused form filed an application`);
  await commonChecks(page, `${name} form error`, "ja");
  await page.getByLabel("連絡先電話番号（必須）").fill("０３－１２３４－５６７８");
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/_samlgate/apply") && r.request().method() === "POST"),
    page.getByRole("button", { name: "SSO利用申請を行う", exact: true }).click(),
  ]);
  await page.waitForLoadState();
  check(resp.status() === 200 && (await resp.headerValue("x-samlgate-reason")) === "application_pending", `${name}: filing answered ${resp.status()} ${await resp.headerValue("x-samlgate-reason")}`);
  const done = await commonChecks(page, `${name} filed page`, "ja", "apply-filed-ja.png");
  const text = await page.locator("main").innerText();
  check(/事務局で確認中/.test(text) && /申請日/.test(text) && /\d{4}-\d{2}-\d{2} \d{2}:\d{2}/.test(text), `${name}: the filed page lacks status and date: ${text}`);
  check((await page.locator("p.success").count()) === 1 && (await page.locator("p.notice").count()) === 0, `${name}: the success message is not in the success box`);
  check(done.h1[0]?.includes("確認中"), `${name}: filed h1 ${JSON.stringify(done.h1)}`);
  const listed = JSON.parse(cli("applications", "list", "--json").trim().split("\n").find((l) => l.includes("GM0034567")) || "{}");
  check(listed.status === "pending" && listed.phone === "03-1234-5678" && listed.profile?.facility_name === "みなと保健所" && /保健所の業務/.test(listed.reason || ""), `${name}: the stored application: ${JSON.stringify(listed)}`);
  // The next login, still pending: the pending page with the date.
  await loginThroughDemoIdp(page, name, { user: 3, linkName: "G-MISからのログインはこちら" });
  check(/申請日/.test(await page.locator("main").innerText()), `${name}: the pending page lacks the filing date`);
  // The secretariat's list: name and facility, Japan time, columns aligned in display width.
  const table = cli("applications", "list").split("\n");
  const dw = (t) => [...t].reduce((w, ch) => w + (/[\u1100-\u115F\u2E80-\uA4CF\uAC00-\uD7A3\uF900-\uFAFF\uFE30-\uFE4F\uFF00-\uFF60\uFFE0-\uFFE6]/.test(ch) ? 2 : 1), 0);
  const row = table.find((l) => l.includes("GM0034567")) || "";
  const head = table.find((l) => l.startsWith("GMIS_ID")) || "";
  check(/鈴木 一郎/.test(row) && /みなと保健所/.test(row) && /JST/.test(row), `${name}: the list row lacks name, facility or local time: ${row}`);
  check(dw(row.slice(0, row.indexOf("03-1234-5678"))) === dw(head.slice(0, head.indexOf("PHONE"))), `${name}: PHONE column not aligned:\n${head}\n${row}`);
  // A typo in a hand-entered id is refused ([attributes] account_id_pattern); full-width is normalised.
  let refused = false;
  try { cli("applications", "add", "GM00345", "--by", "browser-test"); } catch (e) { refused = /account_id_pattern/.test(String(e.stderr)); }
  check(refused, `${name}: \`applications add GM00345\` was not refused by the pattern`);
  cli("applications", "add", "ｇｍ００４５６７８", "--by", "browser-test");
  check(/GM0045678/.test(cli("applications", "list")), `${name}: the full-width id was not normalised`);
  cli("applications", "approve", "GM0034567", "--by", "browser-test");
  await loginThroughDemoIdp(page, name, { user: 3, linkName: "G-MISからのログインはこちら" });
  check(new URL(page.url()).pathname === "/consent", `${name}: after approval the login led to ${page.url()}`);
  await context.close();
  await finish(browser, "pages");
}

if (FLOW === "lang-links") {
  // The login and consent pages switch language in place.
  {
    const name = "lang links: login, consent";
    const { context, page } = await open(name);
    await page.goto(BASE + "/login");
    await switchLanguage(page, name, { to: "en", reason: null });
    check((await page.getByRole("link", { name: "Log in with G-MIS" }).count()) === 1, `${name}: English /login`);
    await loginThroughDemoIdp(page, name, { user: 0, linkName: "Log in with G-MIS", start: "/login?lang=en" });
    check(new URL(page.url()).pathname === "/consent", `${name}: landed on ${page.url()}`);
    await switchLanguage(page, name, { to: "en", reason: null });
    check(
      (await page.getByRole("button", { name: "I agree", exact: true }).count()) === 1,
      `${name}: the consent form after switching to English`,
    );
    await context.close();
  }
  // Pages that answer a POST (the ACS's refusal, the consent decision) cannot be reloaded in
  // another language: they carry the message in both languages and no language link that
  // would lead to a 405 or to a different message.
  {
    const name = "lang links: application-needed page";
    const { context, page } = await open(name);
    await loginThroughDemoIdp(page, name, { user: 3, linkName: "G-MISからのログインはこちら" });
    await bothLanguages(page, name, { main: "ja", other: "en", text: /approved SSO application/ });
    await context.close();
  }
  {
    const name = "lang links: blocked page";
    const { context, page } = await open(name, { locale: "en-US" });
    await loginThroughDemoIdp(page, name, { user: 1, linkName: "Log in with G-MIS" });
    await page.getByRole("button", { name: "I do not agree", exact: true }).click();
    await page.waitForLoadState();
    await page.getByRole("button", { name: "Confirm: I do not agree", exact: true }).click();
    await page.waitForLoadState();
    await bothLanguages(page, name, { main: "en", other: "ja", text: /事務局が理由を確認/ });
    await context.close();
  }
  await finish(browser, "pages");
}

// ------------------------------------------------------------------------------------------
// 1. Japanese, JavaScript on: consent, accept, home

{
  const name = "ja accept";
  const { context, page } = await open(name);
  await page.goto(BASE + "/login");
  await commonChecks(page, `${name} /login`, "ja", "login-ja.png");
  await loginThroughDemoIdp(page, name, { user: 0, linkName: "G-MISからのログインはこちら" });
  check(new URL(page.url()).pathname === "/consent", `${name}: landed on ${page.url()}, want /consent`);
  const f = await commonChecks(page, `${name} /consent`, "ja", "consent-ja-axe.png");
  check(f.h1[0]?.includes("同意"), `${name}: consent h1 is ${JSON.stringify(f.h1)}`);
  const doc = await page.locator(".consent-doc").innerText();
  check(doc.includes("第三者提供"), `${name}: the consent document is not shown in full: ${JSON.stringify(doc.slice(0, 200))}`);
  check((await page.locator('a[href="https://www.example.go.jp/privacy"]').count()) === 1, `${name}: no privacy policy link`);
  check((await page.locator('[data-case="first"]').count()) === 1, `${name}: not worded as a first registration`);
  const body = await page.locator("main").innerText();
  for (const want of ["GM0012345", "区分", "病院", "1310000001", "テスト総合病院", "山田 太郎", "yamada@example.jp"]) {
    check(body.includes(want), `${name}: the consent page does not show ${want}`);
  }
  const accept = page.getByRole("button", { name: "同意する", exact: true });
  const reject = page.getByRole("button", { name: "同意しない", exact: true });
  check((await accept.count()) === 1 && (await reject.count()) === 1, `${name}: the two buttons by name`);
  await shot(page, "consent-ja.png");
  const order = await tabOrder(page);
  const ia = order.findIndex((o) => o.key === "button:accept");
  const ir = order.findIndex((o) => o.key === "button:reject");
  check(ia >= 0 && ir > ia, `${name}: Tab order reaches accept then reject: ${JSON.stringify(order.map((o) => o.key))}`);
  check(order.filter((o) => o.key !== "body").every((o) => o.outline), `${name}: a focused control without a visible outline: ${JSON.stringify(order)}`);
  // Keyboard only: Tab on to 同意する and press Enter.
  for (let i = 0; i < 20; i++) {
    if (await page.evaluate(() => document.activeElement?.getAttribute("value") === "accept")) break;
    await page.keyboard.press("Tab");
  }
  await Promise.all([page.waitForURL(BASE + "/"), page.keyboard.press("Enter")]);
  const home = await commonChecks(page, `${name} /`, "ja");
  const homeText = await page.locator("main").innerText();
  check(homeText.includes("GM0012345") && homeText.includes("テスト総合病院"), `${name}: the home page does not show the profile`);
  check(home.h1.length === 1, `${name}: home h1`);
  await shot(page, "home-ja.png");
  // Back to the consent page while logged in: home again, not "the consent page has expired".
  await page.goto(BASE + "/consent");
  check(new URL(page.url()).pathname === "/", `${name}: /consent after accepting led to ${page.url()}`);
  // Logout (the demo IdP has no SLO endpoint): says G-MIS is still logged in; not a red warning.
  await page.goto(BASE + "/logout");
  await commonChecks(page, `${name} /logout`, "ja", "logout-ja.png");
  const out = await page.locator("main").innerText();
  check(/G-MISへのログインはまだ続いています/.test(out), `${name}: the logout page does not say G-MIS is still open: ${out}`);
  check((await page.locator("p.success").count()) === 1 && (await page.locator("p.notice").count()) === 0, `${name}: the logout message is not in the success box`);
  await context.close();
}

// The consent page on a phone-sized screen (the third user; flow 3 logs in again and decides).
{
  const name = "ja mobile consent";
  const { context, page } = await open(name, { viewport: { width: 390, height: 844 } });
  await loginThroughDemoIdp(page, name, { user: 2, linkName: "G-MISからのログインはこちら" });
  check(new URL(page.url()).pathname === "/consent", `${name}: landed on ${page.url()}`);
  await commonChecks(page, `${name} /consent`, "ja");
  await shot(page, "consent-ja-mobile.png");
  await context.close(); // undecided: the pending login simply expires
}

// ------------------------------------------------------------------------------------------
// 2. English: consent, reject, blocked

{
  const name = "en reject";
  const { context, page } = await open(name, { locale: "en-US" });
  await loginThroughDemoIdp(page, name, { user: 1, linkName: "Log in with G-MIS" });
  check(new URL(page.url()).pathname === "/consent", `${name}: landed on ${page.url()}, want /consent`);
  const f = await commonChecks(page, `${name} /consent`, "en");
  check(/consent/i.test(f.h1[0] || ""), `${name}: consent h1 is ${JSON.stringify(f.h1)}`);
  const body = await page.locator("main").innerText();
  for (const want of ["GM0023456", "Category", "薬局", "さくら薬局", "sato@example.jp"]) {
    check(body.includes(want), `${name}: the consent page does not show ${want}`);
  }
  await shot(page, "consent-en.png");
  // 同意しない first asks, saying what happens and how to undo it; nothing is recorded yet.
  const [ask] = await Promise.all([
    page.waitForResponse((r) => r.url() === BASE + "/consent" && r.request().method() === "POST"),
    page.getByRole("button", { name: "I do not agree", exact: true }).click(),
  ]);
  check(ask.status() === 200, `${name}: "I do not agree" answered ${ask.status()}, want the confirmation page (200)`);
  await page.waitForLoadState();
  const c = await commonChecks(page, `${name} confirm page`, "en", "reject-confirm-en.png");
  const ctext = await page.locator("main").innerText();
  check(/How to undo it/.test(ctext) && /What happens/.test(ctext), `${name}: the confirmation page does not explain: ${ctext}`);
  check(c.h1[0]?.includes("do not agree"), `${name}: confirmation h1 ${JSON.stringify(c.h1)}`);
  // The two choices: same height, well apart (thumb-safe), in the page's font.
  for (const vp of [null, PHONE]) {
    if (vp) await page.setViewportSize(vp);
    const g = await page.evaluate(() => {
      const [a, b] = [...document.querySelectorAll(".choices > *")];
      const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
      const gap = Math.max(rb.left - ra.right, rb.top - ra.bottom, ra.left - rb.right, ra.top - rb.bottom);
      return { ha: ra.height, hb: rb.height, gap, fa: getComputedStyle(a).fontFamily, fb: getComputedStyle(b).fontFamily, body: getComputedStyle(document.body).fontFamily };
    });
    check(Math.abs(g.ha - g.hb) < 1 && g.ha >= 44, `${name}: button heights ${g.ha} / ${g.hb} (want equal, >= 44px)`);
    check(g.gap >= 24, `${name}: the buttons are ${g.gap}px apart (want >= 24)`);
    check(g.fa === g.body && g.fb === g.body, `${name}: button fonts ${g.fa} / ${g.fb}, page ${g.body}`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url() === BASE + "/consent" && r.request().method() === "POST"),
    page.getByRole("button", { name: "Confirm: I do not agree", exact: true }).click(),
  ]);
  check(resp.status() === 403, `${name}: reject answered ${resp.status()}, want 403`);
  check(
    (await resp.headerValue("x-samlgate-reason")) === "blocked_consent_rejected",
    `${name}: reject reason ${await resp.headerValue("x-samlgate-reason")}`,
  );
  await page.waitForLoadState();
  check(new URL(page.url()).pathname === "/consent", `${name}: after reject the URL is ${page.url()}`);
  const b = await commonChecks(page, `${name} blocked page`, "en");
  check(/secretariat/i.test(b.h1[0] || ""), `${name}: blocked h1 is ${JSON.stringify(b.h1)}`);
  await shot(page, "blocked-en.png");
  // Back to the consent page (or a reload): still the blocked state, not "log in again".
  const again = await page.goto(BASE + "/consent");
  check(
    again.status() === 403 && (await again.headerValue("x-samlgate-reason")) === "blocked_consent_rejected",
    `${name}: /consent after the reject answered ${again.status()} ${await again.headerValue("x-samlgate-reason")}`,
  );
  // No session: the home page sends the browser to /login.
  await page.goto(BASE + "/");
  check(new URL(page.url()).pathname === "/login", `${name}: / after reject is ${page.url()}`);
  await context.close();
}

// ------------------------------------------------------------------------------------------
// 3. Japanese, JavaScript off: our pages work without it

{
  const name = "ja no-JS";
  const { context, page } = await open(name, { javaScriptEnabled: false });
  await loginThroughDemoIdp(page, name, { user: 2, linkName: "G-MISからのログインはこちら", js: false });
  check(new URL(page.url()).pathname === "/consent", `${name}: landed on ${page.url()}, want /consent`);
  check(
    (await page.getByRole("heading", { level: 1 }).count()) === 1,
    `${name}: the consent page without JavaScript has no h1`,
  );
  check(
    (await page.locator("main").innerText()).includes("GM0045678"),
    `${name}: the consent page does not show the account`,
  );
  await Promise.all([
    page.waitForURL(BASE + "/"),
    page.getByRole("button", { name: "同意する", exact: true }).click(),
  ]);
  check(
    (await page.locator("main").innerText()).includes("GM0045678"),
    `${name}: the home page without JavaScript does not show the account`,
  );
  await shot(page, "home-nojs.png");
  await context.close();
}

// ------------------------------------------------------------------------------------------
// 4. A closed category: the application page, no session

{
  const name = "ja application needed";
  const { context, page } = await open(name);
  const seen = [];
  page.on("response", (r) => {
    if (r.url().startsWith(BASE)) seen.push([r.request().method(), new URL(r.url()).pathname, r.status()]);
  });
  await loginThroughDemoIdp(page, name, { user: 3, linkName: "G-MISからのログインはこちら" });
  const acs = seen.find(([m, p]) => m === "POST" && p === "/saml/acs");
  check(acs && acs[2] === 403, `${name}: the ACS answered ${JSON.stringify(acs)}, want 403`);
  const f = await commonChecks(page, `${name} page`, "ja", "application-ja-axe.png");
  check(f.h1[0]?.includes("申請"), `${name}: h1 is ${JSON.stringify(f.h1)}`);
  const ref = await page.locator(".refno").innerText();
  check(/^\d{4}-\d{4}$/.test(ref), `${name}: support reference ${JSON.stringify(ref)}`);
  check((await page.locator("main").innerText()).includes("保健所"), `${name}: the page does not name the category`);
  await shot(page, "application-ja.png");
  // GET /saml/acs (Back or a bookmark into the ACS): a styled page with a way to the login page.
  const acsGet = await page.goto(BASE + "/saml/acs");
  check(acsGet.status() === 405, `${name}: GET /saml/acs answered ${acsGet.status()}`);
  await commonChecks(page, `${name} GET /saml/acs`, "ja", "acs-get-ja.png");
  check((await page.locator('main a[href="/login"]').count()) === 1, `${name}: GET /saml/acs has no way back to /login`);
  check(
    !seen.some(([, p, s]) => s >= 300 && s < 400 && p === "/saml/acs"),
    `${name}: the refusal redirected: ${JSON.stringify(seen)}`,
  );
  await context.close();
}

await finish(browser, "pages");
