//! Maps a config field path (`routes[3].auth.scopes`) to its line and column in the YAML source.
//!
//! serde_yaml locates the errors it raises itself, but the errors found later, while compiling
//! (an unknown upstream, an unreadable certificate), only know their field path. This walks the
//! YAML event stream once and remembers where each key and sequence item starts.

use saphyr_parser::{Event, Parser};
use std::collections::HashMap;

/// Line and column, both 1-based.
pub type Spot = (usize, usize);

#[derive(Default)]
pub struct Locator {
    spots: HashMap<String, Spot>,
    /// Mapping keys given twice in one mapping: (path, where, where first). serde fills maps
    /// (`upstreams`, `authenticators`) with the last one silently, so a copy-pasted block would
    /// quietly replace another.
    pub duplicates: Vec<(String, Spot, Spot)>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        /// This mapping's keys so far, with where each sits.
        seen: HashMap<String, Spot>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

impl Locator {
    /// Builds the map; a document that does not parse yields an empty locator (serde_yaml reports
    /// the syntax error with its own position).
    pub fn new(src: &str) -> Locator {
        let mut spots = HashMap::new();
        let mut duplicates = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for ev in Parser::new_from_str(src) {
            let Ok((ev, span)) = ev else { break };
            let at = (span.start.line(), span.start.col() + 1);
            // Where a new node sits: Some(path) when it is a value, None when it is a mapping key.
            let node_path = |stack: &mut Vec<Frame>, spots: &mut HashMap<String, Spot>| match stack
                .last_mut()
            {
                None => Some(String::new()),
                Some(Frame::Map { path, key, .. }) => key.take().map(|k| join(path, &k)),
                Some(Frame::Seq { path, index }) => {
                    let p = format!("{path}[{index}]");
                    *index += 1;
                    spots.entry(p.clone()).or_insert(at);
                    Some(p)
                }
            };
            match ev {
                Event::Scalar(value, ..) if node_path(&mut stack, &mut spots).is_none() => {
                    // A mapping key: remember where it is and that the next node is its value.
                    if let Some(Frame::Map { path, key, seen }) = stack.last_mut() {
                        let full = join(path, &value);
                        match seen.get(value.as_ref()) {
                            Some(first) => duplicates.push((full, at, *first)),
                            None => {
                                seen.insert(value.to_string(), at);
                                spots.entry(full).or_insert(at);
                            }
                        }
                        *key = Some(value.into_owned());
                    }
                }
                Event::Alias(_) => {
                    node_path(&mut stack, &mut spots);
                }
                Event::MappingStart(..) => {
                    let path = node_path(&mut stack, &mut spots).unwrap_or_default();
                    stack.push(Frame::Map {
                        path,
                        key: None,
                        seen: HashMap::new(),
                    });
                }
                Event::SequenceStart(..) => {
                    let path = node_path(&mut stack, &mut spots).unwrap_or_default();
                    stack.push(Frame::Seq { path, index: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Locator { spots, duplicates }
    }

    /// The deepest field path that starts at `at` (line, column), if any.
    pub fn path_at(&self, at: Spot) -> Option<&str> {
        self.spots
            .iter()
            .filter(|(_, spot)| **spot == at)
            .map(|(p, _)| p.as_str())
            .max_by_key(|p| p.len())
    }

    /// Line (1-based) and column (1-based) of `path`, or of its nearest located parent.
    pub fn find(&self, path: &str) -> Option<Spot> {
        let mut p = path;
        loop {
            if let Some(at) = self.spots.get(p) {
                return Some(*at);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let src =
            "a: 1\nroutes:\n  - name: x\n    upstream: u\n  - name: y\n    auth: { scopes: [s] }\n";
        let l = Locator::new(src);
        assert_eq!(l.find("a"), Some((1, 1)));
        assert_eq!(l.find("routes[0].upstream"), Some((4, 5)));
        assert_eq!(l.find("routes[1]"), Some((5, 5)));
        assert_eq!(l.find("routes[1].auth.scopes"), Some((6, 13)));
        assert_eq!(l.find("routes[1].auth.scopes[0]"), Some((6, 22)));
        // unknown leaf: falls back to the parent
        assert_eq!(l.find("routes[1].nothing"), Some((5, 5)));
        assert_eq!(l.find("zzz"), None);
        assert!(l.duplicates.is_empty());
    }

    #[test]
    fn finds_duplicate_keys() {
        let l = Locator::new("upstreams:\n  u: { url: a }\n  v: { url: b }\n  u: { url: c }\nroutes:\n  - { u: 1 }\n  - { u: 2 }\n");
        assert_eq!(
            l.duplicates,
            vec![("upstreams.u".to_owned(), (4, 3), (2, 3))]
        );
    }
}
