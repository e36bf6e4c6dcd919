//! A subset of Go's `text/template`, enough for the docker CLI's `--format` flags.
//!
//! Supported: text and actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; field chains
//! (`.Config.Description`), `.`, `$` and variables (`$x := …`, `range $i, $e := …`); string, raw
//! string, char, number, `true`/`false`/`nil` literals; parenthesised pipelines with trailing fields;
//! `|` pipelines; `if`/`else if`/`else`, `range`/`else`, `with`/`else`, `end`. Functions: the docker
//! CLI's `json split join title lower upper pad truncate` and Go's `and or not len index print printf
//! println eq ne lt le gt ge`. Not supported: `define`/`template`/`block`, `break`/`continue`,
//! `html`/`js`/`urlquery`/`call`/`slice`. Error texts follow Go's (`template: :1:2: executing "" at
//! <.Foo>: …`), because scripts match on them.

mod exec;
mod functions;
mod lex;
mod parse;

use super::value::Value;
use functions::FUNCTIONS;

/// A parse failure, already formatted as Go's `template: :LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(pub String);

/// An execution failure, formatted as Go's `template: :LINE:COL: executing "" at <node>: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecError(pub String);

/// How an execution behaves.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExecOptions {
    /// `missingkey=error`: a missing map key fails instead of printing `<no value>`.
    pub missing_key_error: bool,
    /// The data is decoded JSON held in `interface{}` values (changes type names in messages).
    pub raw: bool,
    /// Use the docker CLI's `HeaderFunctions` (identity versions of `json`, `upper`, …) for table headers.
    pub header: bool,
}

/// A parsed template.
#[derive(Debug)]
pub(crate) struct Template {
    src: String,
    nodes: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipe),
    If {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Option<Vec<Node>>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Option<Vec<Node>>,
    },
    With {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Option<Vec<Node>>,
    },
}

