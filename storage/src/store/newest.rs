//! The newest documents a query matches in one full-text index (by the `time` fast field).
//!
//! Segments are visited newest first (by the largest time they hold) and the visit stops at the
//! first whose newest document is no newer than the `want`-th found so far. Records arrive in
//! about time order, so an index's segments cover mostly separate stretches of its hour, and a
//! query matching much of the hour reads the matches of one or two segments instead of sorting
//! every match by time (seconds at 100M records). A rare query still visits every segment, but has
//! few matches to read.
//!
//! A query with a phrase is read in two steps. The documents holding every word of each phrase
//! (postings only: no positions) are its candidates; positions are checked only on the newest
//! candidates, newest first, in batches, until `want` of them match. tantivy's phrase scorer
//! checks positions on every document holding the words, and a segment has to be read whole to
//! find its newest hits (its documents are not in time order): on a soak's store, where nearly
//! every log line holds "POST" and "/pay", the phrase `"POST /pay"` spent 0.7–0.8 s reading
//! positions (`perf`: 56% in position reading) to return 100 records.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tantivy::query::{BooleanQuery, EnableScoring, Occur, PhraseQuery, Query, Scorer, TermQuery, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocId, DocSet, Searcher, SeekDangerResult, SegmentReader};

use super::StorageError;

/// Builds, for one segment, a test of its documents (by id and time) that a search keeps.
pub(crate) type SegmentFilter<'a> =
    dyn Fn(&SegmentReader) -> Result<Box<dyn Fn(DocId, u64) -> bool>, StorageError> + 'a;

/// Candidates of a phrase query one pass over a segment holds at most (16 bytes each): past
/// it the older half is dropped, and read again by another pass only if the newer did not give
/// enough matches.
const MAX_CANDIDATES: usize = 1 << 20;

/// The `want` newest documents `query` matches (and `keep` admits), newest first.
pub(crate) fn newest(
    searcher: &Searcher,
    query: &dyn Query,
    want: usize,
    keep: Option<&SegmentFilter<'_>>,
) -> Result<Vec<(u64, DocAddress)>, StorageError> {
    newest_within(searcher, query, want, keep, MAX_CANDIDATES)
}

/// [`newest`], keeping at most `max_candidates` of a segment's candidates at a time.
fn newest_within(
    searcher: &Searcher,
    query: &dyn Query,
    want: usize,
    keep: Option<&SegmentFilter<'_>>,
    max_candidates: usize,
) -> Result<Vec<(u64, DocAddress)>, StorageError> {
    if want == 0 {
        return Ok(Vec::new());
    }
    let scoring = EnableScoring::disabled_from_searcher(searcher);
    let (weight, exact) = match loosen(query) {
        Some(loose) => (loose.weight(scoring)?, Some(Plan::of(query, scoring)?)),
        None => (query.weight(scoring)?, None),
    };
    let mut segments = Vec::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let time = segment.fast_fields().u64("time")?;
        segments.push((time.max_value(), ord as u32, time));
    }
    segments.sort_by_key(|(newest, ..)| Reverse(*newest));
    let mut top = Top {
        want,
        heap: BinaryHeap::with_capacity(want + 1),
    };
    for (segment_newest, ord, time) in segments {
        if !top.wants(segment_newest) {
            break;
        }
        let segment = searcher.segment_reader(ord);
        let alive = segment.alive_bitset();
        let admits = keep.map(|keep| keep(segment)).transpose()?;
        let take = |doc: DocId| -> Option<u64> {
            if alive.is_some_and(|alive| alive.is_deleted(doc)) {
                return None;
            }
            let t = time.first(doc).unwrap_or(0);
            admits.as_ref().is_none_or(|admits| admits(doc, t)).then_some(t)
        };
        match &exact {
            None => weight.for_each_no_score(segment, &mut |docs| {
                for &doc in docs {
                    if let Some(t) = take(doc) {
                        top.offer(t, ord, doc);
                    }
                }
            })?,
            Some(plan) => checked(segment, ord, &*weight, plan, &take, max_candidates, &mut top)?,
        }
    }
    let mut top: Vec<(u64, DocAddress)> = top
        .heap
        .into_iter()
        .map(|Reverse((t, ord, doc))| (t, DocAddress::new(ord, doc)))
        .collect();
    top.sort_by(|a, b| b.cmp(a));
    Ok(top)
}

/// The newest documents found so far: the oldest of them on top.
struct Top {
    want: usize,
    heap: BinaryHeap<Reverse<(u64, u32, DocId)>>,
}

