//! Trace search from the span index's per-trace summaries (SPEC §4), never a scan of spans.
//!
//! Each span document is one trace's spans of one append (or one part, when an index is rebuilt)
//! and says, beyond its words, what it knows of the trace: its start and end (covering the
//! trace's earlier documents within [`fulltext::RecentTraces`]' window), span and error counts,
//! root and services, and exact span-level terms. A search:
//!
//! 1. asks each partition's index for its newest documents matching the span-level filters (a
//!    query of terms) whose start and duration can belong to a passing trace ([`DocBounds`]);
//! 2. reads, for each trace they name (newest first), every document of the trace — a term
//!    lookup, no span read — and adds them up into the trace's summary, which decides the range
//!    (the trace's start) and the duration filters exactly;
//! 3. reads the trace's spans only when the index cannot tell that one span meets every
//!    span-level filter (two or more filters that are not a service with one other; an attribute
//!    without terms — see `fulltext::has_terms` — or with a value too long to be a term);
//! 4. stops once `limit` traces passed and no unread document can start later than the last of
//!    them (a document never starts before its trace), else asks for four times as many.
//!
//! A minimum duration is looked up from the documents that cover their trace's duration (and
//! those flagged as possibly not covering earlier ones), as long as their own duration is long
//! enough. With span-level filters, a trace passing them has such a document that matches them
//! — the one matching them covers the trace (its own duration decides), or a later document of
//! the trace, flagged, does (see [`fulltext::RecentTraces`]) — so the documents read are those
//! matching the filters or flagged, each admitted by its own duration, and a trace found through
//! a flagged document is checked to have one matching the filters. (Before, every trace matching
//! the span filters was looked up: a rare combination with a duration looked up ~86,000 traces
//! to find 20.) Documents are searchable once their index is committed (every
//! `index_commit_interval`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use super::fulltext::{is_better_root, DocBounds, DocSummary, TraceDoc};
use super::read::span_matches;
use super::*;
use crate::TraceSummary;

impl LocalStore {
    pub(super) fn find_traces(&self, filter: &TraceFilter) -> Result<TraceHits, StorageError> {
        let snapshot = self.snapshot();
        let services: BTreeSet<String> = snapshot
            .parts(Table::Spans, &TimeRange::ALL)
            .flat_map(|p| p.services.keys())
            .chain(
                snapshot
                    .heads(Table::Spans, &TimeRange::ALL)
                    .flat_map(|h| h.services.keys()),
            )
            .cloned()
            .collect();
        let (query, exact) = self.spans.trace_query(filter, &services)?;
        let span_filters = filter.service.is_some()
            || filter.name.is_some()
            || filter.status.is_some()
            || !filter.attributes.is_empty()
            || filter.query.as_deref().is_some_and(|q| !q.trim().is_empty());
        let bounds = DocBounds {
            start: filter.range.start,
            end: filter.range.end,
            min_duration: filter.min_duration,
            max_duration: filter.max_duration,
        };
        // With span filters and a minimum duration, a trace may pass through a flagged document
        // that does not match the filters (see the module's comment).
        let through_flagged = span_filters && filter.min_duration.is_some();
        let docs_query = match through_flagged {
            true => self.spans.or_not_covering(&*query)?,
            false => query.box_clone(),
        };
        let deadline = filter.time_budget.map(|budget| Instant::now() + budget);
        let all_hours = span_hours(&snapshot);
        // A trace's documents sit in the partitions of its spans' starts: from its start's hour
        // on, and (for traces crossing the hour) the next.
        let first = filter.range.start.map_or(0, hour_of);
        let last = filter
            .range
            .end
            .map_or(u64::MAX, |e| hour_of(e.saturating_sub(1)).saturating_add(1));
        let hours: Vec<u64> = all_hours
            .iter()
            .rev()
            .copied()
            .filter(|h| (first..=last).contains(h))
            .collect();
        let live = live_span_sources(&snapshot);
        let accept = |hit: &Hit| live.contains(&snapshot.resolve(Table::Spans, hit, |p| live.contains(&p)).0);

        let limit = filter.limit.max(1);
        let mut want = limit.saturating_mul(2).max(16);
        let mut checked: HashSet<[u8; 16]> = HashSet::new();
        let mut found: Vec<TraceSummary> = Vec::new();
        // The starts of the `limit` newest traces found, oldest on top.
        let mut newest: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
        let mut partial = false;
        let mut by_trace = self.spans.span_docs();
        let (started, mut rounds, mut traces_looked_up, mut spans_read) = (Instant::now(), 0usize, 0usize, 0usize);
        loop {
            rounds += 1;
            let (docs, index_partial, cut) =
                self.spans
                    .newest_trace_docs(&*docs_query, &hours, want, &bounds, accept)?;
            partial |= index_partial;
            // Before `cut`, a partition that had more documents than were asked for may hold some
            // not listed (at `cut` too, but those tie with the listed ones): the listed ones are
            // read down to it, then more are asked for (unless the `limit`-th trace found starts
            // at or after it).
            let mut settled = false;
            let mut complete = true;
            for doc in &docs {
                let kth = newest.peek().map(|Reverse(kth)| *kth).filter(|_| newest.len() >= limit);
                if kth.is_some_and(|kth| kth >= doc.hit.time && cut.is_none_or(|cut| kth >= cut)) {
                    settled = true;
                    break;
                }
                if cut.is_some_and(|cut| doc.hit.time < cut) {
                    complete = false;
                    break;
                }
                let Some(trace_id) = doc.hit.trace_id else { continue };
                if !checked.insert(trace_id) {
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    partial = true;
                    settled = true;
                    break;
                }
                // The trace's documents near this one (from an hour before its start to an hour
                // after its end): their start and end decide the range and durations before any
                // summary is read.
                let from = hour_of(doc.hit.time).saturating_sub(1);
                let to = hour_of(doc.end.max(doc.hit.time)).saturating_add(1);
                let near: Vec<u64> = all_hours.range(from..=to).copied().collect();
                traces_looked_up += 1;
                let docs: Vec<_> = by_trace
                    .of_trace(&trace_id, &near)
                    .into_iter()
                    .filter(|(d, _)| accept(&d.hit))
                    .collect();
                let (Some(start), Some(end)) = (
                    docs.iter().map(|(d, _)| d.hit.time).min(),
                    docs.iter().map(|(d, _)| d.end).max(),
                ) else {
                    continue;
                };
                let duration = end.saturating_sub(start);
                let passes = filter.range.contains(start)
                    && filter.min_duration.is_none_or(|m| duration >= m)
                    && filter.max_duration.is_none_or(|m| duration <= m)
                    && (!through_flagged || by_trace.any_matches(&*query, &trace_id, &near, &accept))
                    && (exact || {
                        spans_read += 1;
                        self.one_span_matches(&trace_id, filter)?
                    });
                if !passes {
                    continue;
                }
                let mut summaries = Vec::with_capacity(docs.len());
                for (d, address) in &docs {
                    match by_trace.summary(d, *address) {
                        Some(summary) => summaries.push((*d, summary)),
                        None => partial = true,
                    }
                }
                if let Some(summary) = summarize(&trace_id, summaries.iter()) {
                    newest.push(Reverse(summary.start));
                    if newest.len() > limit {
                        newest.pop();
                    }
                    found.push(summary);
                }
            }
            let kth = newest.peek().map(|Reverse(kth)| *kth).filter(|_| newest.len() >= limit);
            settled |= complete && cut.is_some_and(|cut| kth.is_some_and(|kth| kth >= cut));
            if settled || cut.is_none() {
                break;
            }
            want = want.saturating_mul(4);
        }
        partial |= by_trace.partial;
        // What a search cost: a rare combination of span filters and durations looks up the
        // documents of many traces (each ~12 µs) before `limit` pass.
        tracing::debug!(
            rounds,
            traces_looked_up,
            spans_read,
            found = found.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "trace search"
        );
        found.sort_by(|a, b| b.start.cmp(&a.start).then(a.trace_id.cmp(&b.trace_id)));
        found.truncate(limit);
        Ok(TraceHits { traces: found, partial })
    }

