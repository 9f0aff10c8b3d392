//! Escaper tests: fixed hostile examples, and property tests over arbitrary bytes and Unicode
//! whose oracles are independent of the escapers (a reverse parser, a CommonMark/GFM parser,
//! serde_json's parser, bash itself).

use std::process::Command;

use comrak::{Arena, Options, nodes::NodeValue, parse_document};
use proptest::prelude::*;

use super::*;

/// Bidi controls (Unicode UAX #9), listed here independently of [`is_invisible`].
const BIDI: [char; 12] = [
    '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}',
    '\u{2067}', '\u{2068}', '\u{2069}',
];

/// Reverses [`terminal_bytes`]: `\\`, `\n`, `\r`, `\t`, `\xNN` (one byte), `\u{N}` (one char).
fn unescape_terminal(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next().expect("escape after backslash") {
            '\\' => out.push(b'\\'),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("two hex digits"));
            }
            'u' => {
                assert_eq!(chars.next(), Some('{'));
                let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).expect("hex")).expect("a char");
                out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            other => panic!("unknown escape \\{other} in {s:?}"),
        }
    }
    out
}

/// What a terminal must never receive from foreign text.
fn assert_terminal_safe(out: &str) {
    assert!(!out.bytes().any(|b| b < 0x20 || b == 0x7f), "C0/DEL in {out:?}");
    assert!(!out.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)), "C1 in {out:?}");
    assert!(!out.chars().any(|c| BIDI.contains(&c)), "bidi control in {out:?}");
    assert!(!out.contains(['\u{2028}', '\u{2029}', '\u{feff}', '\u{200b}']), "separator or zero-width in {out:?}");
}

/// Strings rich in what the escapers must handle: Markdown/HTML/CSV syntax, controls, bidi,
/// URL and e-mail fragments, mixed with arbitrary Unicode.
fn hostile() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("\x1b]0;pwned\x07".to_string()),
        Just("\x1b[2J".to_string()),
        Just("\n## injected".to_string()),
        Just("<script>alert(1)</script>".to_string()),
        Just("<img src=x onerror=alert(1)>".to_string()),
        Just("[x](javascript:alert(1))".to_string()),
        Just("![i](http://e.example/i.png)".to_string()),
        Just("https://evil.example/p".to_string()),
        Just("www.evil.example".to_string()),
        Just("user@evil.example".to_string()),
        Just("<http://a.example>".to_string()),
        Just("&amp;&#x3c;".to_string()),
        Just("1. ".to_string()),
        Just("2) ".to_string()),
        Just("=HYPERLINK(\"x\")".to_string()),
        Just("    ".to_string()),
        "[-+=@#!|\\\\`*_~\\[\\]()<>&$:.' \"\t\r\n\u{85}\u{202e}\u{2028}]{1,4}",
        "[a-z0-9]{1,6}",
        any::<String>(),
    ];
    prop::collection::vec(atoms, 1..6).prop_map(|v| v.concat())
}

#[test]
fn terminal_escapes_controls_bidi_and_backslash_visibly() {
    assert_eq!(terminal("firefox"), "firefox");
    assert_eq!(terminal("\x1b]0;pwned\x07evil|app\n## injected"), "\\x1b]0;pwned\\x07evil|app\\n## injected");
    assert_eq!(terminal("\x1b[2J"), "\\x1b[2J");
    assert_eq!(terminal("a\u{202e}fdp.exe"), "a\\u{202e}fdp.exe");
    assert_eq!(terminal("\u{85}\u{9b}31m\u{7f}"), "\\u{85}\\u{9b}31m\\x7f");
    assert_eq!(terminal("C:\\x1b"), "C:\\\\x1b", "a literal backslash is doubled: no fake escape");
    assert_eq!(terminal("\t\r\u{2028}"), "\\t\\r\\u{2028}");
    assert_eq!(terminal("naïve 日本 🦀"), "naïve 日本 🦀", "printable Unicode is kept");
    assert_eq!(terminal_bytes(b"ab\xff\xc3(\x1b"), "ab\\xff\\xc3(\\x1b");
    assert_eq!(format!("app={}", Terminal("a\nb")), "app=a\\nb");
}