impl Top {
    /// The time a document must be newer than to get in, once `want` are found.
    fn floor(&self) -> Option<u64> {
        if self.heap.len() < self.want {
            return None;
        }
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    fn wants(&self, time: u64) -> bool {
        self.floor().is_none_or(|floor| time > floor)
    }

    fn offer(&mut self, time: u64, ord: u32, doc: DocId) {
        if self.heap.len() < self.want {
            self.heap.push(Reverse((time, ord, doc)));
        } else if self.wants(time) {
            self.heap.pop();
            self.heap.push(Reverse((time, ord, doc)));
        }
    }
}

/// One segment's matches of a query with phrases: candidates from `loose` (which matches every
/// document the query does, and more), checked against `plan` newest first.
fn checked(
    segment: &SegmentReader,
    ord: u32,
    loose: &dyn Weight,
    plan: &Plan,
    take: &dyn Fn(DocId) -> Option<u64>,
    max_candidates: usize,
    top: &mut Top,
) -> Result<(), StorageError> {
    // Only candidates below this (time, doc): a pass that dropped older candidates is followed by
    // one that reads below the oldest it kept.
    let mut ceiling: Option<(u64, DocId)> = None;
    // Candidates a pass keeps: enough for the common case (most candidates match) in one pass and
    // one sort of a few thousand; eight times more each pass after that.
    let most = (max_candidates / 2).max(1);
    let mut keep = top.want.saturating_mul(4).max(4096).min(most);
    loop {
        let mut floor: Option<(u64, DocId)> = top.floor().map(|t| (t, DocId::MAX));
        let mut dropped = false;
        let mut candidates: Vec<(u64, DocId)> = Vec::with_capacity(2 * keep);
        loose.for_each_no_score(segment, &mut |docs| {
            for &doc in docs {
                let Some(t) = take(doc) else { continue };
                let key = (t, doc);
                if floor.is_some_and(|f| key <= f) || ceiling.is_some_and(|c| key >= c) {
                    continue;
                }
                candidates.push(key);
                if candidates.len() >= 2 * keep {
                    candidates.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
                    candidates.truncate(keep);
                    // The oldest kept: older candidates wait for the next pass.
                    floor = Some(candidates[keep - 1]);
                    dropped = true;
                }
            }
        })?;
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let oldest_kept = candidates.last().copied();
        // Newest first, in batches growing twofold; a batch is checked by ascending doc id, as
        // postings are read.
        let mut batch = top.want.max(64);
        let mut at = 0;
        while at < candidates.len() && top.wants(candidates[at].0) {
            let end = (at + batch).min(candidates.len());
            let mut chunk = candidates[at..end].to_vec();
            chunk.sort_unstable_by_key(|&(_, doc)| doc);
            let mut check = plan.check(segment);
            for (t, doc) in chunk {
                if top.wants(t) && check.matches(doc)? {
                    top.offer(t, ord, doc);
                }
            }
            at = end;
            batch = batch.saturating_mul(2);
        }
        // Stopped before the end: every candidate left, and every one dropped, is too old.
        let stopped = at < candidates.len();
        match oldest_kept {
            Some(oldest) if dropped && !stopped && top.wants(oldest.0) => {
                ceiling = Some(oldest);
                keep = keep.saturating_mul(8).min(most);
            }
            _ => return Ok(()),
        }
    }
}

/// A query that matches every document `query` matches, with no phrase left to check outside a
/// negation: each phrase becomes the conjunction of its words, and a negated clause holding a
/// phrase is left out. `None`: `query` has no phrase.
fn loosen(query: &dyn Query) -> Option<Box<dyn Query>> {
    if let Some(phrase) = query.downcast_ref::<PhraseQuery>() {
        let words = phrase
            .phrase_terms()
            .into_iter()
            .map(|term| -> (Occur, Box<dyn Query>) {
                (Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic)))
            })
            .collect();
        return Some(Box::new(BooleanQuery::new(words)));
    }
    let boolean = query.downcast_ref::<BooleanQuery>()?;
    let mut changed = false;
    let mut clauses = Vec::with_capacity(boolean.clauses().len());
    for (occur, clause) in boolean.clauses() {
        if *occur == Occur::MustNot {
            if has_phrase(clause.as_ref()) {
                changed = true;
            } else {
                clauses.push((*occur, clause.box_clone()));
            }
            continue;
        }
        match loosen(clause.as_ref()) {
            Some(loose) => {
                changed = true;
                clauses.push((*occur, loose));
            }
            None => clauses.push((*occur, clause.box_clone())),
        }
    }
    changed.then(|| -> Box<dyn Query> {
        Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses,
            boolean.get_minimum_number_should_match(),
        ))
    })
}

