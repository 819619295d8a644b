// Real-browser checks of 「パスワードを忘れた方はこちら」 (issue 13), in Debian's chromium driven by
// playwright-core, with axe-core at desktop and phone width. Run by tests/browser_local.rs:
//
//   node tests/browser/reset.mjs --base URL --out DIR --user ID --maildir DIR
//
// The gateway mails through a real SMTP server on loopback (tests/support/smtp_sink.py), which
// writes each message to --maildir as JSON; the link is taken from there.
// 1. ja, keyboard only: the login page's link -> /login/forgot (forgot-ja.png) -> the id, Enter
//    -> the same answer for every id (forgot-sent-ja.png) -> the mailed link (reset-ja.png) ->
//    Continue -> パスワード変更 after a reset (change-reset-ja.png) -> new password -> logged in
//    -> TOTP set up by choice (totp-setup-ja.png, the QR code visible).
// 2. The same link again: the invalid-link page with its way forward (reset-invalid-ja.png).
// 3. en: the English forgot page (forgot-en.png) and the sent page.
// Every page: axe-core serious/critical clean and no sideways scroll at 1000px and 390px;
// screenshots of both widths (NAME.png, NAME-phone.png). Exit 0 when every check passed.

import fs from "node:fs";
import path from "node:path";
import { args, axeBothWidths as axeWidths, check, failures, finish, launch, open as openIn } from "./kit.mjs";

const { base: BASE, user: USER, maildir: MAILDIR } = args;
const browser = await launch();
/** A context; `expected` lists status codes that are the point of a step (the 410 page). */
const open = (locale, expected = []) => openIn(browser, locale, { expected });

/** axe and no sideways scroll at both widths (NAME.png, NAME-phone.png), one h1. */
async function axeBothWidths(page, name) {
  await axeWidths(page, name, `${name}.png`);
  check((await page.locator("h1").count()) === 1, `${name}: one h1`);
}

/** The link in the n-th delivered mail (waits for it). */
async function mailedLink(n) {
  const file = path.join(MAILDIR, String(n).padStart(4, "0") + ".json");
  for (let i = 0; i < 200 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 100));
  const m = JSON.parse(fs.readFileSync(file, "utf8"));
  const link = m.body.split(/\s+/).find((w) => w.startsWith(BASE + "/login/reset?token="));
  check(link, `mail ${n} has the reset link`);
  return link;
}

const body = (page) => page.textContent("body");

try {
  let link;
  // 1. ja, keyboard only
  {
    const { context, page } = await open("ja-JP");
    await page.goto(BASE + "/login");
    await page.locator("a", { hasText: "パスワードを忘れた方はこちら" }).focus();
    await page.keyboard.press("Enter");
    await page.waitForURL("**/login/forgot");
    check((await page.textContent("h1")).includes("パスワードを忘れた方"), "forgot h1");
    check((await body(page)).includes("パスワード再設定用のリンク"), "forgot page explains the link");
    await axeBothWidths(page, "forgot-ja");
    await page.keyboard.type(USER); // autofocus: the id
    await page.keyboard.press("Enter");
    await page.waitForSelector("#forgot-sent");
    check((await body(page)).includes("30分"), "the sent page says how long the link works");
    await axeBothWidths(page, "forgot-sent-ja");
    link = await mailedLink(1);
    await page.goto(link);
    check((await page.textContent("h1")).includes("パスワードの再設定"), "reset h1");
    await axeBothWidths(page, "reset-ja");
    await page.keyboard.press("Enter"); // autofocus: Continue
    await page.waitForURL("**/login/change");
    check((await body(page)).includes("設定が終わると、そのままログインします"), "change page after a reset");
    await axeBothWidths(page, "change-reset-ja");
    const NEW = "browser reset passphrase 2026";
    await page.keyboard.type(NEW);
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab"); // past 表示
    await page.keyboard.type(NEW);
    await page.keyboard.press("Enter");
    await page.waitForURL(BASE + "/");
    const me = await context.request.get(BASE + "/auth/verify");
    check(me.status() === 200 && me.headers()["x-samlgate-local-user"] === USER, `logged in after the reset (${me.status()})`);
    // TOTP by choice (second_factor = "optional"), from this password session.
    await page.goto(BASE + "/login/totp-setup");
    const box = await page.locator("#qr svg").boundingBox();
    check(box && box.width >= 120 && box.height >= 120, `setup QR code visible (${JSON.stringify(box)})`);
    check((await body(page)).includes("次回からのログイン"), "the setup page says what it changes");
    await axeBothWidths(page, "totp-setup-ja");
    await context.close();
  }
  // 2. the same link again
  {
    const { context, page } = await open("ja-JP", [410]);
    const r = await page.goto(link);
    check(r.status() === 410, `a used link: ${r.status()}`);
    check(await page.isVisible("#reset-error"), "the invalid-link message");
    check(await page.isVisible("a.button[href='/login/forgot']"), "a way forward: start again");
    await axeBothWidths(page, "reset-invalid-ja");
    await context.close();
  }
  // 3. English
  {
    const { context, page } = await open("en-US");
    await page.goto(BASE + "/login/forgot");
    check((await page.getAttribute("html", "lang")) === "en", "html lang en");
    check((await body(page)).includes("Enter your user ID"), "English forgot page");
    await axeBothWidths(page, "forgot-en");
    await page.fill("#user_id", "nobody-at-all");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#forgot-sent");
    check((await body(page)).includes("If a mail address is registered"), "English sent page, also for an unknown id");
    await axeBothWidths(page, "forgot-sent-en");
    await context.close();
  }
} catch (e) {
  failures.push("exception: " + (e && e.stack ? e.stack : e));
}
await finish(browser, "forgot/reset pages");
