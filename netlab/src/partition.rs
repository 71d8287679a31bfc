//! Which node's packets each node drops, and the nft ruleset that says so inside a namespace.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::Node;

/// The blocked `(from, to)` pairs: nothing `from` sends reaches `to`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Partitions {
    blocked: BTreeSet<(Node, Node)>,
}

impl Partitions {
    /// Blocks `from → to`; false when it already was.
    pub(crate) fn block(&mut self, from: Node, to: Node) -> bool {
        from != to && self.blocked.insert((from, to))
    }

    /// Drops every pair involving `node`; the receivers whose rules changed.
    pub(crate) fn forget(&mut self, node: Node) -> BTreeSet<Node> {
        let gone: Vec<(Node, Node)> = self.blocked.iter().copied().filter(|(f, t)| *f == node || *t == node).collect();
        self.blocked.retain(|p| !gone.contains(p));
        gone.into_iter().map(|(_, to)| to).filter(|t| *t != node).collect()
    }

    pub(crate) fn clear(&mut self) {
        self.blocked.clear();
    }

    pub(crate) fn pairs(&self) -> impl Iterator<Item = (Node, Node)> + '_ {
        self.blocked.iter().copied()
    }

    /// The nodes whose packets `to` drops.
    pub(crate) fn sources_of(&self, to: Node) -> impl Iterator<Item = Node> + '_ {
        self.blocked.iter().filter(move |(_, t)| *t == to).map(|(f, _)| *f)
    }
}

/// The whole `inet netlab` table of one namespace, replaced atomically: declaring the table
/// first makes the delete valid whether or not it existed.
pub(crate) fn ruleset(drop_from: &[Ipv4Addr]) -> String {
    let mut s = String::from("table inet netlab {}\ndelete table inet netlab\ntable inet netlab {\n");
    s.push_str("  chain input {\n    type filter hook input priority 0; policy accept;\n");
    if !drop_from.is_empty() {
        let list: Vec<String> = drop_from.iter().map(Ipv4Addr::to_string).collect();
        let _ = writeln!(s, "    ip saddr {{ {} }} drop", list.join(", "));
    }
    s.push_str("  }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_blocks_are_kept_per_receiver() {
        let mut p = Partitions::default();
        assert!(p.block(Node(0), Node(1)));
        assert!(!p.block(Node(0), Node(1)), "already blocked");
        assert!(!p.block(Node(2), Node(2)), "a node never drops its own packets");
        assert_eq!(p.sources_of(Node(1)).collect::<Vec<_>>(), vec![Node(0)]);
        assert_eq!(p.sources_of(Node(0)).count(), 0, "one way only");
    }

    #[test]
    fn ruleset_drops_listed_sources_and_nothing_without_any() {
        let rules = ruleset(&[Ipv4Addr::new(198, 18, 3, 2), Ipv4Addr::new(198, 18, 3, 4)]);
        assert!(rules.contains("ip saddr { 198.18.3.2, 198.18.3.4 } drop"), "{rules}");
        assert!(!ruleset(&[]).contains("drop"));
    }
}
