//! Parsing: tokens to the node tree, with Go's checks and messages (unknown functions, unclosed
//! blocks), and the nodes printed back as Go prints them in `at <…>`.

use super::lex::*;
use super::*;

/// A control structure being parsed: its node (`If`, `Range` or `With`) and, for `If`, whether its
/// `{{else}}` was seen.
pub(super) struct Frame {
    node: Node,
    in_else: bool,
}

impl Frame {
    fn open(node: Node) -> Frame {
        Frame {
            node,
            in_else: false,
        }
    }

    /// The list the next node goes into.
    fn current(&mut self) -> &mut Vec<Node> {
        match &mut self.node {
            Node::If {
                branches,
                otherwise,
            } => {
                if self.in_else {
                    otherwise.get_or_insert_with(Vec::new)
                } else {
                    &mut branches.last_mut().expect("if has a branch").1
                }
            }
            Node::Range {
                body, otherwise, ..
            }
            | Node::With {
                body, otherwise, ..
            } => match otherwise {
                Some(o) => o,
                None => body,
            },
            Node::Text(_) | Node::Action(_) => unreachable!("only control nodes are frames"),
        }
    }
}

pub(super) struct Parser<'a> {
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
                let node = match keyword {
                    "if" => Node::If {
                        branches: vec![(pipe, Vec::new())],
                        otherwise: None,
                    },
                    "range" => Node::Range {
                        pipe,
                        body: Vec::new(),
                        otherwise: None,
                    },
                    _ => Node::With {
                        pipe,
                        body: Vec::new(),
                        otherwise: None,
                    },
                };
                stack.push(Frame::open(node));
                Ok(None)
            }
            "else" => {
                let is_else_if =
                    matches!(toks.get(1).map(|t| &t.tok), Some(Tok::Ident(k)) if k == "if");
                let Some(Frame { node, in_else }) = stack.last_mut() else {
                    return Err(perr(src, a.pos, "unexpected {{else}}"));
                };
                match node {
                    Node::If { branches, .. } if !*in_else => {
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
                    Node::Range { otherwise, .. } | Node::With { otherwise, .. }
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
                Ok(Some(frame.node))
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

pub(super) fn tok_text(t: &Tok) -> String {
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

pub(super) fn arg_text(a: &Arg) -> String {
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

pub(super) fn cmd_text(c: &Cmd) -> String {
    c.args.iter().map(arg_text).collect::<Vec<_>>().join(" ")
}

pub(super) fn pipe_text(p: &Pipe) -> String {
    let mut s = String::new();
    if !p.decl.is_empty() {
        s.push_str(&p.decl.join(", "));
        s.push_str(if p.assign { " = " } else { " := " });
    }
    s.push_str(&p.cmds.iter().map(cmd_text).collect::<Vec<_>>().join(" | "));
    s
}
