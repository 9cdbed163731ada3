//! The rule expression language: a small, safe, statically typed subset of CEL syntax.
//!
//! ```text
//! expr    := and ("||" and)*
//! and     := cmp ("&&" cmp)*
//! cmp     := unary (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") unary)?
//! unary   := "!" unary | primary
//! primary := "true" | "false" | INT | STRING | "[" STRING ("," STRING)* "]"
//!          | "(" expr ")" | path ("(" INT ")")?
//! path    := IDENT ("." IDENT)*       -- person.*, household.*, event.*, answers.*
//! ```
//!
//! Why not the `cel-interpreter` crate: it has no type checker, so an unknown fact, a
//! misspelt value or a non-boolean rule would only show at evaluation time, while the
//! catalogue must be rejected at load with every error located; and evaluating over its
//! dynamic map values costs allocations per person per rule. Here every name is
//! resolved at load time to a [`Fact`], string literals compared with a closed
//! enumeration are checked against its values, and evaluation allocates nothing.
//!
//! `answers.*` are the staff's answers to declared questions; an unanswered one is
//! *unknown*, and `&&`, `||`, `!` follow Kleene's three-valued logic, so a rule whose
//! outcome does not depend on the missing answer still decides (see [`Tri`]).

use super::model::{Fact, Scope, Type, FACTS};

/// Three-valued truth: an unanswered question makes a rule `Unknown` only when its
/// answer could change the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Depends on an unanswered question.
    Unknown,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
}

/// A compile error with its 1-based character column in the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// How a rule's `answers.*` names resolve: question id → (index, scope).
pub trait QuestionLookup {
    /// Index of the question in its scope's answer vector, and whether it is per person.
    fn lookup(&self, id: &str) -> Option<(usize, bool)>;
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// A type-checked expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Literal bool.
    Bool(bool),
    /// Literal integer.
    Int(i64),
    /// Literal text.
    Str(String),
    /// Literal list of texts.
    List(Vec<String>),
    /// A fact (functions carry their argument).
    Fact(Fact, i64),
    /// An answer: index, per person?
    Answer(usize, bool),
    /// Negation.
    Not(Box<Expr>),
    /// Conjunction.
    And(Box<Expr>, Box<Expr>),
    /// Disjunction.
    Or(Box<Expr>, Box<Expr>),
    /// Comparison.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// Membership of a text in a list.
    In(Box<Expr>, Box<Expr>),
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Str(String),
    Op(&'static str),
    End,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |i: usize, m: &str| ExprError {
        column: i + 1,
        message: m.to_owned(),
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse()
                .map_err(|_| err(start, "integer out of range"))?;
            out.push((Tok::Int(n), start));
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated string")),
                    Some('"') => break,
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&e @ ('"' | '\\')) => s.push(e),
                            _ => return Err(err(i, "unknown escape (only \\\" and \\\\)")),
                        }
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push((Tok::Str(s), start));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["&&", "||", "==", "!=", "<=", ">="]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                out.push((Tok::Op(op), start));
                i += 2;
            } else {
                let op = ["(", ")", "[", "]", ",", ".", "!", "<", ">"]
                    .into_iter()
                    .find(|o| o.starts_with(c))
                    .ok_or_else(|| err(start, &format!("unexpected character {c:?}")))?;
                out.push((Tok::Op(op), start));
                i += 1;
            }
        }
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

// ---------------------------------------------------------------- parser + checker

struct Parser<'q> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    scope_person: bool,
    questions: &'q dyn QuestionLookup,
    /// Questions read by the expression: (index, per person).
    pub reads: Vec<(usize, bool)>,
}

