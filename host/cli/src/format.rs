//! Output of `ls` and `inspect`, byte for byte as the docker CLI prints it.
//!
//! `ls` follows `cli/command/plugin/formatter.go` and `cli/command/formatter`: the format is picked
//! (`table`, `raw`, `json`, or a custom template), each plugin becomes a `pluginContext` (ID
//! truncated to 12, description stripped of `\n`/`\r` and ellipsised to 45 columns unless
//! `--no-trunc`), rows are sorted by natural order of name, and table output goes through the
//! elastic tabwriter. `inspect` follows `cli/command/inspect`: without a format the server's raw JSON
//! is re-indented with four spaces (keys keep the server's order), `json` compacts it, and a
//! template runs against the typed view first and the raw JSON second.

use std::cmp::Ordering;

use super::tabwriter::{ellipsis_width, layout};
use super::template::{ExecOptions, Template};
use super::value::{Field, Marshal, Struct, Value, raw, typed_plugin};

/// The docker CLI's default table format for plugins.
pub(crate) const DEFAULT_TABLE_FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.Description}}\t{{.Enabled}}";
const RAW_FORMAT: &str =
    r"plugin_id: {{.ID}}\nname: {{.Name}}\ndescription: {{.Description}}\nenabled: {{.Enabled}}\n";
const RAW_QUIET_FORMAT: &str = "plugin_id: {{.ID}}";
const QUIET_FORMAT: &str = "{{.ID}}";

/// The format `plugin ls` uses for the `--format` flag value and `-q` (`NewFormat` plus `runList`).
pub(crate) fn list_format(flag: Option<&str>, quiet: bool) -> String {
    let source = match flag {
        Some(f) if !f.is_empty() => f,
        _ => "table",
    };
    match source {
        "table" if quiet => QUIET_FORMAT.into(),
        "table" => DEFAULT_TABLE_FORMAT.into(),
        "raw" if quiet => RAW_QUIET_FORMAT.into(),
        "raw" => RAW_FORMAT.into(),
        other => other.into(),
    }
}

/// `sortorder.NaturalLess`: digit runs compare by value, digits sort before other bytes.
pub(crate) fn natural_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (c1, c2) = (a[i], b[j]);
        let (d1, d2) = (c1.is_ascii_digit(), c2.is_ascii_digit());
        if d1 != d2 {
            return d1;
        }
        if !d1 {
            if c1 != c2 {
                return c1 < c2;
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (nz1, nz2) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (l1, l2) = (i - nz1, j - nz2);
        if l1 != l2 {
            return l1 < l2;
        }
        if a[nz1..i] != b[nz2..j] {
            return a[nz1..i] < b[nz2..j];
        }
        if nz1 != nz2 {
            return nz1 < nz2;
        }
    }
    a.len() < b.len()
}

/// Orders two names with [`natural_less`].
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    if natural_less(a, b) {
        Ordering::Less
    } else if natural_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// `stringid.TruncateID`: drop an `algo:` prefix, keep 12 characters.
pub(crate) fn truncate_id(id: &str) -> String {
    let id = id.split_once(':').map(|(_, rest)| rest).unwrap_or(id);
    id.chars().take(12).collect()
}

