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

use std::fmt::Write as _;

use super::value::Value;

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

const FUNCTIONS: &[&str] = &[
    "json", "split", "join", "title", "lower", "upper", "pad", "truncate", "and", "or", "not",
    "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt", "ge",
];

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Str(String),
    Num(Value),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    /// Whitespace (or the action start) directly precedes the token.
    spaced: bool,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn line_of(src: &str, pos: usize) -> usize {
    1 + src[..pos.min(src.len())].matches('\n').count()
}

fn perr(src: &str, pos: usize, msg: impl std::fmt::Display) -> ParseError {
    ParseError(format!("template: :{}: {msg}", line_of(src, pos)))
}

/// One action between delimiters: its tokens, and where it started.
struct Action {
    pos: usize,
    tokens: Vec<Token>,
}

enum Piece {
    Text(String),
    Action(Action),
}

/// Splits the source into text and tokenised actions, applying trim markers and dropping comments.
fn lex(src: &str) -> Result<Vec<Piece>, ParseError> {
    let b = src.as_bytes();
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut trim_next_text = false;
    loop {
        let start = src[pos..].find("{{").map(|i| pos + i);
        let text_end = start.unwrap_or(src.len());
        let mut text = &src[pos..text_end];
        if trim_next_text {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(start) = start else {
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_string()));
            }
            return Ok(pieces);
        };
        let mut i = start + 2;
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|&c| is_space(c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            i += 2;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        // A comment must directly follow the delimiter (and trim marker).
        if src[i..].starts_with("/*") {
            let Some(end) = src[i + 2..].find("*/").map(|e| i + 2 + e + 2) else {
                return Err(perr(src, i, "unclosed comment"));
            };
            if src[end..].starts_with("}}") {
                trim_next_text = false;
                pos = end + 2;
            } else if src[end..].starts_with(" -}}") {
                trim_next_text = true;
                pos = end + 4;
            } else {
                return Err(perr(src, end, "comment ends before closing delimiter"));
            }
            continue;
        }
        let (tokens, after, trim) = lex_action(src, i)?;
        pieces.push(Piece::Action(Action { pos: start, tokens }));
        trim_next_text = trim;
        pos = after;
    }
}

/// Tokenises one action starting at `i`; returns the tokens, the position after `}}`, and whether
/// a right trim marker was present.
fn lex_action(src: &str, mut i: usize) -> Result<(Vec<Token>, usize, bool), ParseError> {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let mut spaced = true;
    loop {
        if i >= b.len() {
            return Err(perr(src, i, "unclosed action"));
        }
        if src[i..].starts_with("}}") {
            return Ok((tokens, i + 2, false));
        }
        let c = b[i];
        if is_space(c) {
            if src[i + 1..].starts_with("-}}") {
                return Ok((tokens, i + 4, true));
            }
            i += 1;
            spaced = true;
            continue;
        }
        let start = i;
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (s, end) = lex_quoted(src, i)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let Some(end) = src[i + 1..].find('`') else {
                    return Err(perr(src, i, "unterminated raw quoted string"));
                };
                let s = src[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(s)
            }
            b'\'' => {
                let (ch, end) = lex_char(src, i)?;
                i = end;
                Tok::Num(Value::Int(ch as i64))
            }
            b'.' if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                let (v, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(v)
            }
            b'.' => {
                let name: String = src[i + 1..]
                    .chars()
                    .take_while(|&c| is_ident_char(c))
                    .collect();
                i += 1 + name.len();
                if name.is_empty() {
                    Tok::Dot
                } else {
                    Tok::Field(name)
                }
            }
            b'$' => {
                let name: String = src[i + 1..]
                    .chars()
                    .take_while(|&c| is_ident_char(c))
                    .collect();
                i += 1 + name.len();
                Tok::Var(format!("${name}"))
            }
            b'0'..=b'9' => {
                let (v, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(v)
            }
            b'+' | b'-'
                if b.get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == b'.') =>
            {
                let (v, end) = lex_number(src, i)?;
                i = end;
                Tok::Num(v)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\0');
                if ch == '_' || ch.is_alphabetic() {
                    let name: String = src[i..].chars().take_while(|&c| is_ident_char(c)).collect();
                    i += name.len();
                    Tok::Ident(name)
                } else {
                    return Err(perr(
                        src,
                        i,
                        format!(
                            "unrecognized character in action: U+{:04X} '{ch}'",
                            ch as u32
                        ),
                    ));
                }
            }
        };
        tokens.push(Token {
            tok,
            pos: start,
            spaced,
        });
        spaced = false;
    }
}

fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + off + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) if hex.len() == n => out.push(c),
                            _ => return Err(perr(src, start, "invalid syntax")),
                        }
                    }
                    _ => return Err(perr(src, start, "invalid syntax")),
                }
            }
            c => out.push(c),
        }
    }
    Err(perr(src, start, "unterminated quoted string"))
}

fn lex_char(src: &str, start: usize) -> Result<(char, usize), ParseError> {
    let rest = &src[start + 1..];
    let mut it = rest.char_indices();
    let c = match it.next() {
        Some((_, '\\')) => match it.next() {
            Some((_, 'n')) => '\n',
            Some((_, 't')) => '\t',
            Some((_, '\\')) => '\\',
            Some((_, '\'')) => '\'',
            _ => return Err(perr(src, start, "invalid syntax")),
        },
        Some((_, c)) if c != '\'' => c,
        _ => return Err(perr(src, start, "unterminated character constant")),
    };
    match it.next() {
        Some((off, '\'')) => Ok((c, start + 1 + off + 1)),
        _ => Err(perr(src, start, "unterminated character constant")),
    }
}

fn lex_number(src: &str, start: usize) -> Result<(Value, usize), ParseError> {
    let b = src.as_bytes();
    let mut i = start;
    if matches!(b[i], b'+' | b'-') {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exp_sign = matches!(c, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    let text = &src[start..i];
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let parsed = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok().map(Value::Int)
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        i64::from_str_radix(o, 8).ok().map(Value::Int)
    } else if let Some(bn) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i64::from_str_radix(bn, 2).ok().map(Value::Int)
    } else if let Ok(n) = digits.parse::<i64>() {
        Some(Value::Int(n))
    } else {
        digits
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
    };
    match parsed {
        Some(Value::Int(n)) => Ok((Value::Int(if neg { -n } else { n }), i)),
        Some(Value::Float(f)) => Ok((Value::Float(if neg { -f } else { f }), i)),
        _ => Err(perr(src, start, format!("bad number syntax: \"{text}\""))),
    }
}

// ---------------------------------------------------------------- parsing