fn has_phrase(query: &dyn Query) -> bool {
    query.is::<PhraseQuery>()
        || query
            .downcast_ref::<BooleanQuery>()
            .is_some_and(|b| b.clauses().iter().any(|(_, clause)| has_phrase(clause.as_ref())))
}

/// A query as a tree of boolean clauses over leaf weights, to tell whether given documents match
/// without reading the others: the same answer as the query's own scorer, as tantivy's
/// `BooleanWeight` gives it (every `Must`; at least the minimum number of `Should`, one if there
/// is no `Must`; no `MustNot`; nothing without a `Must` or a `Should`).
enum Plan {
    Leaf(Box<dyn Weight>),
    Boolean {
        must: Vec<Plan>,
        should: Vec<Plan>,
        must_not: Vec<Plan>,
        should_match: usize,
    },
}

impl Plan {
    fn of(query: &dyn Query, scoring: EnableScoring<'_>) -> Result<Plan, StorageError> {
        let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
            return Ok(Plan::Leaf(query.weight(scoring)?));
        };
        let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
        for (occur, clause) in boolean.clauses() {
            let plan = Plan::of(clause.as_ref(), scoring)?;
            match occur {
                Occur::Must => must.push(plan),
                Occur::Should => should.push(plan),
                Occur::MustNot => must_not.push(plan),
            }
        }
        let mut should_match = boolean.get_minimum_number_should_match();
        if must.is_empty() && !should.is_empty() {
            should_match = should_match.max(1);
        }
        Ok(Plan::Boolean {
            must,
            should,
            must_not,
            should_match,
        })
    }

    /// A check of documents of `segment`, asked by ascending doc id.
    fn check<'a>(&'a self, segment: &'a SegmentReader) -> Check<'a> {
        match self {
            Plan::Leaf(weight) => Check::Leaf {
                weight: weight.as_ref(),
                segment,
                scorer: None,
                next: 0,
            },
            Plan::Boolean {
                must,
                should,
                must_not,
                should_match,
            } => Check::Boolean {
                must: must.iter().map(|p| p.check(segment)).collect(),
                should: should.iter().map(|p| p.check(segment)).collect(),
                must_not: must_not.iter().map(|p| p.check(segment)).collect(),
                should_match: *should_match,
            },
        }
    }
}

enum Check<'a> {
    /// A leaf's scorer is made at the first document asked (`scorer_danger`: a phrase scorer
    /// made so checks only that document) and moved on by `seek_danger`, which checks only the
    /// document asked. `next`: no document before it matches.
    Leaf {
        weight: &'a dyn Weight,
        segment: &'a SegmentReader,
        scorer: Option<Box<dyn Scorer>>,
        next: DocId,
    },
    Boolean {
        must: Vec<Check<'a>>,
        should: Vec<Check<'a>>,
        must_not: Vec<Check<'a>>,
        should_match: usize,
    },
}