/// `formatter.Ellipsis`: cut to `max` display columns, the last one being `…`.
pub(crate) fn ellipsis(s: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let chars: Vec<char> = s.chars().collect();
    if max == 1 {
        return chars.first().map(|c| c.to_string()).unwrap_or_default();
    }
    if s.is_ascii() {
        if s.len() <= max {
            return s.to_string();
        }
        return chars[..max - 1].iter().collect::<String>() + "…";
    }
    let mut running = Vec::with_capacity(chars.len());
    let mut total = 0;
    for &c in &chars {
        total += ellipsis_width(c);
        running.push(total);
    }
    if total <= max {
        return s.to_string();
    }
    for i in 0..running.len().saturating_sub(1) {
        if running[i] < max && running[i + 1] > max - 1 {
            return chars[..=i].iter().collect::<String>() + "…";
        }
    }
    s.to_string()
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

/// The `pluginContext` a list row is rendered from.
pub(crate) fn plugin_context(p: &serde_json::Value, trunc: bool) -> Value {
    let id = str_at(p, &["Id"]);
    let desc = str_at(p, &["Config", "Description"]).replace(['\n', '\r'], "");
    let methods = vec![
        (
            "Description",
            Value::Str(if trunc { ellipsis(&desc, 45) } else { desc }),
        ),
        (
            "Enabled",
            Value::Bool(p.get("Enabled").and_then(|e| e.as_bool()).unwrap_or(false)),
        ),
        (
            "ID",
            Value::Str(if trunc {
                truncate_id(id)
            } else {
                id.to_string()
            }),
        ),
        ("Name", Value::Str(str_at(p, &["Name"]).to_string())),
        (
            "PluginReference",
            Value::Str(str_at(p, &["PluginReference"]).to_string()),
        ),
    ];
    let header = Value::Struct(Box::new(Struct {
        ty: "formatter.HeaderContext",
        fields: vec![Field {
            go: "Header",
            json: "Header",
            omitempty: false,
            embedded: false,
            value: Value::Nil("interface {}"),
        }],
        methods: Vec::new(),
        marshal: Marshal::Fields,
    }));
    let field = |go, embedded, value| Field {
        go,
        json: go,
        omitempty: false,
        embedded,
        value,
    };
    Value::Ptr(Box::new(Value::Struct(Box::new(Struct {
        ty: "plugin.pluginContext",
        fields: vec![
            field("HeaderContext", true, header),
            field("trunc", false, Value::Bool(trunc)),
            field("p", false, typed_plugin(p)),
        ],
        methods,
        marshal: Marshal::SortedMethodsEscaped,
    }))))
}

fn header_context() -> Value {
    let entries = [
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Description", "DESCRIPTION"),
        ("Enabled", "ENABLED"),
        ("PluginReference", "IMAGE"),
    ];
    Value::Map {
        entries: entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
            .collect(),
        ty: "formatter.SubHeaderContext",
    }
}

/// Renders `plugin ls` output (`formatter.Context.Write`). `plugins` must already be sorted.
/// The error text is what the docker CLI prints (`template parsing error: …`).
pub(crate) fn render_list(
    format: &str,
    plugins: &[serde_json::Value],
    trunc: bool,
) -> Result<String, String> {
    let is_table = format.starts_with("table");
    let mut fin = if is_table {
        &format["table".len()..]
    } else if format == "json" {
        "{{json .}}"
    } else {
        format
    }
    .trim_matches(' ')
    .to_string();
    fin = fin.replace("\\t", "\t").replace("\\n", "\n");
    let tpl = Template::parse(&fin).map_err(|e| format!("template parsing error: {}", e.0))?;
    let mut rows = String::new();
    for p in plugins {
        let ctx = plugin_context(p, trunc);
        let out = tpl
            .execute(&ctx, ExecOptions::default())
            .map_err(|(_, e)| format!("template parsing error: {}", e.0))?;
        rows.push_str(&out);
        rows.push('\n');
    }
    if !is_table {
        return Ok(rows);
    }
    // The header's execution errors are ignored; whatever it printed is kept.
    let header = match tpl.execute(
        &header_context(),
        ExecOptions {
            header: true,
            ..Default::default()
        },
    ) {
        Ok(h) | Err((h, _)) => h,
    };
    Ok(layout(&format!("{header}\n{rows}")))
}

/// How `plugin inspect` prints what it found.
#[derive(Debug)]
pub(crate) enum InspectFormat {
    /// No `--format`: a JSON array indented with four spaces.
    Indented,
    /// `--format json`: the same array, compact.
    Json,
    /// A Go template, executed once per plugin.
    Template(Template),
}

impl InspectFormat {
    /// Picks the inspector for a `--format` value; a template that does not parse is an error
    /// (`template parsing error: …`, exit status 64 in the docker CLI).
    pub fn parse(format: &str) -> Result<InspectFormat, String> {
        match format {
            "" => Ok(InspectFormat::Indented),
            "json" => Ok(InspectFormat::Json),
            t => Template::parse(t)
                .map(InspectFormat::Template)
                .map_err(|e| format!("template parsing error: {}", e.0)),
        }
    }
}

/// Collects inspected plugins and renders them at the end, like the docker CLI's inspectors.
#[derive(Debug)]
pub(crate) struct Inspector {
    format: InspectFormat,
    raws: Vec<Vec<u8>>,
    buffer: String,
}

impl Inspector {
    /// An inspector printing with `format`.
    pub fn new(format: InspectFormat) -> Inspector {
        Inspector {
            format,
            raws: Vec::new(),
            buffer: String::new(),
        }
    }

    /// Adds one plugin given the server's raw JSON body.
    pub fn add(&mut self, raw_body: &[u8]) -> Result<(), String> {
        let parsed: serde_json::Value =
            serde_json::from_slice(raw_body).map_err(|e| e.to_string())?;
        match &self.format {
            InspectFormat::Indented | InspectFormat::Json => {
                self.raws.push(raw_body.to_vec());
                Ok(())
            }
            InspectFormat::Template(t) => {
                let out = match t.execute(&typed_plugin(&parsed), ExecOptions::default()) {
                    Ok(out) => out,
                    Err(_) => {
                        let opts = ExecOptions {
                            missing_key_error: true,
                            raw: true,
                            header: false,
                        };
                        t.execute(&raw(&parsed), opts)
                            .map_err(|(_, e)| format!("template parsing error: {}", e.0))?
                    }
                };
                self.buffer.push_str(&out);
                self.buffer.push('\n');
                Ok(())
            }
        }
    }

    /// The final output.
    pub fn finish(self) -> Result<String, String> {
        match self.format {
            InspectFormat::Template(_) if self.buffer.is_empty() => Ok("\n".into()),
            InspectFormat::Template(_) => Ok(self.buffer),
            InspectFormat::Indented | InspectFormat::Json if self.raws.is_empty() => {
                Ok("[]\n".into())
            }
            f => {
                let mut joined = b"[".to_vec();
                for (i, r) in self.raws.iter().enumerate() {
                    if i > 0 {
                        joined.push(b',');
                    }
                    joined.extend_from_slice(r);
                }
                joined.push(b']');
                let indent = matches!(f, InspectFormat::Indented).then_some("    ");
                let mut out = reformat_json(&joined, indent)?;
                out.push('\n');
                Ok(out)
            }
        }
    }
}

/// Go's `json.Indent(dst, src, "", indent)` or, without an indent, `json.Compact`: whitespace
/// outside strings is rewritten, everything else (key order, string escapes) is kept as sent.
pub(crate) fn reformat_json(src: &[u8], indent: Option<&str>) -> Result<String, String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(src).map_err(|e| e.to_string())?;
    let mut out: Vec<u8> = Vec::with_capacity(src.len() * 2);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        if let Some(ind) = indent {
            out.push(b'\n');
            for _ in 0..depth {
                out.extend_from_slice(ind.as_bytes());
            }
        }
    };
    let (mut depth, mut need_indent, mut in_str, mut escaped) = (0usize, false, false, false);
    for &c in src {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if need_indent && c != b'}' && c != b']' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            b'"' => {
                in_str = true;
                out.push(c);
            }
            b'{' | b'[' => {
                need_indent = true;
                out.push(c);
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => {
                out.push(c);
                if indent.is_some() {
                    out.push(b' ');
                }
            }
            b'}' | b']' => {
                if need_indent {
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/testdata")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn sorted_fixture_plugins() -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = serde_json::from_str(&fixture("ls.api.json")).unwrap();
        v.sort_by(|a, b| natural_cmp(str_at(a, &["Name"]), str_at(b, &["Name"])));
        v
    }

    /// Every `ls` variant captured from docker CLI 28.2.2 against dockerd 20.10, byte for byte.
    #[test]
    fn list_matches_docker_cli_captures() {
        let plugins = sorted_fixture_plugins();
        let cases = [
            (list_format(None, false), true, "ls.table.out"),
            (list_format(None, false), false, "ls.notrunc.out"),
            (list_format(Some("json"), false), true, "ls.json.out"),
            (list_format(Some("raw"), false), true, "ls.raw.out"),
            (list_format(None, true), true, "ls.quiet.out"),
            (
                list_format(
                    Some("table {{.Name}}\\t{{.PluginReference}}\\t{{.Enabled}}"),
                    false,
                ),
                true,
                "ls.custom-table.out",
            ),
            (
                list_format(Some("x {{.ID}} y\\t{{.Enabled}}\\n"), false),
                true,
                "ls.custom.out",
            ),
        ];
        for (format, trunc, file) in cases {
            assert_eq!(
                render_list(&format, &plugins, trunc).unwrap(),
                fixture(file),
                "{file}"
            );
        }
    }

    #[test]
    fn list_formats() {
        assert_eq!(list_format(Some("raw"), true), "plugin_id: {{.ID}}");
        assert_eq!(list_format(Some("table"), true), "{{.ID}}");
        assert_eq!(list_format(Some("{{.Name}}"), true), "{{.Name}}");
        assert_eq!(list_format(Some(""), false), DEFAULT_TABLE_FORMAT);
    }

    #[test]
    fn empty_list_prints_header_at_min_width() {
        let out = render_list(DEFAULT_TABLE_FORMAT, &[], true).unwrap();
        assert_eq!(out, "ID        NAME      DESCRIPTION   ENABLED\n");
        assert_eq!(render_list("{{.ID}}", &[], true).unwrap(), "");
        assert_eq!(
            render_list("table {{.Foo}}", &[], true).unwrap(),
            "<no value>\n"
        );
    }

    #[test]
    fn list_template_errors() {
        let p = sorted_fixture_plugins();
        assert_eq!(
            render_list("table {{.Name}}\t{{.Foo}}", &p, true).unwrap_err(),
            "template parsing error: template: :1:12: executing \"\" at <.Foo>: can't evaluate field Foo in type *plugin.pluginContext"
        );
        assert_eq!(
            render_list("{{.Name", &p, true).unwrap_err(),
            "template parsing error: template: :1: unclosed action"
        );
        assert_eq!(
            render_list("   table {{.ID}}", &p[..1], true).unwrap(),
            "table 668cd4340152\n"
        );
    }

    #[test]
    fn natural_order() {
        let mut names = vec![
            "plug10:latest",
            "plug2:latest",
            "a07b",
            "a7b",
            "7",
            "007",
            "abc",
            "Zed",
            "e46",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "7",
                "007",
                "Zed",
                "a7b",
                "a07b",
                "abc",
                "e46",
                "plug2:latest",
                "plug10:latest"
            ]
        );
    }

    #[test]
    fn ellipsis_like_docker() {
        let d45 = "123456789012345678901234567890123456789012345";
        assert_eq!(ellipsis(d45, 45), d45);
        assert_eq!(
            ellipsis(&format!("{d45}6"), 45),
            "12345678901234567890123456789012345678901234…"
        );
        assert_eq!(
            ellipsis(
                "日本語の説明文はとても長いのでここで切り詰められるはずですかどうかわかりません",
                45
            ),
            "日本語の説明文はとても長いのでここで切り詰め…"
        );
        assert_eq!(ellipsis("short ★½①", 45), "short ★½①");
        assert_eq!(ellipsis("", 45), "");
        assert_eq!(truncate_id("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn inspect_matches_docker_cli_captures() {
        let bodies = [
            fixture("inspect-emoji.api.json"),
            fixture("inspect-newline.api.json"),
        ];
        let mut ind = Inspector::new(InspectFormat::parse("").unwrap());
        let mut json = Inspector::new(InspectFormat::parse("json").unwrap());
        for b in &bodies {
            ind.add(b.as_bytes()).unwrap();
            json.add(b.as_bytes()).unwrap();
        }
        assert_eq!(ind.finish().unwrap(), fixture("inspect.out"));
        assert_eq!(json.finish().unwrap(), fixture("inspect.json.out"));
        assert_eq!(
            Inspector::new(InspectFormat::Indented).finish().unwrap(),
            "[]\n"
        );
        assert_eq!(
            Inspector::new(InspectFormat::parse("{{.Name}}").unwrap())
                .finish()
                .unwrap(),
            "\n"
        );
    }

    #[test]
    fn inspect_templates_typed_then_raw() {
        let body = fixture("inspect-emoji.api.json");
        let run = |t: &str| {
            let mut i = Inspector::new(InspectFormat::parse(t).unwrap());
            i.add(body.as_bytes()).map(|()| i.finish().unwrap())
        };
        // `docker plugin inspect -f '{{$}}' emoji`, with Go's real pointer addresses replaced by
        // the fixed one plugd prints.
        let captured = fixture("inspect-emoji.dollar.out");
        let mut dollar = String::new();
        let mut rest = captured.as_str();
        while let Some(i) = rest.find("0xc") {
            let hex = rest[i + 2..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count();
            dollar.push_str(&rest[..i]);
            dollar.push_str("0xc000010000");
            rest = &rest[i + 2 + hex..];
        }
        dollar.push_str(rest);
        assert_eq!(run("{{$}}").unwrap(), dollar);
        assert_eq!(
            run("{{.Id}}").unwrap(),
            "701bb01e39fa1b463cb943fbfe1415907516ed571f7a4374ef0fbe2ad7ffe50e\n"
        );
        assert_eq!(
            run("{{.Config.User.UID}}|{{.Config.Interface.ProtocolScheme}}").unwrap(),
            "5|\n"
        );
        assert_eq!(run("{{.Config.rootfs.type}}").unwrap(), "layers\n");
        assert_eq!(
            run("{{.Id}} {{.ID}}").unwrap_err(),
            "template parsing error: template: :1:10: executing \"\" at <.ID>: map has no entry for key \"ID\""
        );
        assert_eq!(
            InspectFormat::parse("{{.Name").unwrap_err(),
            "template parsing error: template: :1: unclosed action"
        );
    }

    /// `docker plugin inspect -f TEMPLATE` outputs captured from docker CLI 28.2.2 (templates whose
    /// output contains Go pointer addresses left out).
    #[test]
    fn inspect_templates_match_docker_cli_captures() {
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(&fixture("inspect-templates.json")).unwrap();
        let mut mismatches = Vec::new();
        for c in &cases {
            let template = c["template"].as_str().unwrap();
            let body = fixture(&format!(
                "inspect-{}.api.json",
                c["plugin"].as_str().unwrap()
            ));
            let got = match InspectFormat::parse(template) {
                Err(e) => (64, String::new(), format!("{e}\n")),
                Ok(f) => {
                    let mut i = Inspector::new(f);
                    let added = i.add(body.as_bytes());
                    let out = i.finish().unwrap();
                    match added {
                        Ok(()) => (0, out, String::new()),
                        Err(e) => (1, out, format!("{e}\n")),
                    }
                }
            };
            let want = (
                c["rc"].as_i64().unwrap(),
                c["stdout"].as_str().unwrap().to_string(),
                c["stderr"].as_str().unwrap().to_string(),
            );
            if got != want {
                mismatches.push(format!(
                    "{} {template:?}:\n  got  {got:?}\n  want {want:?}",
                    c["plugin"]
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} differ:\n{}",
            mismatches.len(),
            cases.len(),
            mismatches.join("\n")
        );
    }

    #[test]
    fn reformat_keeps_escapes_and_order() {
        let src = br#"{"b":"<\u003c\n","a":[],"c":{},"d":[1,{"x":null}]}"#;
        assert_eq!(
            reformat_json(src, Some("  ")).unwrap(),
            "{\n  \"b\": \"<\\u003c\\n\",\n  \"a\": [],\n  \"c\": {},\n  \"d\": [\n    1,\n    {\n      \"x\": null\n    }\n  ]\n}"
        );
        assert_eq!(
            reformat_json(b" { \"a\" : [ 1 , 2 ] }\n", None).unwrap(),
            r#"{"a":[1,2]}"#
        );
        assert!(reformat_json(b"{", None).is_err());
    }
}
