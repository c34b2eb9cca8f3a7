//! A size check of untrusted Avro datums before apache-avro decodes them.
//!
//! apache-avro 0.21 reserves room for a whole array or map block as soon as it has read the
//! block count, before it reads a single item: a 45-byte record claiming 4×10⁸ map entries asks
//! for 43 GB and the allocator aborts the process, which no `Result` can catch. [`Bounds`]
//! walks the datum first, building nothing, and refuses what the remaining bytes cannot hold —
//! the limits Java Avro applies since 1.11.3. After a datum passes, apache-avro allocates in
//! proportion to its length.
//!
//! Any complete encoding within the limits below passes. Beyond what apache-avro fails on
//! itself, the walk refuses only what the limits are for: a block count or string length past
//! the bytes left (apache-avro would allocate first, then read what is missing as nulls), a
//! block byte size past the end, more than [`MAX_ZERO_WIDTH_ITEMS`] items that encode to no
//! bytes, nesting deeper than [`MAX_DEPTH`]. A union index or boolean cut off by the end of
//! the datum passes, as apache-avro reads it as null. Trailing bytes are the caller's concern.

use apache_avro::schema::{Name, Namespace, ResolvedSchema};
use apache_avro::Schema;
use std::collections::HashMap;
use std::fmt::Display;

/// Arrays, maps, records and unions a datum may nest. A recursive schema would otherwise let
/// a datum nest as deep as it is long, and apache-avro recurses once per level.
const MAX_DEPTH: usize = 64;

/// Items of types that encode to no bytes at all (null, records of nulls, `fixed` of size 0)
/// one datum may claim in total. Their count cannot be checked against the bytes left, yet
/// apache-avro builds a value for each, so they draw on one budget per datum.
const MAX_ZERO_WIDTH_ITEMS: u64 = 1 << 20;

/// A schema compiled for the walk: names resolved to node indices and each node's fewest
/// encoded bytes known, so checking a datum neither looks names up nor allocates.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    nodes: Vec<Node>,
    /// Fewest bytes each node encodes to, indexed like `nodes` (a lower bound for recursive
    /// types, which is all the block check needs).
    min_size: Vec<u64>,
    root: usize,
}

/// How one schema type is laid out on the wire; logical types are folded into the encoding
/// they annotate.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    /// A zig-zag varint that must fit 32 bits (int, date, time-millis).
    Int,
    /// A zig-zag varint (long and the long-based time and timestamp types).
    Long,
    /// A fixed number of bytes (float, double, duration, fixed, decimal on fixed).
    Fixed {
        what: &'static str,
        size: u64,
    },
    /// A length, then that many bytes (string, bytes, uuid, decimal on bytes, big-decimal).
    Bytes(&'static str),
    Enum {
        symbols: u64,
    },
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Vec<usize>),
    /// A named reference the schema does not define; apache-avro fails on it too.
    Unresolved(String),
}

impl Bounds {
    /// Compiles `schema`. Never fails: a name that does not resolve becomes a node that
    /// refuses every datum reaching it.
    pub(crate) fn new(schema: &Schema) -> Self {
        let names = ResolvedSchema::try_from(schema)
            .map(|r| r.get_names().clone())
            .unwrap_or_default();
        let mut compiler = Compiler {
            names,
            compiled: HashMap::new(),
            nodes: Vec::new(),
        };
        let root = compiler.compile(schema, &None);
        let min_size = min_sizes(&compiler.nodes);
        Self {
            nodes: compiler.nodes,
            min_size,
            root,
        }
    }

    /// Walks `datum` and says why it must not be decoded; the message names counts and
    /// lengths, never payload bytes.
    pub(crate) fn check(&self, datum: &[u8]) -> Result<(), String> {
        self.length(datum).map(drop)
    }

    /// Walks `datum` like [`Bounds::check`] and returns how many of its bytes the value
    /// takes (the rest trail it).
    pub(crate) fn length(&self, datum: &[u8]) -> Result<usize, String> {
        let mut walk = Walk {
            plan: self,
            datum,
            pos: 0,
            zero_width_left: MAX_ZERO_WIDTH_ITEMS,
        };
        walk.node(self.root, 0)?;
        Ok(walk.pos)
    }
}

struct Compiler<'s> {
    names: HashMap<Name, &'s Schema>,
    compiled: HashMap<Name, usize>,
    nodes: Vec<Node>,
}

