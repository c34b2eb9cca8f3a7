//! What one expression may cost. Rules come from people and from pull requests, and a rule is
//! evaluated for every signal its event types match: an expression of eight nested `.all(…)`
//! comprehensions (278 bytes) took 18 s to `check` and stalled the pipeline once reloaded,
//! and a 300,000-term `||` chain took 2.9 GB. So the source length is bounded before it is
//! parsed, and the parsed expression's size, depth and comprehension nesting after: an
//! expression beyond them is a load error that says which bound and how to stay within it.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// Longest condition or parameter expression (bytes).
pub const MAX_SOURCE_BYTES: usize = 4096;
/// Most nodes in one expression (a long `in [...]` list counts each element).
pub const MAX_NODES: usize = 1000;
/// Deepest nesting of calls, selections and literals.
pub const MAX_DEPTH: usize = 32;
/// Most comprehensions (`all`, `exists`, `map`, `filter`) inside one another: each level
/// multiplies the work by the size of the list it runs over, and a signal's lists are as long
/// as its sender makes them (up to `input.max_message_bytes`). One level keeps a rule's work
/// linear in the size of the signal; the interpreter cannot be interrupted mid-expression, so
/// this bound is what keeps a hostile signal from stalling a partition.
pub const MAX_COMPREHENSION_NESTING: usize = 1;

/// Rejects a source too long, or bracketed too deep, to parse: the parser recurses per
/// bracket, and a few thousand nested ones overflow its stack (a crash at `check`, or in the
/// running daemon on reload).
pub fn check_source(source: &str) -> Result<(), String> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "expression is {} bytes; at most {MAX_SOURCE_BYTES} (split the rule, or match on event types instead)",
            source.len()
        ));
    }
    let depth = bracket_depth(source);
    if depth > MAX_DEPTH {
        return Err(format!(
            "expression nests {depth} brackets deep; at most {MAX_DEPTH}"
        ));
    }
    Ok(())
}

/// Deepest nesting of `(`, `[` and `{` outside string literals.
fn bracket_depth(source: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Stack for the parser: it recurses deeply per bracket (about 180 KiB a level in a debug
/// build), so it runs on a thread of its own with room for [`MAX_DEPTH`] levels, not on
/// whatever thread loads the rules. The memory is reserved, and touched only as used.
const PARSER_STACK: usize = 64 << 20;

/// Parses `source` with [`PARSER_STACK`] of stack.
pub fn parse(source: &str) -> Result<cel::Program, String> {
    let env = super::condition::env();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("cel-parse".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(s, || env.compile(source).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot start the parser: {e}"))?
            .join()
            .map_err(|_| "the parser failed".to_string())?
    })
}

/// Rejects a parsed expression beyond the node, depth or comprehension-nesting bound.
pub fn check(e: &IdedExpr) -> Result<(), String> {
    let mut cost = Cost::default();
    cost.walk(e, 1, 0);
    if cost.nodes > MAX_NODES {
        return Err(format!(
            "expression has {} nodes; at most {MAX_NODES}",
            cost.nodes
        ));
    }
    if cost.depth > MAX_DEPTH {
        return Err(format!(
            "expression nests {} deep; at most {MAX_DEPTH}",
            cost.depth
        ));
    }
    if cost.comprehensions > MAX_COMPREHENSION_NESTING {
        return Err(format!(
            "{} comprehensions (all/exists/map/filter) inside one another; at most {MAX_COMPREHENSION_NESTING}: each level multiplies the work per signal",
            cost.comprehensions
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Cost {
    nodes: usize,
    depth: usize,
    comprehensions: usize,
}

impl Cost {
    fn walk(&mut self, e: &IdedExpr, depth: usize, nested: usize) {
        self.nodes += 1;
        self.depth = self.depth.max(depth);
        // Past the bounds the answer is already "too costly": stop walking.
        if self.nodes > MAX_NODES || depth > MAX_DEPTH {
            return;
        }
        let d = depth + 1;
        match &e.expr {
            Expr::Call(c) => {
                c.target.iter().for_each(|t| self.walk(t, d, nested));
                c.args.iter().for_each(|a| self.walk(a, d, nested));
            }
            Expr::Comprehension(c) => {
                let inner = nested + 1;
                self.comprehensions = self.comprehensions.max(inner);
                self.walk(&c.iter_range, d, nested);
                for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(part, d, inner);
                }
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.walk(x, d, nested)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            self.walk(&m.key, d, nested);
                            self.walk(&m.value, d, nested);
                        }
                        EntryExpr::StructField(f) => self.walk(&f.value, d, nested),
                    }
                }
            }
            Expr::Select(s) => self.walk(&s.operand, d, nested),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::Condition;

    #[test]
    fn costly_expressions_are_refused_with_the_bound_they_pass() {
        // (Iteration variables take the names a condition may use.)
        let nested =
            "[1,2].all(now, [1,2].all(window, [1,2].all(subject, now + window + subject > 0)))";
        let e = Condition::compile(nested).unwrap_err();
        assert!(e.contains("3 comprehensions"), "{e}");
        let e = Condition::compile("[1,2].all(now, [1,2].exists(window, now == window))");
        assert!(e.unwrap_err().contains("2 comprehensions"));
        let two = Condition::compile("[1,2].all(now, now > 0) && [3].exists(window, window == 3)");
        assert!(two.is_ok(), "{:?}", two.err());

        let chain = vec![r#"signal.id == "x""#; 600].join(" || ");
        let e = Condition::compile(&chain).unwrap_err();
        assert!(e.contains("bytes; at most 4096"), "{e}");

        let many = format!(
            "signal.id in [{}]",
            (0..1200)
                .map(|i| (i % 10).to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let e = Condition::compile(&many).unwrap_err();
        assert!(e.contains("nodes; at most 1000"), "{e}");

        let deep = format!("{}true{}", "!(".repeat(40), ")".repeat(40));
        let e = Condition::compile(&deep).unwrap_err();
        assert!(e.contains("40 brackets deep; at most 32"), "{e}");
        // Thousands deep would overflow the parser's stack: refused before parsing.
        let bomb = format!("{}1{}", "[".repeat(2000), "]".repeat(2000));
        let e = Condition::compile(&bomb).unwrap_err();
        assert!(e.contains("2000 brackets deep"), "{e}");
        // Brackets inside strings are text.
        assert!(Condition::compile(&format!("signal.id == \"{}\"", "(".repeat(100))).is_ok());
        // As deep as allowed parses, whatever the caller's stack (a test thread has 2 MiB).
        let deep_calls = format!("{}signal.id{}", "size(".repeat(25), ")".repeat(25));
        let ok = Condition::compile(&format!("{deep_calls} > 0"));
        assert!(ok.is_ok(), "{:?}", ok.err());
    }
}