    /// Whether one stored span of the trace meets every span-level filter.
    fn one_span_matches(&self, trace_id: &[u8; 16], filter: &TraceFilter) -> Result<bool, StorageError> {
        Ok(self
            .trace(trace_id, &TimeRange::ALL)?
            .iter()
            .any(|row| span_matches(row, filter)))
    }
}

/// Adds up what a trace's documents say of it; `None` without documents.
fn summarize<'a>(trace_id: &[u8; 16], docs: impl Iterator<Item = &'a (TraceDoc, DocSummary)>) -> Option<TraceSummary> {
    let mut out: Option<TraceSummary> = None;
    let mut end = 0u64;
    let mut root: Option<&(u64, String, String, bool)> = None;
    let mut services = BTreeSet::new();
    for (doc, summary) in docs {
        let trace = out.get_or_insert_with(|| TraceSummary {
            trace_id: *trace_id,
            start: doc.hit.time,
            ..TraceSummary::default()
        });
        trace.start = trace.start.min(doc.hit.time);
        end = end.max(doc.end);
        trace.span_count += summary.spans;
        trace.error_count += summary.errors;
        services.extend(summary.services.iter().map(String::as_str));
        if let Some(candidate) = &summary.root {
            if root.is_none_or(|r| is_better_root((candidate.0, candidate.3), (r.0, r.3))) {
                root = Some(candidate);
            }
        }
    }
    let mut trace = out?;
    trace.duration = end.saturating_sub(trace.start);
    if let Some((_, service, name, _)) = root {
        trace.root_service = service.clone();
        trace.root_name = name.clone();
    }
    trace.services = services.into_iter().map(str::to_owned).collect();
    Some(trace)
}

/// Every hour partition of the span table (parts and heads).
fn span_hours(snapshot: &Snapshot) -> BTreeSet<u64> {
    snapshot
        .parts(Table::Spans, &TimeRange::ALL)
        .map(|p| p.hour)
        .chain(snapshot.heads(Table::Spans, &TimeRange::ALL).map(|h| h.hour))
        .collect()
}

/// The span parts and heads whose documents count (others are not published, or no longer).
fn live_span_sources(snapshot: &Snapshot) -> BTreeSet<u64> {
    snapshot
        .parts_of_all_tables()
        .filter(|p| p.table == Table::Spans)
        .map(|p| p.id)
        .chain(snapshot.head.iter().filter(|h| h.table == Table::Spans).map(|h| h.id))
        .collect()
}