enum Frame {
    If {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Option<Vec<Node>>,
        in_else: bool,
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

impl Frame {
    fn current(&mut self) -> &mut Vec<Node> {
        match self {
            Frame::If {
                branches,
                otherwise,
                in_else,
            } => {
                if *in_else {
                    otherwise.get_or_insert_with(Vec::new)
                } else {
                    &mut branches.last_mut().expect("if has a branch").1
                }
            }
            Frame::Range {
                body, otherwise, ..
            }
            | Frame::With {
                body, otherwise, ..
            } => match otherwise {
                Some(o) => o,
                None => body,
            },
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    /// Declared variables, with a scope mark per open control structure.
    vars: Vec<String>,
    marks: Vec<usize>,
}

impl Template {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Template, ParseError> {
        let pieces = lex(src)?;
        let mut p = Parser {
            src,
            vars: vec!["$".into()],
            marks: Vec::new(),
        };
        let mut top: Vec<Node> = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for piece in pieces {
            let node = match piece {
                Piece::Text(t) => Node::Text(t),
                Piece::Action(a) => match p.action(a, &mut stack)? {
                    Some(n) => n,
                    None => continue,
                },
            };
            match stack.last_mut() {
                Some(f) => f.current().push(node),
                None => top.push(node),
            }
        }
        if !stack.is_empty() {
            return Err(perr(src, src.len(), "unexpected EOF"));
        }
        Ok(Template {
            src: src.to_string(),
            nodes: top,
        })
    }
}

impl Parser<'_> {
    /// Handles one action: control keywords change the frame stack; anything else is a node.
    fn action(&mut self, a: Action, stack: &mut Vec<Frame>) -> Result<Option<Node>, ParseError> {
        let src = self.src;
        let toks = a.tokens;
        let Some(first) = toks.first() else {
            return Err(perr(src, a.pos, "missing value for command"));
        };
        let keyword = match &first.tok {
            Tok::Ident(k) => k.as_str(),
            _ => "",
        };
        match keyword {
            "if" | "range" | "with" => {
                self.marks.push(self.vars.len());
                let pipe = self.pipeline(&toks[1..], a.pos, keyword == "range")?;
                let frame = match keyword {
                    "if" => Frame::If {
                        branches: vec![(pipe, Vec::new())],
                        otherwise: None,
                        in_else: false,
                    },
                    "range" => Frame::Range {
                        pipe,
                        body: Vec::new(),
                        otherwise: None,
                    },
                    _ => Frame::With {
                        pipe,
                        body: Vec::new(),
                        otherwise: None,
                    },
                };
                stack.push(frame);
                Ok(None)
            }
            "else" => {
                let is_else_if =
                    matches!(toks.get(1).map(|t| &t.tok), Some(Tok::Ident(k)) if k == "if");
                match stack.last_mut() {
                    Some(Frame::If {
                        branches, in_else, ..
                    }) if !*in_else => {
                        if is_else_if {
                            let pipe = self.pipeline(&toks[2..], a.pos, false)?;
                            branches.push((pipe, Vec::new()));
                        } else if toks.len() == 1 {
                            *in_else = true;
                        } else {
                            return Err(perr(
                                src,
                                a.pos,
                                format!("unexpected {} in else", tok_text(&toks[1].tok)),
                            ));
                        }
                        Ok(None)
                    }
                    Some(Frame::Range { otherwise, .. }) | Some(Frame::With { otherwise, .. })
                        if otherwise.is_none() && toks.len() == 1 =>
                    {
                        *otherwise = Some(Vec::new());
                        Ok(None)
                    }
                    _ => Err(perr(src, a.pos, "unexpected {{else}}")),
                }
            }
            "end" => {
                if toks.len() > 1 {
                    return Err(perr(
                        src,
                        a.pos,
                        format!("unexpected {} in end", tok_text(&toks[1].tok)),
                    ));
                }
                let Some(frame) = stack.pop() else {
                    return Err(perr(src, a.pos, "unexpected {{end}}"));
                };
                if let Some(m) = self.marks.pop() {
                    self.vars.truncate(m);
                }
                Ok(Some(match frame {
                    Frame::If {
                        branches,
                        otherwise,
                        ..
                    } => Node::If {
                        branches,
                        otherwise,
                    },
                    Frame::Range {
                        pipe,
                        body,
                        otherwise,
                    } => Node::Range {
                        pipe,
                        body,
                        otherwise,
                    },
                    Frame::With {
                        pipe,
                        body,
                        otherwise,
                    } => Node::With {
                        pipe,
                        body,
                        otherwise,
                    },
                }))
            }
            "define" | "template" | "block" | "break" | "continue" => Err(perr(
                src,
                a.pos,
                format!("{{{{{keyword}}}}} is not supported by plugd"),
            )),
            _ => Ok(Some(Node::Action(self.pipeline(&toks, a.pos, false)?))),
        }
    }

    /// Parses a pipeline, with an optional variable declaration.
    fn pipeline(
        &mut self,
        toks: &[Token],
        pos: usize,
        allow_two: bool,
    ) -> Result<Pipe, ParseError> {
        let src = self.src;
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = toks;
        // `$x :=`, `$x =`, or (range) `$i, $e :=`.
        if let Some(Tok::Var(v)) = toks.first().map(|t| &t.tok) {
            match toks.get(1).map(|t| &t.tok) {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    assign = toks[1].tok == Tok::Assign;
                    decl.push(v.clone());
                    rest = &toks[2..];
                }
                Some(Tok::Comma) if allow_two => {
                    if let (Some(Tok::Var(v2)), Some(Tok::Declare)) =
                        (toks.get(2).map(|t| &t.tok), toks.get(3).map(|t| &t.tok))
                    {
                        decl.push(v.clone());
                        decl.push(v2.clone());
                        rest = &toks[4..];
                    } else {
                        return Err(perr(src, pos, "range can only initialize variables"));
                    }
                }
                _ => {}
            }
        }
        if assign {
            if !self.vars.contains(&decl[0]) {
                return Err(perr(
                    src,
                    pos,
                    format!("undefined variable \"{}\"", decl[0]),
                ));
            }
        } else {
            self.vars.extend(decl.iter().cloned());
        }
        let cmds = self.commands(rest, pos)?;
        Ok(Pipe { decl, assign, cmds })
    }

    fn commands(&mut self, toks: &[Token], pos: usize) -> Result<Vec<Cmd>, ParseError> {
        let src = self.src;
        let mut cmds = Vec::new();
        let mut i = 0;
        loop {
            let cmd_pos = toks.get(i).map(|t| t.pos).unwrap_or(pos);
            let mut args = Vec::new();
            while i < toks.len() && toks[i].tok != Tok::Pipe {
                if toks[i].tok == Tok::RParen {
                    return Err(perr(src, toks[i].pos, "unexpected right paren"));
                }
                if !args.is_empty() && !toks[i].spaced && !matches!(toks[i].tok, Tok::LParen) {
                    return Err(perr(
                        src,
                        toks[i].pos,
                        format!("unexpected {} in operand", tok_text(&toks[i].tok)),
                    ));
                }
                let (arg, next) = self.operand(toks, i)?;
                args.push(arg);
                i = next;
            }
            if args.is_empty() {
                return Err(perr(src, cmd_pos, "missing value for command"));
            }
            if let ArgKind::Lit(Value::Nil(_)) = args[0].kind
                && args.len() == 1
            {
                return Err(perr(src, cmd_pos, "nil is not a command"));
            }
            cmds.push(Cmd { pos: cmd_pos, args });
            if i >= toks.len() {
                break;
            }
            i += 1; // the pipe
            if i >= toks.len() {
                return Err(perr(src, pos, "missing command after |"));
            }
        }
        Ok(cmds)
    }

    /// Parses one operand at `i`: a term plus any directly attached field chain.
    fn operand(&mut self, toks: &[Token], i: usize) -> Result<(Arg, usize), ParseError> {
        let src = self.src;
        let t = &toks[i];
        let mut next = i + 1;
        let mut kind = match &t.tok {
            Tok::Dot => ArgKind::Dot,
            Tok::Field(f) => ArgKind::Field(vec![f.clone()]),
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return Err(perr(src, t.pos, format!("undefined variable \"{v}\"")));
                }
                ArgKind::Var(v.clone(), Vec::new())
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => ArgKind::Lit(Value::Bool(true)),
                "false" => ArgKind::Lit(Value::Bool(false)),
                "nil" => ArgKind::Lit(Value::Nil("nil")),
                n if FUNCTIONS.contains(&n) => ArgKind::Ident(n.to_string()),
                n => return Err(perr(src, t.pos, format!("function \"{n}\" not defined"))),
            },
            Tok::Str(s) => ArgKind::Lit(Value::Str(s.clone())),
            Tok::Num(v) => ArgKind::Lit(v.clone()),
            Tok::LParen => {
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match toks.get(j).map(|t| &t.tok) {
                        Some(Tok::LParen) => depth += 1,
                        Some(Tok::RParen) => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err(perr(src, t.pos, "unclosed left paren")),
                    }
                    j += 1;
                }
                let inner = self.pipeline(&toks[i + 1..j], t.pos, false)?;
                next = j + 1;
                ArgKind::Sub(Box::new(inner), Vec::new())
            }
            other => {
                return Err(perr(
                    src,
                    t.pos,
                    format!("unexpected {} in operand", tok_text(other)),
                ));
            }
        };
        // Go reports a chained node at the position of its first trailing field.
        let mut pos = t.pos;
        let mut chained = false;
        while let Some(Token {
            tok: Tok::Field(f),
            spaced: false,
            pos: fpos,
        }) = toks.get(next)
        {
            if !chained {
                pos = *fpos;
            }
            chained = true;
            match &mut kind {
                ArgKind::Field(chain) | ArgKind::Var(_, chain) | ArgKind::Sub(_, chain) => {
                    chain.push(f.clone())
                }
                _ => return Err(perr(src, *fpos, format!("unexpected .{f} in operand"))),
            }
            next += 1;
        }
        Ok((Arg { kind, pos }, next))
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Dot => "\".\"".into(),
        Tok::Field(f) => format!("<.{f}>"),
        Tok::Var(v) => format!("<{v}>"),
        Tok::Ident(i) => format!("<{i}>"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Num(v) => format!("<{}>", v.print()),
        Tok::Pipe => "\"|\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
    }
}

