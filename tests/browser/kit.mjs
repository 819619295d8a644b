// What the real-browser checks (pages, local, reset, console, idp_down .mjs) share: their
// `--name value` arguments, Debian's chromium headless through playwright-core, one list of
// failed checks, axe-core (serious/critical) with no sideways scroll at desktop and phone width
// plus a screenshot of each, and the summary line the Rust tests look for (" passed, 0 failed").

import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

// axe-core (npm), evaluated through the DevTools protocol (the pages' CSP forbids script tags).
const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
export const PHONE = { width: 390, height: 844 };

/** The script's `--name value` arguments; `--out DIR` is created. */
export const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const OUT = args.out;
if (OUT) fs.mkdirSync(OUT, { recursive: true });

/** Every failed check (and exception or console error a script records itself). */
export const failures = [];
let checks = 0;
export function check(ok, what) {
  checks++;
  if (!ok) {
    failures.push(what);
    console.error("FAIL: " + what);
  }
}

/** Headless chromium (`--chromium PATH`, else Debian's); `flags` added to the usual ones.
 *  Playwright gives each launch a fresh, empty --user-data-dir of its own. */
export function launch({ flags = [], timeout } = {}) {
  return chromium.launch({
    executablePath: args.chromium || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", ...flags],
    ...(timeout ? { timeout } : {}),
  });
}

/** A context and page whose console errors and failed requests (4xx/5xx, except the favicon
 *  chromium asks for on its own and the `expected` statuses) are failures. */
export async function open(browser, locale, { javaScriptEnabled = true, expected = [], viewport } = {}) {
  const context = await browser.newContext({ locale, javaScriptEnabled, viewport: viewport || { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) failures.push("console error: " + m.text());
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico") && !expected.includes(r.status()))
      failures.push(`${r.status()} for ${r.url()}`);
  });
  return { context, page };
}

/** A full-page screenshot into --out. */
export async function shot(page, file) {
  await page.screenshot({ path: path.join(OUT, file), fullPage: true });
  console.log(`screenshot ${path.join(OUT, file)}`);
}

/** axe-core's serious and critical violations on the current page. */
export async function axeViolations(page) {
  await page.evaluate(AXE_SOURCE + "\n;0");
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  });
}

/** axe at desktop (`desktop`, else the page's viewport) and at phone width, no sideways scroll
 *  at either; screenshots of both when `file` is given (file and file-phone). */
export async function axeBothWidths(page, name, file, desktop = page.viewportSize()) {
  for (const [label, vp] of [["desktop", desktop], ["phone", PHONE]]) {
    await page.setViewportSize(vp);
    const v = await axeViolations(page);
    check(v.length === 0, `${name} (${label}): axe serious/critical violations: ${JSON.stringify(v)}`);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    check(!wide, `${name} (${label}): the page scrolls sideways`);
    if (file) await shot(page, label === "desktop" ? file : file.replace(/\.png$/, "-phone.png"));
  }
  await page.setViewportSize(desktop);
  console.log(`${name}: axe clean at ${desktop.width}px and ${PHONE.width}px`);
}

/** Closes the browser, lists the failures, prints the summary and exits (1 on any failure). */
export async function finish(browser, what) {
  await browser.close();
  if (failures.length) console.error(`${failures.length} failure(s):\n` + failures.join("\n"));
  console.log(`${what}: ${checks} checks: ${checks - failures.length} passed, ${failures.length} failed`);
  process.exit(failures.length ? 1 : 0);
}
