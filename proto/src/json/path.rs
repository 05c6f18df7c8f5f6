//! A cheap, stack-allocated JSON path used to name the field that failed to decode.
//! Rendered only when an error is built, so the happy path never allocates for it.

use std::fmt;

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

/// Where in the document a decoder is: a linked list of segments living on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    pub(crate) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.segment {
            Segment::Root => Ok(()),
            Segment::Field(name) if self.parent.is_some_and(|p| !matches!(p.segment, Segment::Root)) => {
                write!(f, ".{name}")
            }
            Segment::Field(name) => write!(f, "{name}"),
            Segment::Index(index) => write!(f, "[{index}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_indexes() {
        let root = Path::ROOT;
        let a = root.field("resourceSpans");
        let b = a.index(3);
        let c = b.field("spans");
        let d = c.index(0);
        let e = d.field("traceId");
        assert_eq!(e.to_string(), "resourceSpans[3].spans[0].traceId");
        assert_eq!(Path::ROOT.to_string(), "");
    }
}