// ---------------------------------------------------------------- rendering nodes back to text

fn arg_text(a: &Arg) -> String {
    let chain = |c: &[String]| c.iter().map(|f| format!(".{f}")).collect::<String>();
    match &a.kind {
        ArgKind::Dot => ".".into(),
        ArgKind::Field(c) => chain(c),
        ArgKind::Var(v, c) => format!("{v}{}", chain(c)),
        ArgKind::Ident(i) => i.clone(),
        ArgKind::Sub(p, c) => format!("({}){}", pipe_text(p), chain(c)),
        ArgKind::Lit(Value::Str(s)) => format!("{s:?}"),
        ArgKind::Lit(Value::Nil(_)) => "nil".into(),
        ArgKind::Lit(v) => v.print(),
    }
}

fn cmd_text(c: &Cmd) -> String {
    c.args.iter().map(arg_text).collect::<Vec<_>>().join(" ")
}

fn pipe_text(p: &Pipe) -> String {
    let mut s = String::new();
    if !p.decl.is_empty() {
        s.push_str(&p.decl.join(", "));
        s.push_str(if p.assign { " = " } else { " := " });
    }
    s.push_str(&p.cmds.iter().map(cmd_text).collect::<Vec<_>>().join(" | "));
    s
}

// ---------------------------------------------------------------- execution