#[test]
fn markdown_examples() {
    assert_eq!(markdown("firefox"), "firefox");
    assert_eq!(markdown("evil|app\n## injected"), "evil\\|app\\\\n\\#\\# injected");
    assert_eq!(markdown("[x](javascript:alert(1))"), "\\[x\\](javascript\\:alert(1))");
    assert_eq!(markdown("<b>&amp;"), "\\<b\\>\\&amp;");
    assert_eq!(markdown("- item"), "\\- item");
    assert_eq!(markdown("12. x"), "12\\. x");
    assert_eq!(markdown("www.e.example"), "www\\.e.example");
    assert_eq!(markdown(" padded "), "&#32;padded&#32;");
    assert_eq!(markdown("nginx.service"), "nginx.service");
}

#[test]
fn csv_cells_get_the_owasp_quote() {
    for (cell, expected) in [
        ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
        ("+1", "'+1"),
        ("-bash", "'-bash"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "\\t=1"),
        ("\r=1", "\\r=1"),
        ("＝1", "'＝1"),
        ("firefox", "firefox"),
        ("a=b", "a=b"),
        // A leading quote is doubled: `'=1` and `=1` stay two texts (an adversarial pass: both
        // read `'=1`).
        ("'=1", "''=1"),
        ("'quoted'", "''quoted'"),
        ("x\ny", "x\\ny"),
    ] {
        assert_eq!(csv_cell(cell), expected, "{cell:?}");
    }
}

#[test]
fn html_examples() {
    assert_eq!(
        html("<a href=\"x\">'&'</a>\x1b\u{202e}"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\\x1b\\u{202e}"
    );
    assert_eq!(html("firefox"), "firefox");
}

#[test]
fn json_escapes_every_control_and_invisible_char() {
    let s = "\x1b]0;x\x07\n\u{7f}\u{85}\u{202e}\u{2028}\u{e0041}ok";
    let mut out = Vec::new();
    json::to_writer(&mut out, &s).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text, r#""\u001b]0;x\u0007\n\u007f\u0085\u202e\u2028\udb40\udc41ok""#);
    assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s, "same value");
    // Plain serde_json writes DEL, C1 and bidi raw: the reason for SafeFormatter.
    assert!(serde_json::to_string(&s).unwrap().contains('\u{202e}'));
}

#[test]
fn json_layout_is_serde_json_s() {
    let v = serde_json::json!({"a": [1, {"b": "x\ny", "c": null}], "d": [], "e": {}});
    let mut pretty = Vec::new();
    json::to_writer_pretty(&mut pretty, &v).unwrap();
    assert_eq!(String::from_utf8(pretty).unwrap(), serde_json::to_string_pretty(&v).unwrap());
    let mut compact = Vec::new();
    json::to_writer(&mut compact, &v).unwrap();
    assert_eq!(String::from_utf8(compact).unwrap(), serde_json::to_string(&v).unwrap());
}

#[test]
fn utf8_or_hex_keeps_valid_text_and_escapes_bad_bytes() {
    assert!(matches!(utf8_or_hex(b"/usr/bin/curl"), std::borrow::Cow::Borrowed("/usr/bin/curl")));
    assert_eq!(utf8_or_hex(b"/tmp/\xffx\xe2\x82"), "/tmp/\\xffx\\xe2\\x82");
    // A backslash of the name is doubled: the byte 0xFF and the four characters `\xff` differ.
    assert_eq!(utf8_or_hex(b"/tmp/dup\\xffname"), "/tmp/dup\\\\xffname");
    assert_ne!(utf8_or_hex(b"/tmp/dup\\xffname"), utf8_or_hex(b"/tmp/dup\xffname"));
    assert_eq!(utf8_or_hex(b"a\\\xff"), "a\\\\\\xff");
}

#[test]
fn shell_words_examples() {
    let args: [&[u8]; 5] = [b"curl", b"-o", b"a b", b"", b"\xff\n"];
    assert_eq!(shell_words(args), "curl -o $'a b' '' $'\\xFF\\n'");
}

/// Text of the inline nodes of `node` (Text and escaped characters), failing on any node that is
/// syntax formed by foreign text.
fn rendered_text<'a>(node: &'a comrak::nodes::AstNode<'a>, allowed_blocks: &[&str]) -> String {
    let mut text = String::new();
    for n in node.descendants() {
        match &n.data().value {
            NodeValue::Text(t) => text.push_str(t),
            NodeValue::Escaped => {}
            NodeValue::Document | NodeValue::Paragraph => {}
            NodeValue::Heading(_) if allowed_blocks.contains(&"heading") => {}
            NodeValue::Table(_) | NodeValue::TableRow(_) | NodeValue::TableCell
                if allowed_blocks.contains(&"table") => {}
            NodeValue::List(_) | NodeValue::Item(_) if allowed_blocks.contains(&"list") => {}
            other => panic!("foreign text formed {other:?}"),
        }
    }
    text
}