impl Check<'_> {
    /// Whether `doc` matches; every call asks a larger doc id than the one before.
    fn matches(&mut self, doc: DocId) -> Result<bool, StorageError> {
        match self {
            Check::Leaf {
                weight,
                segment,
                scorer,
                next,
            } => {
                if doc < *next {
                    return Ok(false);
                }
                let found = match scorer {
                    Some(scorer) => scorer.seek_danger(doc),
                    None => {
                        let (found, made) = weight.scorer_danger(segment, doc, 1.0)?;
                        *scorer = Some(made);
                        found
                    }
                };
                Ok(match found {
                    SeekDangerResult::Found => {
                        *next = doc + 1;
                        true
                    }
                    SeekDangerResult::SeekLowerBound(bound) => {
                        *next = bound;
                        false
                    }
                })
            }
            Check::Boolean {
                must,
                should,
                must_not,
                should_match,
            } => {
                if must.is_empty() && should.is_empty() {
                    return Ok(false);
                }
                for clause in must.iter_mut() {
                    if !clause.matches(doc)? {
                        return Ok(false);
                    }
                }
                let mut matched = 0;
                for clause in should.iter_mut() {
                    if matched >= *should_match {
                        break;
                    }
                    if clause.matches(doc)? {
                        matched += 1;
                    }
                }
                if matched < *should_match {
                    return Ok(false);
                }
                for clause in must_not.iter_mut() {
                    if clause.matches(doc)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tantivy::query::QueryParser;
    use tantivy::schema::{Schema, FAST, TEXT};
    use tantivy::{doc, Index, IndexWriter, Term};

    use super::*;

    const WORDS: [&str; 3] = ["alpha", "beta", "gamma"];

    /// A full-text query and what it means.
    #[derive(Debug, Clone)]
    enum Text {
        Word(usize),
        Phrase(usize, usize),
        And(Box<Text>, Box<Text>),
        Or(Box<Text>, Box<Text>),
        AndNot(Box<Text>, Box<Text>),
    }

    impl Text {
        fn query(&self) -> String {
            match self {
                Text::Word(w) => WORDS[*w].to_owned(),
                Text::Phrase(a, b) => format!("\"{} {}\"", WORDS[*a], WORDS[*b]),
                Text::And(a, b) => format!("({}) AND ({})", a.query(), b.query()),
                Text::Or(a, b) => format!("({}) OR ({})", a.query(), b.query()),
                Text::AndNot(a, b) => format!("({}) -({})", a.query(), b.query()),
            }
        }

        fn matches(&self, words: &[usize]) -> bool {
            match self {
                Text::Word(w) => words.contains(w),
                Text::Phrase(a, b) => words.windows(2).any(|pair| pair == [*a, *b]),
                Text::And(a, b) => a.matches(words) && b.matches(words),
                Text::Or(a, b) => a.matches(words) || b.matches(words),
                Text::AndNot(a, b) => a.matches(words) && !b.matches(words),
            }
        }
    }

    fn text() -> impl Strategy<Value = Text> {
        let leaf = prop_oneof![
            (0..WORDS.len()).prop_map(Text::Word),
            (0..WORDS.len(), 0..WORDS.len()).prop_map(|(a, b)| Text::Phrase(a, b)),
        ];
        leaf.prop_recursive(2, 8, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Text::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Text::Or(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Text::AndNot(Box::new(a), Box::new(b))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_newest_matches_are_the_newest_of_every_match(
            // Segments of documents: (time, words in order).
            segments in proptest::collection::vec(
                proptest::collection::vec((0u64..50, proptest::collection::vec(0..WORDS.len(), 0..6)), 1..40),
                1..5,
            ),
            deleted in proptest::collection::vec(any::<bool>(), 0..8),
            text in text(),
            want in 1usize..20,
            max_candidates in 2usize..40,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut schema = Schema::builder();
            let body = schema.add_text_field("body", TEXT);
            let id = schema.add_u64_field("id", tantivy::schema::INDEXED | FAST);
            let time = schema.add_u64_field("time", FAST);
            let index = Index::create_in_dir(dir.path(), schema.build()).unwrap();
            let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
            writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
            let mut docs = Vec::new();
            for segment in &segments {
                for (t, words) in segment {
                    let text: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
                    let n = docs.len() as u64;
                    writer.add_document(doc!(body => text.join(" "), id => n, time => *t)).unwrap();
                    docs.push((*t, words.clone()));
                }
                writer.commit().unwrap();
            }
            // Deleted documents are never found.
            let gone: Vec<usize> = deleted.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i * 3).collect();
            for &i in &gone {
                writer.delete_term(Term::from_field_u64(id, i as u64));
            }
            writer.commit().unwrap();
            let searcher = index.reader().unwrap().searcher();
            let query = QueryParser::for_index(&index, vec![body]).parse_query(&text.query()).unwrap();

            let mut expected: Vec<u64> = docs
                .iter()
                .enumerate()
                .filter(|(i, (_, words))| !gone.contains(i) && text.matches(words))
                .map(|(_, (t, _))| *t)
                .collect();
            expected.sort_unstable_by(|a, b| b.cmp(a));
            expected.truncate(want);

            let found = newest_within(&searcher, &*query, want, None, max_candidates).unwrap();
            for (_, address) in &found {
                let n = searcher.segment_reader(address.segment_ord).fast_fields().u64("id").unwrap();
                let n = n.first(address.doc_id).unwrap() as usize;
                prop_assert!(!gone.contains(&n) && text.matches(&docs[n].1), "document {} does not match", n);
            }
            let times: Vec<u64> = found.iter().map(|(t, _)| *t).collect();
            prop_assert_eq!(times, expected, "{}", text.query());
        }
    }
}