struct Exec<'a> {
    src: &'a str,
    opts: ExecOptions,
    vars: Vec<(String, Value)>,
    out: String,
}

/// Where an error happened: position and node text.
struct At {
    pos: usize,
    text: String,
}

impl Template {
    /// Runs the template with `dot` as data. On failure, Go leaves partial output behind; it is
    /// returned alongside the error for callers (table headers) that print it anyway.
    pub fn execute(&self, dot: &Value, opts: ExecOptions) -> Result<String, (String, ExecError)> {
        let mut ex = Exec {
            src: &self.src,
            opts,
            vars: vec![("$".into(), dot.clone())],
            out: String::new(),
        };
        match ex.walk(dot, &self.nodes) {
            Ok(()) => Ok(ex.out),
            Err(e) => Err((ex.out, e)),
        }
    }
}

type R<T> = Result<T, ExecError>;

impl Exec<'_> {
    fn fail(&self, at: &At, msg: impl std::fmt::Display) -> ExecError {
        let pos = at.pos.min(self.src.len());
        let line_start = self.src[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
        ExecError(format!(
            "template: :{}:{}: executing \"\" at <{}>: {msg}",
            line_of(self.src, pos),
            pos - line_start,
            at.text
        ))
    }

    fn walk(&mut self, dot: &Value, nodes: &[Node]) -> R<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(dot, p)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&v.print());
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut done = false;
                    for (pipe, body) in branches {
                        if self.pipeline(dot, pipe)?.truth() {
                            self.walk(dot, body)?;
                            done = true;
                            break;
                        }
                    }
                    if !done && let Some(o) = otherwise {
                        self.walk(dot, o)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(dot, pipe)?;
                    if v.truth() {
                        self.walk(&v, body)?;
                    } else if let Some(o) = otherwise {
                        self.walk(dot, o)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => self.range(dot, pipe, body, otherwise.as_deref())?,
            }
        }
        Ok(())
    }

    fn range(
        &mut self,
        dot: &Value,
        pipe: &Pipe,
        body: &[Node],
        otherwise: Option<&[Node]>,
    ) -> R<()> {
        let mark = self.vars.len();
        // The declaration names the loop variables, not the pipeline's result.
        let plain = Pipe {
            decl: Vec::new(),
            assign: false,
            cmds: pipe.cmds.clone(),
        };
        let v = self.pipeline(dot, &plain)?;
        let items: Vec<(Value, Value)> = match v.indirect() {
            Value::List { items, .. } => items
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                .collect(),
            Value::Map { entries, .. } => entries
                .iter()
                .map(|(k, x)| (Value::Str(k.clone()), x.clone()))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Invalid => Vec::new(),
            other => {
                let last = pipe.cmds.last().and_then(|c| c.args.first());
                let at = At {
                    pos: last.map(|a| a.pos).unwrap_or(0),
                    text: pipe.cmds.last().map(cmd_text).unwrap_or_default(),
                };
                return Err(self.fail(&at, format!("range can't iterate over {}", other.print())));
            }
        };
        if items.is_empty()
            && let Some(o) = otherwise
        {
            self.walk(dot, o)?;
        }
        for (k, item) in items {
            let inner = self.vars.len();
            match pipe.decl.as_slice() {
                [e] => self.vars.push((e.clone(), item.clone())),
                [i, e] => {
                    self.vars.push((i.clone(), k));
                    self.vars.push((e.clone(), item.clone()));
                }
                _ => {}
            }
            self.walk(&item, body)?;
            self.vars.truncate(inner);
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn pipeline(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let mut last: Option<Value> = None;
        for c in &p.cmds {
            last = Some(self.command(dot, c, last)?);
        }
        let v = last.unwrap_or(Value::Invalid);
        if let Some(name) = p.decl.first() {
            if p.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, dot: &Value, c: &Cmd, fin: Option<Value>) -> R<Value> {
        let first = &c.args[0];
        if let ArgKind::Ident(name) = &first.kind {
            let at = At {
                pos: c.pos,
                text: cmd_text(c),
            };
            return self.call(dot, name, &c.args[1..], fin, &at);
        }
        if c.args.len() > 1 || fin.is_some() {
            let at = At {
                pos: first.pos,
                text: arg_text(first),
            };
            return Err(self.fail(
                &at,
                format!("can't give argument to non-function {}", arg_text(first)),
            ));
        }
        self.arg(dot, first)
    }

    fn arg(&mut self, dot: &Value, a: &Arg) -> R<Value> {
        let at = || At {
            pos: a.pos,
            text: arg_text(a),
        };
        match &a.kind {
            ArgKind::Dot => Ok(dot.clone()),
            ArgKind::Lit(v) => Ok(v.clone()),
            ArgKind::Field(chain) => self.chain(dot.clone(), chain, &at()),
            ArgKind::Var(name, chain) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone());
                let Some(v) = v else {
                    return Err(self.fail(&at(), format!("undefined variable: {name}")));
                };
                self.chain(v, chain, &at())
            }
            ArgKind::Sub(p, chain) => {
                let v = self.pipeline(dot, p)?;
                self.chain(v, chain, &at())
            }
            ArgKind::Ident(name) => {
                let at = at();
                self.call(dot, name, &[], None, &at)
            }
        }
    }

    fn chain(&self, mut v: Value, chain: &[String], at: &At) -> R<Value> {
        for name in chain {
            v = self.field(&v, name).map_err(|m| self.fail(at, m))?;
        }
        Ok(v)
    }

    /// Go's `evalField`: methods, then (promoted) fields, then map keys.
    fn field(&self, recv: &Value, name: &str) -> Result<Value, String> {
        let static_ty = if self.opts.raw && !matches!(recv, Value::Map { .. }) {
            "interface {}".to_string()
        } else {
            recv.type_name()
        };
        match recv.indirect() {
            Value::Struct(s) => {
                if let Some((_, v)) = s.methods.iter().find(|(m, _)| *m == name) {
                    return Ok(v.clone());
                }
                if let Some(v) = struct_field(s, name)? {
                    return Ok(v);
                }
                Err(format!("can't evaluate field {name} in type {static_ty}"))
            }
            Value::Map { entries, .. } => match entries.get(name) {
                Some(v) => Ok(v.clone()),
                None if self.opts.missing_key_error => {
                    Err(format!("map has no entry for key \"{name}\""))
                }
                None => Ok(Value::Invalid),
            },
            Value::Nil(ty) => Err(format!("nil pointer evaluating {ty}.{name}")),
            Value::Invalid => Err(format!("nil data; no entry for key \"{name}\"")),
            _ => Err(format!("can't evaluate field {name} in type {static_ty}")),
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
        at: &At,
    ) -> R<Value> {
        // and/or evaluate lazily and return an operand.
        if name == "and" || name == "or" {
            let n = args.len() + usize::from(fin.is_some());
            if n < 1 {
                return Err(self.fail(
                    at,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Invalid;
            for a in args {
                last = self.arg(dot, a)?;
                if last.truth() != (name == "and") {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(dot, a)?);
        }
        vals.extend(fin);
        call_function(name, &vals, self.opts).map_err(|e| match e {
            CallError::Arity(msg) => self.fail(at, msg),
            CallError::Failed(msg) => self.fail(at, format!("error calling {name}: {msg}")),
        })
    }
}

fn struct_field(s: &super::value::Struct, name: &str) -> Result<Option<Value>, String> {
    if let Some(f) = s.fields.iter().find(|f| f.go == name) {
        if !f.go.starts_with(|c: char| c.is_uppercase()) {
            return Err(format!(
                "{name} is an unexported field of struct type {}",
                s.ty
            ));
        }
        return Ok(Some(f.value.clone()));
    }
    for f in s.fields.iter().filter(|f| f.embedded) {
        if let Value::Struct(inner) = f.value.indirect()
            && let Some(v) = struct_field(inner, name)?
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

enum CallError {
    Arity(String),
    Failed(String),
}

fn want(name: &str, vals: &[Value], n: usize) -> Result<(), CallError> {
    if vals.len() != n {
        return Err(CallError::Arity(format!(
            "wrong number of args for {name}: want {n} got {}",
            vals.len()
        )));
    }
    Ok(())
}

fn arg_str(v: &Value) -> Result<&str, CallError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(CallError::Arity(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        ))),
    }
}

fn arg_int(v: &Value) -> Result<i64, CallError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(CallError::Arity(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        ))),
    }
}

fn call_function(name: &str, vals: &[Value], opts: ExecOptions) -> Result<Value, CallError> {
    if opts.header {
        // The docker CLI's HeaderFunctions: keep the header text as it is.
        match name {
            "json" | "title" | "lower" | "upper" => {
                want(name, vals, 1)?;
                return Ok(Value::Str(arg_str(&vals[0])?.to_string()));
            }
            "split" | "join" | "truncate" => {
                want(name, vals, 2)?;
                return Ok(Value::Str(arg_str(&vals[0])?.to_string()));
            }
            _ => {}
        }
    }
    match name {
        "json" => {
            want(name, vals, 1)?;
            Ok(Value::Str(vals[0].to_json(false).trim().to_string()))
        }
        "split" => {
            want(name, vals, 2)?;
            let (s, sep) = (arg_str(&vals[0])?, arg_str(&vals[1])?);
            let items: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::Str(p.to_string())).collect()
            };
            Ok(Value::List {
                items,
                nil: false,
                elem: "string",
            })
        }
        "join" => {
            want(name, vals, 2)?;
            let sep = arg_str(&vals[1])?;
            match &vals[0] {
                Value::List {
                    items,
                    elem: "string",
                    ..
                } => {
                    let parts: Vec<String> = items.iter().map(Value::print).collect();
                    Ok(Value::Str(parts.join(sep)))
                }
                other => Err(CallError::Arity(format!(
                    "wrong type for value; expected []string; got {}",
                    other.type_name()
                ))),
            }
        }
        "title" => {
            want(name, vals, 1)?;
            Ok(Value::Str(title(arg_str(&vals[0])?)))
        }
        "lower" => {
            want(name, vals, 1)?;
            Ok(Value::Str(arg_str(&vals[0])?.to_lowercase()))
        }
        "upper" => {
            want(name, vals, 1)?;
            Ok(Value::Str(arg_str(&vals[0])?.to_uppercase()))
        }
        "pad" => {
            want(name, vals, 3)?;
            let s = arg_str(&vals[0])?;
            let (pre, post) = (arg_int(&vals[1])?, arg_int(&vals[2])?);
            if s.is_empty() {
                return Ok(Value::Str(String::new()));
            }
            let sp = |n: i64| " ".repeat(n.max(0) as usize);
            Ok(Value::Str(format!("{}{s}{}", sp(pre), sp(post))))
        }
        "truncate" => {
            want(name, vals, 2)?;
            let s = arg_str(&vals[0])?;
            let n = arg_int(&vals[1])?;
            if (s.len() as i64) < n {
                return Ok(Value::Str(s.to_string()));
            }
            let n = usize::try_from(n)
                .map_err(|_| CallError::Failed(format!("slice bounds out of range [:{n}]")))?;
            Ok(Value::Str(
                String::from_utf8_lossy(&s.as_bytes()[..n]).into_owned(),
            ))
        }
        "not" => {
            want(name, vals, 1)?;
            Ok(Value::Bool(!vals[0].truth()))
        }
        "len" => {
            want(name, vals, 1)?;
            match vals[0].indirect() {
                Value::Str(s) | Value::Number(s) => Ok(Value::Int(s.len() as i64)),
                Value::List { items, .. } => Ok(Value::Int(items.len() as i64)),
                Value::Map { entries, .. } => Ok(Value::Int(entries.len() as i64)),
                other => Err(CallError::Failed(format!(
                    "len of type {}",
                    other.type_name()
                ))),
            }
        }
        "index" => {
            if vals.is_empty() {
                return Err(CallError::Arity(
                    "wrong number of args for index: want at least 1 got 0".into(),
                ));
            }
            let mut v = vals[0].clone();
            for ix in &vals[1..] {
                v = index(&v, ix)?;
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(sprint(vals))),
        "println" => {
            let parts: Vec<String> = vals.iter().map(Value::print).collect();
            Ok(Value::Str(parts.join(" ") + "\n"))
        }
        "printf" => {
            if vals.is_empty() {
                return Err(CallError::Arity(
                    "wrong number of args for printf: want at least 1 got 0".into(),
                ));
            }
            Ok(Value::Str(sprintf(arg_str(&vals[0])?, &vals[1..])))
        }
        "eq" => {
            if vals.len() < 2 {
                return Err(CallError::Failed("missing argument for comparison".into()));
            }
            for other in &vals[1..] {
                if equal(&vals[0], other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            want(name, vals, 2)?;
            Ok(Value::Bool(!equal(&vals[0], &vals[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, vals, 2)?;
            let ord = less(&vals[0], &vals[1])?;
            Ok(Value::Bool(match name {
                "lt" => ord == std::cmp::Ordering::Less,
                "le" => ord != std::cmp::Ordering::Greater,
                "gt" => ord == std::cmp::Ordering::Greater,
                _ => ord != std::cmp::Ordering::Less,
            }))
        }
        _ => Err(CallError::Failed(format!("function {name:?} not defined"))),
    }
}

fn index(v: &Value, ix: &Value) -> Result<Value, CallError> {
    match v.indirect() {
        Value::List { items, .. } => {
            let i = match ix {
                Value::Int(i) => *i,
                other => {
                    return Err(CallError::Failed(format!(
                        "cannot index slice/array with type {}",
                        other.type_name()
                    )));
                }
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i).cloned())
                .ok_or_else(|| CallError::Failed(format!("index out of range: {i}")))
        }
        Value::Map { entries, ty } => {
            let key = match ix {
                Value::Str(s) => s,
                other => {
                    return Err(CallError::Failed(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    )));
                }
            };
            Ok(entries
                .get(key)
                .cloned()
                .unwrap_or(if ty.ends_with("string") {
                    Value::Str(String::new())
                } else {
                    Value::Nil("interface {}")
                }))
        }
        Value::Nil(_) | Value::Invalid => Err(CallError::Failed("index of untyped nil".into())),
        other => Err(CallError::Failed(format!(
            "can't index item of type {}",
            other.type_name()
        ))),
    }
}

fn is_string_kind(v: &Value) -> bool {
    matches!(v, Value::Str(_) | Value::Number(_))
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(vals: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 && !is_string_kind(v) && !is_string_kind(&vals[i - 1]) {
            out.push(' ');
        }
        out.push_str(&v.print());
    }
    out
}

/// A small `fmt.Sprintf`: `%s %v %d %q %t %%`; others print Go's `%!verb(type=value)`.
fn sprintf(format: &str, vals: &[Value]) -> String {
    let mut out = String::new();
    let mut args = vals.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        match (verb, arg) {
            ('v', a) => out.push_str(&a.print()),
            ('s', a) if !matches!(a, Value::Bool(_) | Value::Int(_) | Value::Float(_)) => {
                out.push_str(&a.print())
            }
            ('d', Value::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            ('t', Value::Bool(b)) => {
                let _ = write!(out, "{b}");
            }
            ('q', Value::Str(s) | Value::Number(s) | Value::Stringer(s)) => {
                out.push_str(&go_quote(s))
            }
            (v, a) => {
                let _ = write!(out, "%!{v}({}={})", a.type_name(), a.print());
            }
        }
    }
    let extra: Vec<&Value> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        let parts: Vec<String> = extra
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.print()))
            .collect();
        out.push_str(&parts.join(", "));
        out.push(')');
    }
    out
}

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let _ = if (c as u32) < 0x100 {
                    write!(out, "\\x{:02x}", c as u32)
                } else {
                    write!(out, "\\u{:04x}", c as u32)
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        }
    };
    let mut prev_sep = true;
    s.chars()
        .map(|c| {
            let out = if prev_sep {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c
            };
            prev_sep = is_sep(c);
            out
        })
        .collect()
}