fn gfm() -> Options<'static> {
    let mut o = Options::default();
    o.extension.table = true;
    o.extension.autolink = true;
    o.extension.strikethrough = true;
    o.extension.footnotes = true;
    o.extension.math_dollars = true;
    o
}

/// Checks `md` = markdown(s) in the places the report puts foreign text.
fn check_markdown(s: &str, md: &str) {
    let expected = terminal(s);
    assert!(!md.contains(['\n', '\r']), "one line: {md:?}");
    // No unescaped metacharacter (every `\` in the output escapes the next character; `&#32;`
    // is the escaper's own entity for a leading or trailing space).
    let scan = md.replace("&#32;", " ");
    let mut chars = scan.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' | '<' | '>' | '[' | ']' | '`' | '*' | '_' | '&' | '#' | '$' => panic!("unescaped {c:?} in {md:?}"),
            _ => {}
        }
    }
    if expected.is_empty() {
        return;
    }
    let options = gfm();
    let arena = Arena::new();
    // Start of a paragraph, then some of our text.
    let doc = parse_document(&arena, &format!("{md} sent 5 B.\n"), &options);
    assert_eq!(rendered_text(doc, &[]), format!("{expected} sent 5 B."), "paragraph: {md:?}");
    // End of a heading.
    let doc = parse_document(&arena, &format!("## App {md}\n"), &options);
    assert_eq!(rendered_text(doc, &["heading"]), format!("App {expected}"), "heading: {md:?}");
    // A list item.
    let doc = parse_document(&arena, &format!("- countries: {md}\n"), &options);
    assert_eq!(rendered_text(doc, &["list"]), format!("countries: {expected}"), "list: {md:?}");
    // A table cell between two others.
    let table = format!("| A | B | C |\n| --- | --- | ---: |\n| x | {md} | 1 |\n");
    let doc = parse_document(&arena, &table, &options);
    let cells: Vec<String> = doc
        .descendants()
        .filter(|n| matches!(n.data().value, NodeValue::TableCell))
        .map(|n| rendered_text(n, &["table"]))
        .collect();
    assert_eq!(cells, ["A", "B", "C", "x", expected.as_str(), "1"], "table: {md:?}");
}

#[test]
fn markdown_oracle_fails_on_raw_text() {
    // The parser-based check must catch each of these when they are not escaped.
    for raw in [
        "a|b",
        "<b>x</b>",
        "[x](javascript:alert(1))",
        "https://evil.example",
        "www.evil.example",
        "user@evil.example",
        "*em*",
        "`code`",
        "&amp;",
        "- item",
        "1. item",
        "$x$",
        "a \\# b #",
    ] {
        let caught = std::panic::catch_unwind(|| check_markdown(raw, raw)).is_err();
        assert!(caught, "raw {raw:?} passed the check");
        check_markdown(raw, &markdown(raw));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn terminal_bytes_is_safe_one_line_and_reversible(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let out = terminal_bytes(&b);
        assert_terminal_safe(&out);
        prop_assert_eq!(unescape_terminal(&out), b);
    }

    #[test]
    fn terminal_is_safe_one_line_and_reversible(s in hostile()) {
        let out = terminal(&s);
        assert_terminal_safe(&out);
        prop_assert_eq!(&out, &terminal_bytes(s.as_bytes()));
        prop_assert_eq!(&out, &Terminal(&s).to_string());
        prop_assert_eq!(unescape_terminal(&out), s.as_bytes());
    }

    #[test]
    fn markdown_forms_no_syntax_and_renders_as_the_terminal_form(s in hostile()) {
        let md = markdown(&s);
        assert_terminal_safe(&md);
        check_markdown(&s, &md);
    }

    #[test]
    fn csv_cells_never_start_a_formula(s in hostile()) {
        let cell = csv_cell(&s);
        assert_terminal_safe(&cell);
        prop_assert!(!cell.starts_with(FORMULA_PREFIXES), "{:?}", cell);
        let t = terminal(&s);
        let body = cell.strip_prefix('\'').filter(|_| t.starts_with(FORMULA_PREFIXES) || t.starts_with('\''));
        prop_assert_eq!(body.unwrap_or(&cell), terminal(&s));
    }

    #[test]
    fn csv_comments_read_by_a_spreadsheet_make_no_formula_cell(s in hostile()) {
        let line = csv_comment(&format!("# app_filter: {}", terminal(&s)));
        assert_terminal_safe(&line);
        // A reader that knows no comments, for either separator a spreadsheet may use.
        let text = format!("{line}\nsection,app\n");
        for separator in [b',', b';'] {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(separator)
                .from_reader(text.as_bytes());
            let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("parses");
            prop_assert_eq!(records.len(), 2, "the comment stays one row: {:?}", line);
            for cell in &records[0] {
                prop_assert!(!cell.trim_start().starts_with(FORMULA_PREFIXES), "formula cell {:?} in {:?}", cell, line);
            }
            prop_assert!(records[0][0].starts_with("# app_filter: "), "{:?}", line);
        }
    }

    #[test]
    fn html_has_no_markup_and_reads_back_as_the_terminal_form(s in hostile()) {
        let h = html(&s);
        assert_terminal_safe(&h);
        prop_assert!(!h.contains(['<', '>', '"', '\'']), "{:?}", h);
        let back = h.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'");
        prop_assert!(back.matches('&').count() == back.matches("&amp;").count(), "bare & in {:?}", h);
        prop_assert_eq!(back.replace("&amp;", "&"), terminal(&s));
    }

    #[test]
    fn json_strings_are_safe_and_parse_back(s in hostile()) {
        let mut out = Vec::new();
        json::to_writer_pretty(&mut out, &vec![s.clone()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        prop_assert!(!text.chars().any(|c| is_invisible(c) && c != '\n'), "{:?}", text);
        assert_terminal_safe(&text.replace('\n', ""));
        prop_assert_eq!(serde_json::from_str::<Vec<String>>(&text).unwrap(), vec![s]);
    }
}

proptest! {
    // Each case runs bash.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn shell_words_read_back_by_bash_as_the_same_arguments(
        args in prop::collection::vec(prop::collection::vec(1_u8..=255, 0..12), 1..5)
    ) {
        let line = shell_words(args.iter().map(Vec::as_slice));
        prop_assert!(std::str::from_utf8(line.as_bytes()).is_ok());
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .env("LC_ALL", "C")
            .output()
            .expect("bash is needed by this test");
        let expected: Vec<u8> = args.iter().flat_map(|a| a.iter().copied().chain([0])).collect();
        prop_assert_eq!(out.stdout, expected, "{}", line);
    }
}

/// The ASCII fast path of [`is_invisible`] agrees with the category definition on every char.
#[test]
fn is_invisible_fast_path_matches_the_categories() {
    for c in (0..=0x7f_u8).map(char::from) {
        let by_category = c.is_control()
            || matches!(
                CodePointMapData::<GeneralCategory>::new().get(c),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
                    | GeneralCategory::Unassigned
            );
        assert_eq!(is_invisible(c), by_category, "{c:?}");
    }
    assert!(is_invisible('\u{7f}') && is_invisible('\0') && is_invisible('\u{1b}') && !is_invisible('~'));
}

/// Characters that render as nothing or as blank without being Cc, Cf, Zl, Zp or Cn (found by an
/// audit: an executable named `curl\u{3164}` was printed raw and looked like `curl`) are escaped in
/// every format; visible letters and ordinary spaces are not.
#[test]
fn default_ignorable_characters_are_escaped_everywhere() {
    let hidden =
        ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}', '\u{34f}', '\u{17b4}', '\u{fe00}', '\u{fe0f}', '\u{e0100}'];
    for c in hidden {
        assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        let name = format!("curl{c}");
        let shown = format!("curl\\u{{{:x}}}", u32::from(c));
        assert_eq!(terminal(&name), shown);
        assert!(!markdown(&name).contains(c) && !csv_cell(&name).contains(c) && !html(&name).contains(c));
        let mut bytes = Vec::new();
        json::to_writer(&mut bytes, &name).expect("a string serialises");
        let json = String::from_utf8(bytes).expect("JSON is UTF-8");
        assert!(!json.contains(c), "{json}");
        assert_eq!(serde_json::from_str::<String>(&json).expect("valid JSON"), name);
    }
    for c in ['a', 'ㅏ', 'é', ' ', '\u{3000}'] {
        assert!(!is_invisible(c), "{c:?}");
    }
}

/// Cost of the JSON escaping of one record-sized line (ignored: a measurement). Run in release:
/// `cargo test --release -p monitor --lib json_escaping_cost -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn json_escaping_cost() {
    const LINES: u32 = 100_000;
    // The shape of a flow record line: ~40 keys, names, a command line, addresses.
    let mut record = serde_json::Map::new();
    for i in 0..40 {
        record.insert(format!("field_name_{i}"), serde_json::Value::from(format!("value-{i}-/usr/bin/bench-load")));
    }
    let value = serde_json::Value::Object(record);
    let mut line = Vec::with_capacity(4096);
    let started = std::time::Instant::now();
    for _ in 0..LINES {
        line.clear();
        json::to_writer(&mut line, &value).expect("serialises");
    }
    let escaped = started.elapsed();
    let started = std::time::Instant::now();
    for _ in 0..LINES {
        line.clear();
        serde_json::to_writer(&mut line, &value).expect("serialises");
    }
    let plain = started.elapsed();
    // The category lookup every char paid before the ASCII fast path.
    let text = String::from_utf8(line.clone()).expect("utf-8");
    let started = std::time::Instant::now();
    let mut invisible = 0_u32;
    for _ in 0..LINES {
        for c in std::hint::black_box(&text).chars() {
            invisible += u32::from(matches!(
                CodePointMapData::<GeneralCategory>::new().get(c),
                GeneralCategory::Format | GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
            ));
        }
    }
    let lookups = started.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / f64::from(LINES);
    eprintln!(
        "line of {} bytes: escaped {:.2} µs, plain serde_json {:.2} µs, category lookups of its chars {:.2} µs ({invisible})",
        text.len(),
        per(escaped),
        per(plain),
        per(lookups)
    );
}

#[test]
fn csv_comments_stay_plain_unless_a_piece_could_start_a_formula() {
    // Commas of numbers and plain names: as they are, so that comment-aware readers skip them.
    let plain = "# completeness: 4,000 B (4.0 kB) of IP-layer traffic; host lab-1";
    assert_eq!(csv_comment(plain), plain);
    // The audit's case: an app name that would make a HYPERLINK cell and swallow lines.
    let evil = r##"# app_filter: x,=HYPERLINK("http://evil","c"),"y"##;
    assert_eq!(csv_comment(evil), r##""# app_filter: x,=HYPERLINK(""http://evil"",""c""),""y""##);
    assert_eq!(csv_comment("# app_filter: a, -1"), "\"# app_filter: a, -1\"", "after spaces too");
    assert_eq!(csv_comment("# session: a;@SUM(1)"), "\"# session: a;@SUM(1)\"", "semicolon locales");
}

/// A log line's value (`key=value`) cannot end its pair: a name with spaces, `=` or quotes is
/// quoted (an adversarial pass: an executable named `x pid=1 comm=sshd` forged the fields after
/// `app=`); plain names stay as they are.
#[test]
fn log_values_cannot_forge_the_next_pair() {
    assert_eq!(super::log_value("curl"), "curl");
    assert_eq!(super::log_value("x pid=1 comm=sshd"), "\"x pid=1 comm=sshd\"");
    assert_eq!(super::log_value("a\"b c"), "\"a\\\"b c\"");
    assert_eq!(super::log_value(""), "\"\"");
    assert_eq!(super::log_value("a\nb=c"), "\"a\\nb=c\"");
    // Any Unicode space, and the full-width equals sign, which reads as `=`.
    assert_eq!(super::log_value("x\u{a0}pid\u{ff1d}1"), "\"x\u{a0}pid\u{ff1d}1\"");
}

proptest::proptest! {
    /// Whatever the name: either one plain token, or one quoted string whose inner quotes are
    /// all escaped.
    #[test]
    fn a_log_value_is_one_token(s in hostile()) {
        let v = super::log_value(&s);
        assert_terminal_safe(&v);
        if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let unescaped_quote = inner.replace("\\\\", "").replace("\\\"", "").contains('"');
            proptest::prop_assert!(!unescaped_quote, "{v}");
        } else {
            proptest::prop_assert!(!v.is_empty() && !v.contains([' ', '=', '"']), "{v}");
        }
    }
}

/// A name in a comma-separated list cannot read as two names (an adversarial pass: an app
/// named `a,b"c;d` in a claim's apps).
#[test]
fn list_items_keep_their_commas_inside_quotes() {
    assert_eq!(super::list_item("grp-a"), "grp-a");
    assert_eq!(super::list_item("grp-a,evil"), "\"grp-a,evil\"");
    assert_eq!(super::list_item("a,b\"c;d"), "\"a,b\"\"c;d\"");
    assert_eq!(super::list_item(" x"), "\" x\"");
    assert_eq!(super::list_item(""), "\"\"");
    assert_eq!(super::list_item("x judged=0"), "\"x judged=0\"");
    // No backslash added: the output format's own escaping is the only one.
    assert_eq!(super::list_item("a\\b,c"), "\"a\\b,c\"");
}