#[derive(Debug, Clone)]
struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`).
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
struct Cmd {
    pos: usize,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum ArgKind {
    Dot,
    /// `.A.B`: field names from dot.
    Field(Vec<String>),
    /// `$x.A`: a variable and a field chain.
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    /// `(pipeline).A`.
    Sub(Box<Pipe>, Vec<String>),
    Lit(Value),
}

#[derive(Debug, Clone)]
struct Arg {
    kind: ArgKind,
    /// Position Go reports for this node.
    pos: usize,
}

#[cfg(test)]
mod tests {
    use super::super::value::{raw, typed_plugin};
    use super::*;
    use serde_json::json;

    fn plugin() -> serde_json::Value {
        json!({
            "Config": {"Description": "desc <b>", "Entrypoint": ["/x", "y"],
                       "Env": [{"Description": "", "Name": "DEBUG", "Settable": ["value"], "Value": "0"}],
                       "Interface": {"Socket": "x.sock", "Types": ["docker.volumedriver/1.0"]},
                       "rootfs": {"diff_ids": ["sha256:aa"], "type": "layers"}},
            "Enabled": true, "Id": "0123456789abcdef", "Name": "p:latest", "PluginReference": "p:latest",
            "Settings": {"Args": [], "Devices": [], "Env": ["DEBUG=0"], "Mounts": []}
        })
    }

    fn typed_run(t: &str) -> Result<String, String> {
        let tpl = Template::parse(t).map_err(|e| e.0)?;
        tpl.execute(&typed_plugin(&plugin()), ExecOptions::default())
            .map_err(|(_, e)| e.0)
    }

    fn raw_run(t: &str) -> Result<String, String> {
        let tpl = Template::parse(t).map_err(|e| e.0)?;
        let opts = ExecOptions {
            missing_key_error: true,
            raw: true,
            header: false,
        };
        tpl.execute(&raw(&plugin()), opts).map_err(|(_, e)| e.0)
    }

    #[test]
    fn fields_and_functions() {
        let cases = [
            ("{{.Name}}", "p:latest"),
            ("{{.ID}}", "0123456789abcdef"),
            ("{{.Config.Description}}", "desc <b>"),
            ("{{json .Config.Description}}", "\"desc <b>\""),
            ("{{.Enabled}}", "true"),
            (
                "x\t{{.Config.Interface.Types}}",
                "x\t[docker.volumedriver/1.0]",
            ),
            ("{{(index .Config.Env 0).Value}}", "0"),
            (
                "{{range $i, $e := .Settings.Env}}{{$i}}={{$e}};{{end}}",
                "0=DEBUG=0;",
            ),
            (
                "{{range .Config.Entrypoint}}[{{.}}]{{else}}none{{end}}",
                "[/x][y]",
            ),
            ("{{range .Settings.Args}}x{{else}}none{{end}}", "none"),
            ("{{if .Enabled}}on{{else}}off{{end}}", "on"),
            (
                "{{if not .Enabled}}on{{else if .Name}}named{{end}}",
                "named",
            ),
            ("{{with .Config.Rootfs}}{{.Type}}{{end}}", "layers"),
            (
                "{{len .Config.Entrypoint}} {{join .Config.Entrypoint \",\"}}",
                "2 /x,y",
            ),
            (
                "{{upper .Name}}|{{title .Name}}|{{split .Name \":\"}}",
                "P:LATEST|P:Latest|[p latest]",
            ),
            ("{{truncate .Name 3}}{{pad .Name 1 1}}", "p:l p:latest "),
            (
                "{{printf \"%s|%v|%q|%d\" .Name .Enabled .Name 5}}",
                "p:latest|true|\"p:latest\"|5",
            ),
            (
                "{{eq .Name \"p:latest\"}} {{ne 1 2}} {{lt 1 2}}",
                "true true true",
            ),
            ("{{.Enabled | not}}", "false"),
            ("  {{- .Name -}}  \n", "p:latest"),
            ("{{/* comment */}}x{{- /* c */ -}} y", "xy"),
            ("{{$n := .Name}}{{$n}}", "p:latest"),
            ("{{.Config.Env}}", "[{ DEBUG [value] 0xc000010000}]"),
            (
                "{{json .Config.Interface}}",
                r#"{"Socket":"x.sock","Types":["docker.volumedriver/1.0"]}"#,
            ),
            (
                "{{and .Enabled .Name}} {{or \"\" .Name}}",
                "p:latest p:latest",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(typed_run(t).as_deref(), Ok(want), "template {t:?}");
        }
    }

    #[test]
    fn typed_and_raw_views_differ_like_docker() {
        assert!(typed_run("{{.Id}}").is_err());
        assert_eq!(raw_run("{{.Id}}").as_deref(), Ok("0123456789abcdef"));
        assert_eq!(
            raw_run("{{.Config.rootfs}}").as_deref(),
            Ok("map[diff_ids:[sha256:aa] type:layers]")
        );
        assert_eq!(
            raw_run("{{.Foo}}"),
            Err(r#"template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo""#.into())
        );
        assert_eq!(
            raw_run("{{.Config.Foo}}"),
            Err(
                r#"template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo""#
                    .into()
            )
        );
        assert_eq!(
            raw_run("{{.Name.Foo}}"),
            Err(r#"template: :1:7: executing "" at <.Name.Foo>: can't evaluate field Foo in type interface {}"#.into())
        );
        assert_eq!(
            raw_run("{{json .}}x{{.Foo}}"),
            Err(
                r#"template: :1:13: executing "" at <.Foo>: map has no entry for key "Foo""#.into()
            )
        );
    }

    #[test]
    fn exec_errors_like_go() {
        assert_eq!(
            typed_run("{{index .Config.Env 3}}"),
            Err(r#"template: :1:2: executing "" at <index .Config.Env 3>: error calling index: index out of range: 3"#.into())
        );
        assert_eq!(
            typed_run("{{range .Name}}{{end}}"),
            Err(
                r#"template: :1:8: executing "" at <.Name>: range can't iterate over p:latest"#
                    .into()
            )
        );
    }

    #[test]
    fn parse_errors_like_go() {
        let e = |t: &str| Template::parse(t).unwrap_err().0;
        assert_eq!(e("{{.Name"), "template: :1: unclosed action");
        assert_eq!(
            e("{{nope .Name}}"),
            "template: :1: function \"nope\" not defined"
        );
        assert_eq!(e("{{.Name}}{{end}}"), "template: :1: unexpected {{end}}");
        assert_eq!(e("{{if .Name}}"), "template: :1: unexpected EOF");
        assert_eq!(e("a\n{{$x}}"), "template: :2: undefined variable \"$x\"");
        assert_eq!(e("{{}}"), "template: :1: missing value for command");
    }

    #[test]
    fn header_functions_keep_header_text() {
        let t = Template::parse("{{upper .Name}}\t{{truncate .ID 3}}\t{{.Nope}}").unwrap();
        let hdr = Value::Map {
            entries: [("Name", "NAME"), ("ID", "ID")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
            ty: "formatter.SubHeaderContext",
        };
        let opts = ExecOptions {
            header: true,
            ..Default::default()
        };
        assert_eq!(t.execute(&hdr, opts).unwrap(), "NAME\tID\t<no value>");
    }
}