fn equal(a: &Value, b: &Value) -> Result<bool, CallError> {
    let (a, b) = (a.indirect(), b.indirect());
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x) | Value::Number(x), Value::Str(y) | Value::Number(y)) => x == y,
        (Value::Stringer(x), Value::Stringer(y)) => x == y,
        (Value::Nil(_), Value::Nil(_)) => true,
        (Value::Nil(_), _) | (_, Value::Nil(_)) => false,
        (Value::List { .. } | Value::Map { .. }, _)
        | (_, Value::List { .. } | Value::Map { .. }) => {
            return Err(CallError::Failed("non-comparable types".into()));
        }
        _ => {
            return Err(CallError::Failed(
                "incompatible types for comparison".into(),
            ));
        }
    })
}

fn less(a: &Value, b: &Value) -> Result<std::cmp::Ordering, CallError> {
    match (a.indirect(), b.indirect()) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x
            .partial_cmp(y)
            .ok_or_else(|| CallError::Failed("NaN".into())),
        (Value::Str(x) | Value::Number(x), Value::Str(y) | Value::Number(y)) => Ok(x.cmp(y)),
        (
            Value::Int(_) | Value::Float(_) | Value::Str(_),
            Value::Int(_) | Value::Float(_) | Value::Str(_),
        ) => Err(CallError::Failed(
            "incompatible types for comparison".into(),
        )),
        _ => Err(CallError::Failed("invalid type for comparison".into())),
    }
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
