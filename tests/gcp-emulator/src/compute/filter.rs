//! The `filter` of Compute list calls. Compute accepts two dialects, never mixed:
//!
//! - RE2 style: `name eq site-.*`, `name ne foo`, or several parenthesised terms
//!   `(name eq a.*) (description ne x)`; the value is a regular expression that must
//!   match the whole field.
//! - AIP-160: `name = "x"`, `name != x`, `labels.env:*`, `<`/`>`, combined with
//!   `AND`, `OR`, `NOT`/`-` and parentheses.

use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use serde_json::Value;

use crate::error::ApiError;

/// A parsed filter.
#[derive(Debug)]
pub struct Filter {
    root: Expr,
}

#[derive(Debug)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// RE2 style: field, regex (anchored), negated.
    Re {
        field: String,
        re: Box<dense::DFA<Vec<u32>>>,
        negate: bool,
    },
    /// AIP-160 comparison.
    Cmp {
        field: String,
        op: Op,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Has,
    Lt,
    Le,
    Gt,
    Ge,
}

fn bad(filter: &str, why: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value for field 'filter': '{filter}'. Invalid list filter expression: {why}."
    ))
}

impl Filter {
    /// Parses a filter; an unparsable one is Google's 400 `invalid`.
    pub fn parse(text: &str) -> Result<Filter, ApiError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Filter {
                root: Expr::And(Vec::new()),
            });
        }
        let root = if looks_re2(trimmed) {
            parse_re2(trimmed).map_err(|why| bad(text, &why))?
        } else {
            let tokens = tokenize(trimmed).map_err(|why| bad(text, &why))?;
            let mut p = Parser { tokens, pos: 0 };
            let e = p.and_expr().map_err(|why| bad(text, &why))?;
            if p.pos != p.tokens.len() {
                return Err(bad(text, "unexpected trailing input"));
            }
            e
        };
        Ok(Filter { root })
    }

    /// Whether a resource (as the API renders it) passes.
    pub fn matches(&self, item: &Value) -> bool {
        eval(&self.root, item)
    }
}

fn looks_re2(s: &str) -> bool {
    let s = s.trim_start_matches(['(', ' ']);
    let mut words = s.split_whitespace();
    let _field = words.next();
    matches!(words.next(), Some(op) if op.eq_ignore_ascii_case("eq") || op.eq_ignore_ascii_case("ne"))
}

fn parse_re2(s: &str) -> Result<Expr, String> {
    let mut terms = Vec::new();
    if s.starts_with('(') {
        // `(a eq x) (b ne y)`: split on balanced parentheses.
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            if bytes[i] != b'(' {
                return Err("expected '(' to start a term".into());
            }
            let mut depth = 0usize;
            let start = i + 1;
            let mut end = None;
            for (j, &c) in bytes.iter().enumerate().skip(i) {
                match c {
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unbalanced parentheses")?;
            terms.push(re2_term(&s[start..end])?);
            i = end + 1;
        }
    } else {
        terms.push(re2_term(s)?);
    }
    Ok(Expr::And(terms))
}

fn re2_term(t: &str) -> Result<Expr, String> {
    let t = t.trim();
    let (field, rest) = t
        .split_once(char::is_whitespace)
        .ok_or("missing operator")?;
    let rest = rest.trim_start();
    let (op, value) = rest
        .split_once(char::is_whitespace)
        .ok_or("missing value")?;
    let negate = if op.eq_ignore_ascii_case("eq") {
        false
    } else if op.eq_ignore_ascii_case("ne") {
        true
    } else {
        return Err(format!("unknown operator '{op}'"));
    };
    let value = value.trim();
    let pattern = if let Some(q) = value.strip_prefix('"') {
        q.strip_suffix('"')
            .ok_or("unterminated string")?
            .to_string()
    } else if value.contains(char::is_whitespace) {
        // An unquoted value is one word; anything more is another dialect mixed in.
        return Err("the RE2 and AIP-160 filter syntaxes cannot be mixed".into());
    } else {
        value.to_string()
    };
    if !valid_field(field) {
        return Err(format!("bad field name '{field}'"));
    }
    let re = dense::Builder::new()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("bad regular expression: {e}"))?;
    Ok(Expr::Re {
        field: field.to_string(),
        re: Box::new(re),
        negate,
    })
}

