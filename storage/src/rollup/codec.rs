//! The stored form of a [`Rollup`]: little-endian fixed-width fields in declaration order,
//! after a version byte. A query reads thousands of rollups, so this is a copy per field, not a
//! self-describing format (CBOR took 20 µs a rollup, most of a query).

use std::sync::Arc;

use super::{Rollup, Run, Sample};

const VERSION: u8 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn opt_f64(&mut self, v: Option<f64>) {
        self.bool(v.is_some());
        self.f64(v.unwrap_or(0.0));
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn buckets(&mut self, bounds: &[f64], counts: &[u64]) {
        self.len(bounds.len());
        bounds.iter().for_each(|b| self.f64(*b));
        self.len(counts.len());
        counts.iter().for_each(|c| self.u64(*c));
    }
    fn sample(&mut self, s: Option<&Sample>) {
        self.bool(s.is_some());
        let Some(s) = s else { return };
        self.u64(s.time);
        self.opt_f64(s.value);
        self.bool(s.cumulative);
        self.bool(s.gauge);
        self.bool(s.buckets.is_some());
        if let Some((bounds, counts)) = &s.buckets {
            self.buckets(bounds, counts);
        }
        self.u64(s.count);
        self.f64(s.sum);
        self.opt_f64(s.min);
        self.opt_f64(s.max);
        self.len(s.quantiles.len());
        for (q, v) in &s.quantiles {
            self.f64(*q);
            self.f64(*v);
        }
    }
}

struct Reader<'a>(&'a [u8]);

type Decoded<T> = Result<T, String>;

impl Reader<'_> {
    fn u64(&mut self) -> Decoded<u64> {
        let Some((head, rest)) = self.0.split_first_chunk::<8>() else {
            return Err("rollup: cut short".into());
        };
        self.0 = rest;
        Ok(u64::from_le_bytes(*head))
    }
    fn f64(&mut self) -> Decoded<f64> {
        self.u64().map(f64::from_bits)
    }
    fn bool(&mut self) -> Decoded<bool> {
        let Some((head, rest)) = self.0.split_first() else {
            return Err("rollup: cut short".into());
        };
        self.0 = rest;
        Ok(*head != 0)
    }
    fn opt_f64(&mut self) -> Decoded<Option<f64>> {
        let some = self.bool()?;
        let v = self.f64()?;
        Ok(some.then_some(v))
    }
    /// A length, checked against what is left (each item takes at least `item` bytes).
    fn len(&mut self, item: usize) -> Decoded<usize> {
        let n = self.u64()?;
        if n.saturating_mul(item as u64) > self.0.len() as u64 {
            return Err(format!("rollup: a list of {n} does not fit"));
        }
        Ok(n as usize)
    }
    fn buckets(&mut self) -> Decoded<(Arc<[f64]>, Vec<u64>)> {
        let n = self.len(8)?;
        let bounds = (0..n).map(|_| self.f64()).collect::<Decoded<Vec<f64>>>()?;
        let n = self.len(8)?;
        let counts = (0..n).map(|_| self.u64()).collect::<Decoded<Vec<u64>>>()?;
        Ok((bounds.into(), counts))
    }
    fn sample(&mut self) -> Decoded<Option<Sample>> {
        if !self.bool()? {
            return Ok(None);
        }
        let mut s = Sample::at(self.u64()?);
        s.value = self.opt_f64()?;
        s.cumulative = self.bool()?;
        s.gauge = self.bool()?;
        if self.bool()? {
            s.buckets = Some(self.buckets()?);
        }
        s.count = self.u64()?;
        s.sum = self.f64()?;
        s.min = self.opt_f64()?;
        s.max = self.opt_f64()?;
        let n = self.len(16)?;
        s.quantiles = (0..n)
            .map(|_| Ok((self.f64()?, self.f64()?)))
            .collect::<Decoded<Vec<_>>>()?;
        Ok(Some(s))
    }
}

/// The stored form of `r`.
pub(super) fn encode(r: &Rollup) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.0.push(VERSION);
    w.bool(r.first.is_some());
    let (time, cumulative) = r.first.unwrap_or_default();
    w.u64(time);
    w.bool(cumulative);
    w.sample(r.last.as_ref());
    w.sample(r.last_histogram.as_ref());
    w.bool(r.histogram);
    w.bool(r.gauge);
    w.u64(r.values);
    w.f64(r.values_sum);
    w.opt_f64(r.values_min);
    w.opt_f64(r.values_max);
    w.f64(r.sum);
    w.u64(r.count);
    w.opt_f64(r.min);
    w.opt_f64(r.max);
    w.len(r.runs.len());
    for run in &r.runs {
        w.u64(run.first_time);
        w.u64(run.last_time);
        w.f64(run.first);
        w.f64(run.last);
        w.f64(run.increase);
        w.f64(run.total);
    }
    w.len(r.counts.len());
    for (bounds, counts) in &r.counts {
        w.buckets(bounds, counts);
    }
    w.bool(r.summary);
    w.len(r.quantiles.len());
    for (q, sum, n) in &r.quantiles {
        w.f64(*q);
        w.f64(*sum);
        w.u64(*n);
    }
    w.bool(r.ties);
    w.0
}

/// A rollup from its stored form (`collapsed`: it is a stored one).
pub(super) fn decode(bytes: &[u8]) -> Decoded<Rollup> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Err("rollup: empty".into());
    };
    if version != VERSION {
        return Err(format!("rollup: unknown version {version}"));
    }
    let mut r = Reader(rest);
    let mut out = Rollup::default();
    let first = r.bool()?;
    let (time, cumulative) = (r.u64()?, r.bool()?);
    out.first = first.then_some((time, cumulative));
    out.last = r.sample()?;
    out.last_histogram = r.sample()?;
    out.histogram = r.bool()?;
    out.gauge = r.bool()?;
    out.values = r.u64()?;
    out.values_sum = r.f64()?;
    out.values_min = r.opt_f64()?;
    out.values_max = r.opt_f64()?;
    out.sum = r.f64()?;
    out.count = r.u64()?;
    out.min = r.opt_f64()?;
    out.max = r.opt_f64()?;
    let n = r.len(48)?;
    out.runs = (0..n)
        .map(|_| {
            Ok(Run {
                first_time: r.u64()?,
                last_time: r.u64()?,
                first: r.f64()?,
                last: r.f64()?,
                increase: r.f64()?,
                total: r.f64()?,
            })
        })
        .collect::<Decoded<Vec<_>>>()?;
    let n = r.len(16)?;
    out.counts = (0..n).map(|_| r.buckets()).collect::<Decoded<Vec<_>>>()?;
    out.summary = r.bool()?;
    let n = r.len(24)?;
    out.quantiles = (0..n)
        .map(|_| Ok((r.f64()?, r.f64()?, r.u64()?)))
        .collect::<Decoded<Vec<_>>>()?;
    out.ties = r.bool()?;
    if !r.0.is_empty() {
        return Err(format!("rollup: {} bytes left over", r.0.len()));
    }
    out.collapsed = true;
    Ok(out)
}