type Typed = (Expr, Type, usize);

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn col(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }
    fn next(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos.min(self.toks.len() - 1)].clone();
        self.pos += 1;
        t
    }
    fn err<T>(&self, col: usize, m: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError {
            column: col + 1,
            message: m.into(),
        })
    }
    fn eat(&mut self, op: &str) -> bool {
        if *self.peek() == Tok::Op(match_op(op)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, op: &str) -> Result<(), ExprError> {
        if self.eat(op) {
            Ok(())
        } else {
            self.err(self.col(), format!("expected `{op}`"))
        }
    }

    fn bool_operand(&self, (e, t, c): Typed, what: &str) -> Result<Expr, ExprError> {
        if t == Type::Bool {
            Ok(e)
        } else {
            self.err(
                c,
                format!("`{what}` needs a bool operand, found {}", t.name()),
            )
        }
    }

    fn or(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            let col = left.2;
            let l = self.bool_operand(left, "||")?;
            let r = self.bool_operand(right, "||")?;
            left = (Expr::Or(Box::new(l), Box::new(r)), Type::Bool, col);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.cmp()?;
        while self.eat("&&") {
            let right = self.cmp()?;
            let col = left.2;
            let l = self.bool_operand(left, "&&")?;
            let r = self.bool_operand(right, "&&")?;
            left = (Expr::And(Box::new(l), Box::new(r)), Type::Bool, col);
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<Typed, ExprError> {
        let left = self.unary()?;
        let op = match self.peek() {
            Tok::Op(o @ ("==" | "!=" | "<" | "<=" | ">" | ">=")) => *o,
            Tok::Ident(w) if w == "in" => "in",
            _ => return Ok(left),
        };
        let op_col = self.col();
        self.pos += 1;
        let right = self.unary()?;
        let col = left.2;
        if op == "in" {
            if left.1 != Type::Str || right.1 != Type::List {
                return self.err(
                    op_col,
                    format!(
                        "`in` needs string in list, found {} in {}",
                        left.1.name(),
                        right.1.name()
                    ),
                );
            }
            self.check_values(&left.0, &right.0, right.2)?;
            self.check_values(&right.0, &left.0, left.2)?;
            return Ok((
                Expr::In(Box::new(left.0), Box::new(right.0)),
                Type::Bool,
                col,
            ));
        }
        if left.1 != right.1 || left.1 == Type::List {
            return self.err(
                op_col,
                format!("cannot compare {} with {}", left.1.name(), right.1.name()),
            );
        }
        let ordered = matches!(op, "<" | "<=" | ">" | ">=");
        if ordered && left.1 != Type::Int {
            return self.err(op_col, format!("`{op}` needs int operands"));
        }
        self.check_values(&left.0, &right.0, right.2)?;
        self.check_values(&right.0, &left.0, left.2)?;
        let op = match op {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            _ => CmpOp::Ge,
        };
        Ok((
            Expr::Cmp(op, Box::new(left.0), Box::new(right.0)),
            Type::Bool,
            col,
        ))
    }

    /// A literal compared with a closed-enumeration fact must be one of its values.
    fn check_values(&self, fact: &Expr, lit: &Expr, lit_col: usize) -> Result<(), ExprError> {
        let Expr::Fact(f, _) = fact else {
            return Ok(());
        };
        let Some(allowed) = FACTS.iter().find(|e| e.0 == *f).and_then(|e| e.4) else {
            return Ok(());
        };
        let texts: Vec<&String> = match lit {
            Expr::Str(s) => vec![s],
            Expr::List(l) => l.iter().collect(),
            _ => return Ok(()),
        };
        for t in texts {
            if !allowed.contains(&t.as_str()) {
                return self.err(
                    lit_col,
                    format!("{t:?} is not a value of this fact (one of {allowed:?})"),
                );
            }
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Typed, ExprError> {
        if self.eat("!") {
            let col = self.col();
            let inner = self.unary()?;
            let e = self.bool_operand(inner, "!")?;
            return Ok((Expr::Not(Box::new(e)), Type::Bool, col));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Typed, ExprError> {
        let (tok, col) = self.next();
        match tok {
            Tok::Int(n) => Ok((Expr::Int(n), Type::Int, col)),
            Tok::Str(s) => Ok((Expr::Str(s), Type::Str, col)),
            Tok::Op("(") => {
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                loop {
                    match self.next() {
                        (Tok::Str(s), _) => items.push(s),
                        (_, c) => return self.err(c, "a list holds string literals only"),
                    }
                    if self.eat("]") {
                        break;
                    }
                    self.expect(",")?;
                }
                Ok((Expr::List(items), Type::List, col))
            }
            Tok::Ident(w) if w == "true" || w == "false" => {
                Ok((Expr::Bool(w == "true"), Type::Bool, col))
            }
            Tok::Ident(first) => self.path(first, col),
            Tok::End => self.err(col, "unexpected end of expression"),
            Tok::Op(o) => self.err(col, format!("unexpected `{o}`")),
        }
    }

    fn path(&mut self, first: String, col: usize) -> Result<Typed, ExprError> {
        let mut name = first;
        while self.eat(".") {
            match self.next() {
                (Tok::Ident(part), _) => {
                    name.push('.');
                    name.push_str(&part);
                }
                (_, c) => return self.err(c, "expected a name after `.`"),
            }
        }
        if let Some(q) = name.strip_prefix("answers.") {
            let Some((idx, per_person)) = self.questions.lookup(q) else {
                return self.err(col, format!("unknown question `{q}`"));
            };
            if per_person && !self.scope_person {
                return self.err(
                    col,
                    format!("question `{q}` is per person; this rule is per household"),
                );
            }
            if !self.reads.contains(&(idx, per_person)) {
                self.reads.push((idx, per_person));
            }
            return Ok((Expr::Answer(idx, per_person), Type::Bool, col));
        }
        let Some(&(fact, _, scope, ty, _, _)) = FACTS.iter().find(|e| e.1 == name) else {
            return self.err(col, format!("unknown fact `{name}`"));
        };
        if scope == Scope::Person && !self.scope_person {
            return self.err(
                col,
                format!("`{name}` is a person fact; this rule is per household"),
            );
        }
        let mut arg = 0;
        if fact.takes_int_arg() {
            self.expect("(")?;
            match self.next() {
                (Tok::Int(n), _) => arg = n,
                (_, c) => return self.err(c, format!("`{name}` takes one integer literal")),
            }
            self.expect(")")?;
        } else if *self.peek() == Tok::Op("(") {
            return self.err(self.col(), format!("`{name}` is not a function"));
        }
        Ok((Expr::Fact(fact, arg), ty, col))
    }
}

fn match_op(op: &str) -> &'static str {
    [
        "&&", "||", "==", "!=", "<=", ">=", "(", ")", "[", "]", ",", ".", "!", "<", ">",
    ]
    .into_iter()
    .find(|o| *o == op)
    .unwrap_or("")
}

/// A compiled boolean rule condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The checked expression.
    pub expr: Expr,
    /// Questions it reads: (index, per person).
    pub reads: Vec<(usize, bool)>,
}

/// Parse and type-check a condition; it must be boolean.
pub fn compile(
    src: &str,
    per_person: bool,
    questions: &dyn QuestionLookup,
) -> Result<Condition, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        scope_person: per_person,
        questions,
        reads: Vec::new(),
    };
    let (expr, ty, col) = p.or()?;
    if *p.peek() != Tok::End {
        return p.err(p.col(), "unexpected text after the expression");
    }
    if ty != Type::Bool {
        return p.err(
            col,
            format!("a rule condition must be bool, found {}", ty.name()),
        );
    }
    Ok(Condition {
        expr,
        reads: p.reads,
    })
}

/// Resolve a template placeholder such as `person.age` to a fact (no functions).
pub fn template_fact(name: &str, per_person: bool) -> Result<Fact, String> {
    match FACTS.iter().find(|e| e.1 == name) {
        Some(e) if e.0.takes_int_arg() => Err(format!("`{name}` is a function")),
        Some(e) if e.2 == Scope::Person && !per_person => Err(format!(
            "`{name}` is a person fact; this rule is per household"
        )),
        Some(e) => Ok(e.0),
        None => Err(format!("unknown fact `{name}`")),
    }
}

// ---------------------------------------------------------------- evaluation

/// A value during evaluation; borrowed, so evaluation allocates nothing.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// bool.
    Bool(bool),
    /// int.
    Int(i64),
    /// text.
    Str(&'a str),
    /// facts' lists.
    Static(&'a [&'static str]),
    /// literal lists.
    Owned(&'a [String]),
    /// an unanswered question.
    Unknown,
}

/// Gives fact and answer values to the evaluator.
pub trait Env<'a> {
    /// The value of a fact.
    fn fact(&self, fact: Fact, arg: i64) -> Value<'a>;
    /// An answer, `None` when unanswered.
    fn answer(&self, index: usize, per_person: bool) -> Option<bool>;
}

fn tri(v: Value<'_>) -> Tri {
    match v {
        Value::Bool(b) => b.into(),
        _ => Tri::Unknown,
    }
}

fn from_tri<'a>(t: Tri) -> Value<'a> {
    match t {
        Tri::True => Value::Bool(true),
        Tri::False => Value::Bool(false),
        Tri::Unknown => Value::Unknown,
    }
}

impl Expr {
    /// Evaluate a checked boolean expression.
    pub fn eval_tri<'a>(&'a self, env: &dyn Env<'a>) -> Tri {
        tri(self.eval(env))
    }

    fn eval<'a>(&'a self, env: &dyn Env<'a>) -> Value<'a> {
        match self {
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Int(n) => Value::Int(*n),
            Expr::Str(s) => Value::Str(s),
            Expr::List(l) => Value::Owned(l),
            Expr::Fact(f, a) => env.fact(*f, *a),
            Expr::Answer(i, p) => env.answer(*i, *p).map_or(Value::Unknown, Value::Bool),
            Expr::Not(e) => from_tri(match tri(e.eval(env)) {
                Tri::True => Tri::False,
                Tri::False => Tri::True,
                Tri::Unknown => Tri::Unknown,
            }),
            Expr::And(l, r) => match tri(l.eval(env)) {
                Tri::False => Value::Bool(false),
                lt => match (lt, tri(r.eval(env))) {
                    (_, Tri::False) => Value::Bool(false),
                    (Tri::True, Tri::True) => Value::Bool(true),
                    _ => Value::Unknown,
                },
            },
            Expr::Or(l, r) => match tri(l.eval(env)) {
                Tri::True => Value::Bool(true),
                lt => match (lt, tri(r.eval(env))) {
                    (_, Tri::True) => Value::Bool(true),
                    (Tri::False, Tri::False) => Value::Bool(false),
                    _ => Value::Unknown,
                },
            },
            Expr::Cmp(op, l, r) => {
                let ord = match (l.eval(env), r.eval(env)) {
                    (Value::Int(a), Value::Int(b)) => a.cmp(&b),
                    (Value::Str(a), Value::Str(b)) => a.cmp(b),
                    (Value::Bool(a), Value::Bool(b)) => a.cmp(&b),
                    _ => return Value::Unknown,
                };
                use std::cmp::Ordering::*;
                Value::Bool(match op {
                    CmpOp::Eq => ord == Equal,
                    CmpOp::Ne => ord != Equal,
                    CmpOp::Lt => ord == Less,
                    CmpOp::Le => ord != Greater,
                    CmpOp::Gt => ord == Greater,
                    CmpOp::Ge => ord != Less,
                })
            }
            Expr::In(l, r) => {
                let Value::Str(needle) = l.eval(env) else {
                    return Value::Unknown;
                };
                Value::Bool(match r.eval(env) {
                    Value::Static(list) => list.contains(&needle),
                    Value::Owned(list) => list.iter().any(|s| s == needle),
                    _ => return Value::Unknown,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Qs;
    impl QuestionLookup for Qs {
        fn lookup(&self, id: &str) -> Option<(usize, bool)> {
            (id == "q").then_some((0, true))
        }
    }

    struct E(Option<bool>);
    impl<'a> Env<'a> for E {
        fn fact(&self, fact: Fact, arg: i64) -> Value<'a> {
            match fact {
                Fact::Age => Value::Int(8),
                Fact::PersonInsurance => Value::Str("kokuho"),
                Fact::Benefits => Value::Static(&["child_allowance"]),
                Fact::HasChildUnder => Value::Bool(arg > 8),
                _ => Value::Bool(false),
            }
        }
        fn answer(&self, _: usize, _: bool) -> Option<bool> {
            self.0
        }
    }

    fn run(src: &str, ans: Option<bool>) -> Tri {
        compile(src, true, &Qs).unwrap().expr.eval_tri(&E(ans))
    }

    #[test]
    fn rules_expr_evaluates() {
        assert_eq!(run("person.age >= 6 && person.age <= 12", None), Tri::True);
        assert_eq!(
            run("person.insurance in [\"kokuho\", \"koki\"]", None),
            Tri::True
        );
        assert_eq!(
            run("\"child_allowance\" in person.benefits", None),
            Tri::True
        );
        assert_eq!(
            run("household.has_child_under(18) && !(person.age < 3)", None),
            Tri::True
        );
        assert_eq!(run("person.age < 3 && answers.q", None), Tri::False);
        assert_eq!(run("person.age > 3 && answers.q", None), Tri::Unknown);
        assert_eq!(run("person.age > 3 && answers.q", Some(true)), Tri::True);
        assert_eq!(run("person.age > 3 || answers.q", None), Tri::True);
        assert_eq!(run("!answers.q", None), Tri::Unknown);
    }

    #[test]
    fn rules_expr_errors_have_positions() {
        let e = |src| compile(src, true, &Qs).unwrap_err();
        assert_eq!(e("person.age && true").column, 1);
        assert_eq!(e("person.agee > 3").column, 1);
        assert_eq!(e("person.age > 3 && person.nope").column, 19);
        assert_eq!(e("person.insurance == \"kokhuo\"").column, 21);
        assert_eq!(
            e("person.age").message,
            "a rule condition must be bool, found int"
        );
        assert_eq!(e("person.age > ").column, 14);
        assert_eq!(e("answers.unknown").column, 1);
        assert!(compile("person.age > 3", false, &Qs).is_err());
        assert_eq!(e("\"長女\" == person.relationship)").column, 28);
    }
}