fn valid_field(f: &str) -> bool {
    !f.is_empty()
        && f.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Op(Op),
    Word(String),
    Str(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            if let Some(n) = chars.get(i + 1) {
                                v.push(*n);
                            }
                            i += 2;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            '!' | '<' | '>' | '=' | ':' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    ('=', _) => (Op::Eq, 1),
                    (':', _) => (Op::Has, 1),
                    _ => return Err("unexpected '!'".into()),
                };
                out.push(Tok::Op(op));
                i += len;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '"' | '!' | '<' | '>' | '=' | ':')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    /// Sequence of terms joined by `AND` or juxtaposition.
    fn and_expr(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.or_expr()?];
        loop {
            if self.is_word("AND") {
                self.pos += 1;
                terms.push(self.or_expr()?);
            } else if matches!(self.peek(), None | Some(Tok::RParen)) {
                break;
            } else {
                terms.push(self.or_expr()?);
            }
        }
        Ok(Expr::And(terms))
    }

    /// In AIP-160, `OR` binds tighter than `AND`.
    fn or_expr(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.unary()?];
        while self.is_word("OR") {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.is_word("NOT") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if let Some(Tok::Word(w)) = self.peek()
            && let Some(rest) = w.strip_prefix('-')
            && !rest.is_empty()
        {
            let rest = rest.to_string();
            self.tokens[self.pos] = Tok::Word(rest);
            return Ok(Expr::Not(Box::new(self.primary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.and_expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(field)) => {
                if !valid_field(&field) || matches!(field.as_str(), "AND" | "OR" | "NOT") {
                    return Err(format!("bad field name '{field}'"));
                }
                self.pos += 1;
                let Some(Tok::Op(op)) = self.peek().cloned() else {
                    return Err(format!("expected an operator after '{field}'"));
                };
                self.pos += 1;
                let value = match self.peek().cloned() {
                    Some(Tok::Str(v)) | Some(Tok::Word(v)) => v,
                    _ => return Err(format!("expected a value after '{field}'")),
                };
                self.pos += 1;
                Ok(Expr::Cmp { field, op, value })
            }
            _ => Err("expected a comparison".into()),
        }
    }
}

fn lookup<'a>(item: &'a Value, field: &str) -> Option<&'a Value> {
    let mut v = item;
    for part in field.split('.') {
        v = v.get(part)?;
    }
    (!v.is_null()).then_some(v)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `*` in an AIP-160 string value matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == s;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

fn eval(e: &Expr, item: &Value) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|x| eval(x, item)),
        Expr::Or(v) => v.iter().any(|x| eval(x, item)),
        Expr::Not(x) => !eval(x, item),
        Expr::Re { field, re, negate } => {
            let s = lookup(item, field).and_then(scalar).unwrap_or_default();
            let input = Input::new(s.as_bytes()).anchored(Anchored::Yes);
            let hit = matches!(re.try_search_fwd(&input), Ok(Some(_)));
            hit != *negate
        }
        Expr::Cmp { field, op, value } => {
            let found = lookup(item, field);
            match op {
                Op::Has => match found {
                    None => false,
                    Some(_) if value == "*" => true,
                    Some(Value::Array(a)) => a.iter().filter_map(scalar).any(|s| glob(value, &s)),
                    Some(Value::Object(m)) => m.contains_key(value.as_str()),
                    Some(v) => scalar(v).is_some_and(|s| glob(value, &s)),
                },
                Op::Eq => found.and_then(scalar).is_some_and(|s| glob(value, &s)),
                Op::Ne => !found.and_then(scalar).is_some_and(|s| glob(value, &s)),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let Some(s) = found.and_then(scalar) else {
                        return false;
                    };
                    let ord = compare(&s, value);
                    match op {
                        Op::Lt => ord.is_lt(),
                        Op::Le => ord.is_le(),
                        Op::Gt => ord.is_gt(),
                        _ => ord.is_ge(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(f: &str, v: Value) -> bool {
        Filter::parse(f).unwrap().matches(&v)
    }

    #[test]
    fn re2_full_match_and_ne() {
        let a = json!({"name": "site-2026"});
        assert!(m("name eq site-.*", a.clone()));
        assert!(!m("name eq site", a.clone()));
        assert!(m("name ne site", a.clone()));
        assert!(!m("name ne site-.*", a.clone()));
        assert!(m("(name eq site-.*) (name ne x)", a.clone()));
        assert!(m("name eq \"site-(2026|2027)\"", a));
    }

    #[test]
    fn aip160() {
        let a = json!({"name": "a", "labels": {"env": "prod"}, "n": 5});
        assert!(m("name = \"a\"", a.clone()));
        assert!(!m("name != a", a.clone()));
        assert!(m("labels.env:*", a.clone()));
        assert!(!m("labels.team:*", a.clone()));
        assert!(m("name = a AND n > 3", a.clone()));
        assert!(m("name = b OR name = a", a.clone()));
        assert!(m("NOT name = b", a.clone()));
        assert!(m("-name = b", a));
    }

    #[test]
    fn bad_filters_are_invalid() {
        for f in [
            "name eq x AND name = \"y\"",
            "name =",
            "name eq (",
            "= x",
            "(name = a",
        ] {
            let e = Filter::parse(f).unwrap_err();
            assert_eq!((e.code, e.reason.as_str()), (400, "invalid"), "{f}");
        }
    }
}