impl<'s> Compiler<'s> {
    /// Compiles `schema` met in namespace `ns` (named types qualify their names with it, as
    /// apache-avro's decoder does) and returns its node index.
    fn compile(&mut self, schema: &'s Schema, ns: &Namespace) -> usize {
        let fixed = |what, size: usize| Node::Fixed {
            what,
            size: size as u64,
        };
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Node::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Node::Long,
            Schema::Float => fixed("float", 4),
            Schema::Double => fixed("double", 8),
            Schema::Duration => fixed("duration", 12),
            Schema::String => Node::Bytes("string"),
            Schema::Bytes | Schema::BigDecimal => Node::Bytes("bytes"),
            Schema::Uuid => Node::Bytes("uuid"),
            Schema::Decimal(d) => return self.compile(&d.inner, ns),
            Schema::Array(a) => Node::Array(self.compile(&a.items, ns)),
            Schema::Map(m) => Node::Map(self.compile(&m.types, ns)),
            Schema::Union(u) => {
                Node::Union(u.variants().iter().map(|v| self.compile(v, ns)).collect())
            }
            Schema::Record(r) => {
                return self.named(&r.name, ns, |c, inner| {
                    Node::Record(
                        r.fields
                            .iter()
                            .map(|f| c.compile(&f.schema, inner))
                            .collect(),
                    )
                })
            }
            Schema::Enum(e) => {
                let symbols = e.symbols.len() as u64;
                return self.named(&e.name, ns, |_, _| Node::Enum { symbols });
            }
            Schema::Fixed(f) => return self.named(&f.name, ns, |_, _| fixed("fixed", f.size)),
            Schema::Ref { name } => return self.reference(name, ns),
        };
        self.push(node)
    }

    /// Registers a named type before compiling its body, so a recursive reference inside the
    /// body points back at it instead of compiling it again.
    fn named(
        &mut self,
        name: &Name,
        ns: &Namespace,
        body: impl FnOnce(&mut Self, &Namespace) -> Node,
    ) -> usize {
        let full = name.fully_qualified_name(ns);
        if let Some(&index) = self.compiled.get(&full) {
            return index;
        }
        let index = self.push(Node::Null);
        self.compiled.insert(full.clone(), index);
        self.nodes[index] = body(self, &full.namespace);
        index
    }

    fn reference(&mut self, name: &Name, ns: &Namespace) -> usize {
        let full = name.fully_qualified_name(ns);
        if let Some(&index) = self.compiled.get(&full) {
            return index;
        }
        match self.names.get(&full).copied() {
            Some(schema) => self.compile(schema, &full.namespace),
            None => self.push(Node::Unresolved(full.to_string())),
        }
    }

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

#[derive(Clone, Copy)]
enum Min {
    Unknown,
    Visiting,
    Known(u64),
}

fn min_sizes(nodes: &[Node]) -> Vec<u64> {
    let mut memo = vec![Min::Unknown; nodes.len()];
    (0..nodes.len())
        .map(|i| min_size(nodes, i, &mut memo))
        .collect()
}

/// A node met again while its own size is being worked out counts as 0 bytes: the result
/// stays a lower bound, and a type cannot contain itself without a union or collection in
/// between anyway.
fn min_size(nodes: &[Node], i: usize, memo: &mut [Min]) -> u64 {
    match memo[i] {
        Min::Known(n) => return n,
        Min::Visiting => return 0,
        Min::Unknown => memo[i] = Min::Visiting,
    }
    let n = match &nodes[i] {
        Node::Null | Node::Unresolved(_) => 0,
        Node::Fixed { size, .. } => *size,
        Node::Boolean
        | Node::Int
        | Node::Long
        | Node::Bytes(_)
        | Node::Enum { .. }
        | Node::Array(_)
        | Node::Map(_) => 1,
        Node::Union(variants) => {
            let smallest = variants.iter().map(|&v| min_size(nodes, v, memo)).min();
            smallest.unwrap_or(0).saturating_add(1)
        }
        Node::Record(fields) => fields
            .iter()
            .fold(0u64, |sum, &f| sum.saturating_add(min_size(nodes, f, memo))),
    };
    memo[i] = Min::Known(n);
    n
}

/// Why a varint could not be read.
enum Short {
    End,
    TooLong,
}

impl Short {
    fn at(self, what: impl Display) -> String {
        match self {
            Short::End => format!("{what} runs past the end of the datum"),
            Short::TooLong => format!("{what} is a varint longer than 10 bytes"),
        }
    }
}

struct Walk<'a> {
    plan: &'a Bounds,
    datum: &'a [u8],
    pos: usize,
    zero_width_left: u64,
}

