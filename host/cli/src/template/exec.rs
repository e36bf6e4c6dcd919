//! Execution: walks the node tree against a value, with Go's truthiness, field lookup and
//! `executing "" at <…>` errors.

use super::functions::*;
use super::lex::line_of;
use super::parse::*;
use super::*;

pub(super) struct Exec<'a> {
    src: &'a str,
    opts: ExecOptions,
    vars: Vec<(String, Value)>,
    out: String,
}

/// Where an error happened: position and node text.
pub(super) struct At {
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

pub(super) type R<T> = Result<T, ExecError>;

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
                    let mut chosen = otherwise.as_deref();
                    for (pipe, body) in branches {
                        if self.pipeline(dot, pipe)?.truth() {
                            chosen = Some(body);
                            break;
                        }
                    }
                    if let Some(nodes) = chosen {
                        self.walk(dot, nodes)?;
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
                    match (v.truth(), otherwise) {
                        (true, _) => self.walk(&v, body)?,
                        (false, Some(o)) => self.walk(dot, o)?,
                        (false, None) => {}
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

pub(super) fn struct_field(
    s: &super::super::value::Struct,
    name: &str,
) -> Result<Option<Value>, String> {
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
