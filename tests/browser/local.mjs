// Real-browser checks of the ID/password login pages (issue 13), in Debian's chromium driven
// by playwright-core. Run by tests/browser_local.rs:
//
//   node tests/browser/local.mjs --base URL --out DIR --user ID --password ONE_TIME_PASSWORD
//
// 1. ja, JavaScript on, keyboard only: /login; the 表示 checkbox reveals and hides the password
//    (login-ja.png, login-ja-revealed.png); log in -> パスワード変更 (change-ja.png) -> new
//    password -> TOTP enrolment with the QR code visible (enrol-ja.png).
// 2. ja, JavaScript off: the 表示 checkbox is not shown and the field stays masked
//    (login-nojs.png).
// 3. en: the English login page (login-en.png).
// Exit 0 when every check passed.

import { args, check, failures, finish, launch, open as openIn, shot } from "./kit.mjs";

const { base: BASE, user: USER, password: PASSWORD } = args;
const browser = await launch();
const open = (locale, javaScriptEnabled = true) => openIn(browser, locale, { javaScriptEnabled });
const pwType = (page, id) => page.$eval("#" + id, (e) => e.type);

try {
  // 1. ja, keyboard only
  {
    const { context, page } = await open("ja-JP");
    await page.goto(BASE + "/login");
    check((await page.textContent("h1")).includes("ログイン"), "ja login h1");
    for (const t of ["ユーザーID", "パスワード", "表示", "半角英数字", "G-MISからのログインはこちら", "パスワードを忘れた方はこちら"]) {
      check((await page.textContent("body")).includes(t), `login page shows ${t}`);
    }
    check(await page.isVisible("#show"), "表示 checkbox visible with JavaScript");
    // autofocus is on the user id field
    await page.keyboard.type(USER);
    await page.keyboard.press("Tab");
    await page.keyboard.type(PASSWORD);
    check((await pwType(page, "password")) === "password", "password masked at first");
    await shot(page, "login-ja.png");
    await page.keyboard.press("Tab"); // the 表示 checkbox
    await page.keyboard.press("Space");
    check((await pwType(page, "password")) === "text", "表示 reveals the password");
    await shot(page, "login-ja-revealed.png");
    await page.keyboard.press("Space");
    check((await pwType(page, "password")) === "password", "表示 again hides the password");
    await page.keyboard.press("Enter"); // submits the form from the checkbox
    await page.waitForURL("**/login/change");
    check((await page.textContent("h1")).includes("パスワード変更"), "forced change page");
    await shot(page, "change-ja.png");
    const NEW = "browser test passphrase 2026";
    await page.keyboard.type(NEW); // autofocus: new password
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab"); // past 表示
    await page.keyboard.type(NEW);
    await page.keyboard.press("Enter");
    await page.waitForURL("**/login/enrol");
    const box = await page.locator("#qr svg").boundingBox();
    check(box && box.width >= 120 && box.height >= 120, `QR code visible (${JSON.stringify(box)})`);
    check(/^[A-Z2-7]{16,}$/.test((await page.textContent("#secret")).trim()), "base32 key shown");
    await shot(page, "enrol-ja.png");
    await context.close();
  }
  // 2. JavaScript off
  {
    const { context, page } = await open("ja-JP", false);
    await page.goto(BASE + "/login");
    check(!(await page.isVisible("#show")), "no 表示 checkbox without JavaScript");
    await page.fill("#password", "secret");
    check((await pwType(page, "password")) === "password", "field stays masked without JavaScript");
    await shot(page, "login-nojs.png");
    await context.close();
  }
  // 3. English
  {
    const { context, page } = await open("en-US");
    await page.goto(BASE + "/login");
    const body = await page.textContent("body");
    check(body.includes("User ID") && body.includes("Show") && body.includes("Forgot your password?"), "English login page");
    check((await page.getAttribute("html", "lang")) === "en", "html lang en");
    await shot(page, "login-en.png");
    await context.close();
  }
} catch (e) {
  failures.push("exception: " + (e && e.stack ? e.stack : e));
}
await finish(browser, "local login pages");