impl Walk<'_> {
    fn node(&mut self, i: usize, depth: usize) -> Result<(), String> {
        let plan = self.plan;
        match &plan.nodes[i] {
            Node::Null => Ok(()),
            Node::Boolean => self.boolean(),
            Node::Int => self.int("int").map(drop),
            Node::Long => self.long("long").map(drop),
            Node::Fixed { what, size } => self.skip(what, *size),
            Node::Bytes(what) => self.bytes(what),
            Node::Enum { symbols } => self.enum_index(*symbols),
            Node::Array(items) => self.blocks("array", *items, depth),
            Node::Map(values) => self.blocks("map", *values, depth),
            Node::Union(variants) => self.union(variants, depth),
            Node::Record(fields) => {
                let depth = enter(depth)?;
                fields.iter().try_for_each(|&f| self.node(f, depth))
            }
            Node::Unresolved(name) => Err(format!("schema name {name} does not resolve")),
        }
    }

    fn left(&self) -> usize {
        self.datum.len() - self.pos
    }

    fn zigzag(&mut self) -> Result<i64, Short> {
        let mut z = 0u64;
        for shift in (0..64).step_by(7) {
            let &b = self.datum.get(self.pos).ok_or(Short::End)?;
            self.pos += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(if z & 1 == 0 {
                    (z >> 1) as i64
                } else {
                    !(z >> 1) as i64
                });
            }
        }
        Err(Short::TooLong)
    }

    fn long(&mut self, what: impl Display) -> Result<i64, String> {
        self.zigzag().map_err(|e| e.at(what))
    }

    fn int(&mut self, what: &str) -> Result<i32, String> {
        let n = self.long(what)?;
        i32::try_from(n).map_err(|_| format!("{what} {n} does not fit 32 bits"))
    }

    /// apache-avro reads a boolean cut off by the end of the datum as null; so does this.
    fn boolean(&mut self) -> Result<(), String> {
        match self.datum.get(self.pos) {
            None => Ok(()),
            Some(0 | 1) => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err("boolean byte is neither 0 nor 1".into()),
        }
    }

    fn skip(&mut self, what: &str, size: u64) -> Result<(), String> {
        let left = self.left();
        match usize::try_from(size) {
            Ok(size) if size <= left => {
                self.pos += size;
                Ok(())
            }
            _ => Err(format!(
                "{what} of {size} bytes exceeds the {left} bytes left"
            )),
        }
    }

    fn bytes(&mut self, what: &str) -> Result<(), String> {
        let len = self.long(format_args!("{what} length"))?;
        let size = u64::try_from(len).map_err(|_| format!("{what} length {len} is negative"))?;
        let left = self.left();
        if size > left as u64 {
            return Err(format!("{what} length {len} exceeds the {left} bytes left"));
        }
        self.pos += size as usize;
        Ok(())
    }

    fn enum_index(&mut self, symbols: u64) -> Result<(), String> {
        let index = self.int("enum index")?;
        match u64::try_from(index) {
            Ok(i) if i < symbols => Ok(()),
            _ => Err(format!(
                "enum index {index} is not one of the {symbols} symbols"
            )),
        }
    }

    fn union(&mut self, variants: &[usize], depth: usize) -> Result<(), String> {
        let depth = enter(depth)?;
        let index = match self.zigzag() {
            Ok(index) => index,
            // apache-avro reads a union cut off by the end of the datum as null, which lets a
            // record that stops before its trailing optional fields decode; agree with it.
            Err(Short::End) => return Ok(()),
            Err(e) => return Err(e.at("union index")),
        };
        let variant = usize::try_from(index).ok().and_then(|i| variants.get(i));
        match variant {
            Some(&v) => self.node(v, depth),
            None => Err(format!(
                "union index {index} is not one of the {} branches",
                variants.len()
            )),
        }
    }

    /// Array items or map entries (a string key, then the value), block by block; each
    /// block's count is checked before any of its items is read.
    fn blocks(&mut self, what: &'static str, item: usize, depth: usize) -> Result<(), String> {
        let depth = enter(depth)?;
        let keyed = what == "map";
        let min = self.plan.min_size[item] + u64::from(keyed);
        loop {
            let count = self.block_count(what)?;
            if count == 0 {
                return Ok(());
            }
            self.admit(what, count, min)?;
            for _ in 0..count {
                if keyed {
                    self.bytes("map key")?;
                }
                self.node(item, depth)?;
            }
        }
    }

    /// A negative count is followed by the block's size in bytes (Avro spec, "Complex Types
    /// Encoding"); apache-avro skips it, the walk only checks it fits.
    fn block_count(&mut self, what: &str) -> Result<u64, String> {
        let count = self.long(format_args!("{what} block count"))?;
        if count >= 0 {
            return Ok(count as u64);
        }
        let size = self.long(format_args!("{what} block size"))?;
        let left = self.left();
        if u64::try_from(size).map_or(true, |s| s > left as u64) {
            return Err(format!(
                "{what} block size {size} does not fit the {left} bytes left"
            ));
        }
        Ok(count.unsigned_abs())
    }

    fn admit(&mut self, what: &str, count: u64, min: u64) -> Result<(), String> {
        if min == 0 {
            let budget = self.zero_width_left;
            if count > budget {
                return Err(format!(
                    "{what} block count {count} exceeds the {budget} zero-width items left"
                ));
            }
            self.zero_width_left -= count;
            return Ok(());
        }
        let left = self.left();
        if count > left as u64 / min {
            let each = match min {
                1 => String::new(),
                _ => format!(" for items of at least {min} bytes"),
            };
            return Err(format!(
                "{what} block count {count} exceeds the {left} bytes left{each}"
            ));
        }
        Ok(())
    }
}

fn enter(depth: usize) -> Result<usize, String> {
    if depth >= MAX_DEPTH {
        return Err(format!("datum nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(depth + 1)
}

#[cfg(test)]
mod tests;
