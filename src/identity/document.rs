//! The consent document (`[consent] document`): a Markdown file, or an HTML fragment limited to
//! plain structural tags, rendered once at start-up into HTML the consent page shows in full.
//! Markdown is escaped and supports headings, paragraphs, lists and `**bold**`; an HTML fragment
//! with any other tag or any attribute (but `href="https://…"` on `<a>`) is refused, so the file
//! cannot bring script, styles or forms onto the page.

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsentDocument {
    /// The whole document, safe HTML.
    pub html: String,
    /// The section headed 「変更点」/「変更内容」/"What changed"/"Changes", if any, safe HTML.
    pub changes_html: String,
}

pub fn load(path: &std::path::Path) -> Result<ConsentDocument, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_html = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if is_html {
        check_fragment(&text)?;
        Ok(ConsentDocument {
            changes_html: String::new(),
            html: text,
        })
    } else {
        Ok(ConsentDocument {
            html: markdown(&text),
            changes_html: markdown(&changes_section(&text)),
        })
    }
}

fn is_changes_heading(line: &str) -> bool {
    let t = line.trim_start_matches('#').trim().to_lowercase();
    line.starts_with('#')
        && (t.starts_with("変更点")
            || t.starts_with("変更内容")
            || t.starts_with("what changed")
            || t.starts_with("changes"))
}

/// The lines under the "what changed" heading, up to the next heading of the same or a
/// higher level.
fn changes_section(text: &str) -> String {
    let mut out = Vec::new();
    let mut level = None;
    for line in text.lines() {
        let hl = line.chars().take_while(|c| *c == '#').count();
        match level {
            None if is_changes_heading(line) => level = Some(hl),
            Some(l) if hl > 0 && hl <= l => break,
            Some(_) => out.push(line),
            None => {}
        }
    }
    out.join("\n")
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escaped inline text with `**bold**`.
fn inline(s: &str) -> String {
    let parts: Vec<&str> = s.split("**").collect();
    let mut o = String::new();
    for (i, p) in parts.iter().enumerate() {
        let strong = i % 2 == 1 && i + 1 < parts.len();
        if strong {
            o.push_str("<strong>");
            o.push_str(&escape(p));
            o.push_str("</strong>");
        } else {
            if i % 2 == 1 {
                o.push_str("**");
            }
            o.push_str(&escape(p));
        }
    }
    o
}

/// A small Markdown subset: `#`..`####` headings (shown one level below the page's h1),
/// `-`/`*`/`1.` lists, paragraphs separated by blank lines.
pub fn markdown(text: &str) -> String {
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let mut list: Option<&str> = None;
    let flush_para = |out: &mut String, para: &mut Vec<&str>| {
        if !para.is_empty() {
            let joined: Vec<String> = para.iter().map(|l| inline(l.trim())).collect();
            out.push_str(&format!("<p>{}</p>\n", joined.join("<br>")));
            para.clear();
        }
    };
    let close_list = |out: &mut String, list: &mut Option<&str>| {
        if let Some(tag) = list.take() {
            out.push_str(&format!("</{tag}>\n"));
        }
    };
    for line in text.lines() {
        let t = line.trim();
        let hl = t.chars().take_while(|c| *c == '#').count();
        let ordered = t
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if t.is_empty() {
            flush_para(&mut out, &mut para);
            close_list(&mut out, &mut list);
        } else if (1..=4).contains(&hl) && t[hl..].starts_with(' ') {
            flush_para(&mut out, &mut para);
            close_list(&mut out, &mut list);
            let level = (hl + 1).min(6);
            out.push_str(&format!(
                "<h{level}>{}</h{level}>\n",
                inline(t[hl..].trim())
            ));
        } else if let Some(item) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            item_line(&mut out, &mut para, &mut list, "ul", item, flush_para);
        } else if let Some((_, item)) = ordered {
            item_line(&mut out, &mut para, &mut list, "ol", item, flush_para);
        } else {
            close_list(&mut out, &mut list);
            para.push(t);
        }
    }
    flush_para(&mut out, &mut para);
    close_list(&mut out, &mut list);
    out
}

fn item_line<'a>(
    out: &mut String,
    para: &mut Vec<&'a str>,
    list: &mut Option<&'a str>,
    tag: &'a str,
    item: &str,
    flush_para: impl Fn(&mut String, &mut Vec<&'a str>),
) {
    flush_para(out, para);
    if *list != Some(tag) {
        if let Some(old) = list.take() {
            out.push_str(&format!("</{old}>\n"));
        }
        out.push_str(&format!("<{tag}>\n"));
        *list = Some(tag);
    }
    out.push_str(&format!("<li>{}</li>\n", inline(item.trim())));
}

const ALLOWED_TAGS: [&str; 17] = [
    "p", "br", "h2", "h3", "h4", "ul", "ol", "li", "strong", "em", "b", "a", "table", "tr", "th",
    "td", "section",
];

/// Refuses an HTML fragment with a tag outside ALLOWED_TAGS, any attribute but an http(s)
/// `href` on `<a>`, a comment, or a stray `<`.
fn check_fragment(html: &str) -> Result<(), String> {
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let end = after
            .find('>')
            .ok_or("an unclosed `<` in the HTML fragment")?;
        let tag = &after[..end];
        let body = tag.trim_start_matches('/').trim();
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !ALLOWED_TAGS.contains(&name.as_str()) {
            return Err(format!(
                "the HTML fragment has <{}>; allowed: {}",
                tag.chars().take(30).collect::<String>(),
                ALLOWED_TAGS.join(", ")
            ));
        }
        let attrs = body[name.len()..].trim().trim_end_matches('/').trim();
        let href_ok = name == "a" && {
            let v = attrs
                .strip_prefix("href=\"")
                .and_then(|v| v.strip_suffix('"'));
            v.is_some_and(|v| {
                (v.starts_with("https://") || v.starts_with("http://"))
                    && !v.contains(['"', '<', '>', '\'', ' '])
            })
        };
        if !attrs.is_empty() && !href_ok {
            return Err(format!(
                "the HTML fragment has attributes in <{}>; only <a href=\"https://…\"> may have one",
                tag.chars().take(40).collect::<String>()
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_and_structures() {
        let h = markdown(
            "# 利用目的\n\n本人確認に<script>使います。\n\n- **氏名**\n- メール\n\n1. one\n2. two",
        );
        assert!(h.contains("<h2>利用目的</h2>"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
        assert!(!h.contains("<script"), "{h}");
        assert!(
            h.contains("<ul>\n<li><strong>氏名</strong></li>\n<li>メール</li>\n</ul>"),
            "{h}"
        );
        assert!(h.contains("<ol>\n<li>one</li>"), "{h}");
    }

    #[test]
    fn changes_section_is_found() {
        let t = "# 同意文書\n\n本文\n\n## 変更点\n\n- 利用目的を追加\n\n## その他\n\n後";
        assert_eq!(changes_section(t).trim(), "- 利用目的を追加");
    }

    #[test]
    fn html_fragment_allowlist() {
        assert!(
            check_fragment("<h2>目的</h2><p>本文<a href=\"https://x.jp/p\">方針</a></p>").is_ok()
        );
        assert!(check_fragment("<p onclick=\"x()\">a</p>").is_err());
        assert!(check_fragment("<script>alert(1)</script>").is_err());
        assert!(check_fragment("<a href=\"javascript:alert(1)\">x</a>").is_err());
        assert!(check_fragment("<img src=x>").is_err());
        assert!(check_fragment("<!-- c -->").is_err());
    }
}
