//! The page's HTML (a maud template): the filter form, the note on what the numbers are, the
//! total, two SVG charts ([`crate::chart`]), the units, the visits table, the attention
//! section (rate per age bucket × gender with the unknown visits beside it, watchers by hour
//! of day) and the parked conflicts. No JavaScript. Every value is escaped by the template.

use crate::chart;
use crate::ingest::Metrics;
use crate::report::{hm, Attention, AttentionRow, Table, View};
use crate::store::{ConflictRow, Step, UnitRow};
use maud::{html, Markup, PreEscaped};

const STYLE: &str = "body{font-family:sans-serif;margin:1.2em;color:#222}\
table{border-collapse:collapse;margin:.6em 0}\
td,th{border:1px solid #ccc;padding:2px 7px;text-align:right;font-size:13px}th{background:#f3f3f3}\
td.l,th.l{text-align:left;white-space:nowrap}.stale{color:#c00;font-weight:bold}.ok{color:#080}\
.note{background:#fff8d8;padding:.4em .8em;border:1px solid #e8d890;max-width:70em}\
.charts{display:flex;flex-wrap:wrap;gap:4px}form{margin:.6em 0}";

/// One page: a view and what it shows.
pub struct Page<'a> {
    pub view: &'a View,
    /// The units shown (one for a unit's page), with their totals in the range.
    pub units: &'a [&'a UnitRow],
    pub table: &'a Table,
    /// Attention in the view (schema 2 units).
    pub attention: &'a Attention,
    /// The parked re-sends shown (a unit's own on its page).
    pub conflicts: &'a [&'a ConflictRow],
    /// A unit whose latest interval ended longer ago than this is shown in red.
    pub stale_after_s: i64,
    pub metrics: &'a Metrics,
    /// The collector's clock when the page is drawn.
    pub now: i64,
}

/// "3 h ago" and the like.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s} s ago"),
        120..7_200 => format!("{} min ago", s / 60),
        7_200..172_800 => format!("{} h ago", s / 3_600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// An SVG chart, or the reason it could not be drawn.
fn chart_or_error(chart: Result<String, chart::ChartError>) -> Markup {
    match chart {
        Ok(svg) => PreEscaped(svg),
        Err(e) => html! { p class="error" { (e) } },
    }
}

impl Page<'_> {
    /// The whole HTML document.
    pub fn render(&self) -> Markup {
        let v = self.view;
        let title = match &v.unit {
            Some(u) => format!("agecam fleet — unit {u}"),
            None => "agecam fleet".to_string(),
        };
        html! {
            (PreEscaped("<!doctype html>"))
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { (title) }
                    (self.form())
                    (self.note())
                    p {
                        "Published visits " (v.first_day()) " to " (v.last_day()) ": "
                        b id="total-visits" { (self.table.total()) }
                    }
                    (self.charts())
                    (self.units())
                    (self.visits())
                    (self.attention())
                    (self.conflicts())
                    (self.footer())
                }
            }
        }
    }

    /// The range, period and CSV link.
    fn form(&self) -> Markup {
        let v = self.view;
        let action = match &v.unit {
            Some(u) => format!("/unit/{u}"),
            None => "/".into(),
        };
        html! {
            form method="get" action=(action) {
                "from " input type="date" name="from" value=(v.first_day());
                " to " input type="date" name="to" value=(v.last_day());
                " per "
                select name="step" {
                    option value="day" selected[v.step == Step::Day] { "day" }
                    option value="week" selected[v.step == Step::Week] { "week" }
                }
                " " button type="submit" { "show" }
                " " a id="csv" href={ "/visits.csv?" (v.query(true)) } { "CSV of the table below" }
                @if v.unit.is_some() {
                    " · " a href={ "/?" (v.query(false)) } { "whole fleet" }
                }
            }
        }
    }

    /// What the numbers are (published, k-anonymous sums) and how many buckets were withheld.
    fn note(&self) -> Markup {
        let suppressed: i64 = self.units.iter().map(|u| u.suppressed_cells).sum();
        html! {
            p class="note" {
                "Every number here is a sum of the cells the units " b { "published" } ": "
                "k-anonymous counts per interval (a unit merges or withholds any age bucket with "
                "fewer than k visits). Withheld buckets are in no total and cannot be recovered "
                "from this page: " span id="suppressed" { (suppressed) } " were withheld in this "
                "range. Times are UTC; the first version of each interval counts (re-sends with "
                "different numbers are listed under Conflicts)."
            }
        }
    }

    fn charts(&self) -> Markup {
        let x = self.table.x_labels();
        let per = self.view.step.name();
        let by_age = chart::lines(
            &format!("visits per {per} by age"),
            "visits",
            &x,
            &self.table.by(|c| c.0.clone()),
        );
        let by_gender = chart::lines(
            &format!("visits per {per} by gender"),
            "visits",
            &x,
            &self.table.by(|c| c.1.clone()),
        );
        html! {
            div class="charts" {
                div { (chart_or_error(by_age)) }
                div { (chart_or_error(by_gender)) }
            }
        }
    }

    /// One row per unit: when it last reported (red when stale), uptime, faults, visits.
    fn units(&self) -> Markup {
        let v = self.view;
        let span = (v.range.to.min(self.now) - v.range.from).max(1) as f64;
        html! {
            h2 { "Units" }
            table id="units" {
                tr {
                    th class="l" { "unit" } th class="l" { "last interval ended" }
                    th class="l" { "registered" } th { "intervals" } th { "uptime h" }
                    th { "uptime %" } th { "camera faults" } th { "visits" }
                    th { "mean dwell s" } th { "withheld buckets" }
                }
                @for u in self.units {
                    @let age = self.now - u.last_interval_end;
                    @let class = if age > self.stale_after_s { "l stale" } else { "l ok" };
                    tr data-unit=(u.unit_id) {
                        td class="l" {
                            a href={ "/unit/" (u.unit_id) "?" (v.query(false)) } { (u.unit_id) }
                        }
                        td class=(class) title=(hm(u.last_interval_end)) { "last seen " (ago(age)) }
                        td class="l" { (hm(u.first_seen)) }
                        td { (u.intervals) }
                        td { (format!("{:.1}", u.uptime_s / 3600.0)) }
                        td { (format!("{:.0}", 100.0 * u.uptime_s / span)) }
                        td class="faults" { (u.camera_faults) }
                        td class="visits" { (u.visits) }
                        td {
                            @match u.dwell_mean_s {
                                Some(d) => { (format!("{d:.1}")) }
                                None => { "–" }
                            }
                        }
                        td { (u.suppressed_cells) }
                    }
                }
            }
        }
    }

    /// The visits table: a row per period, a column per age bucket × gender, a total.
    fn visits(&self) -> Markup {
        let per = self.view.step.name();
        let t = self.table;
        html! {
            h2 { "Visits per " (per) " by age bucket × gender" }
            table id="visits" {
                tr {
                    th class="l" { (per) }
                    @for (b, g) in &t.columns { th { (b) " " (g) } }
                    th { "total" }
                }
                @for (p, row) in t.periods.iter().zip(&t.rows) {
                    @let day = crate::report::ymd(*p);
                    tr data-period=(day) {
                        td class="l" { (day) }
                        @for ((b, g), n) in t.columns.iter().zip(row) {
                            td class="cell" data-cell={ (b) " " (g) } { (n) }
                        }
                        td class="total" { (row.iter().sum::<i64>()) }
                    }
                }
            }
        }
    }

    /// Attention: watchers ÷ the visits whose attention is known, per age bucket × gender,
    /// with the unknown visits beside it; watchers by hour of day. Only what schema 2 units
    /// published; "no attention data yet" when nothing in the view carries it.
    fn attention(&self) -> Markup {
        let a = self.attention;
        let row = |r: &AttentionRow, total: bool| {
            html! {
                tr data-cell=[(!total).then(|| format!("{} {}", r.age_bucket, r.gender))]
                    id=[total.then_some("attention-total")] {
                    @if total {
                        th class="l" colspan="2" { "all" }
                    } @else {
                        td class="l" { (r.age_bucket) } td class="l" { (r.gender) }
                    }
                    td class="visits" { (r.visits) }
                    td class="known" { (r.known()) }
                    td class="watchers" {
                        @match r.watchers { Some(w) => { (w) } None => { "–" } }
                    }
                    td class="rate" {
                        @match r.rate() { Some(x) => { (format!("{:.1}%", 100.0 * x)) } None => { "–" } }
                    }
                    td class="mean" {
                        @match r.mean_s() { Some(x) => { (format!("{x:.1}")) } None => { "–" } }
                    }
                    td class="unknown" { (r.unknown) }
                }
            }
        };
        html! {
            h2 { "Attention" }
            @if !a.any_known() {
                p id="attention-none" {
                    "No attention data yet: no unit in this view has published any (it needs "
                    "units that send push schema 2; older units' visits count as unknown, not as "
                    "\"did not look\"). Published visits in this view with unknown attention: "
                    span id="attention-unknown" { (a.total.unknown) } "."
                }
            } @else {
                p {
                    "A " b { "watcher" } " is a visitor who looked at the screen for at least a "
                    "second. The attention rate is watchers ÷ the visits whose attention is "
                    "known. Visits from units that do not send attention yet, and cells whose "
                    "split a unit withheld (k-anonymity), are " b { "unknown" } ": not in the "
                    "rate, counted in the last column. Of " (a.total.visits) " visits, "
                    b id="attention-unknown" { (a.total.unknown) } " have unknown attention."
                }
                table id="attention" {
                    tr {
                        th class="l" { "age" } th class="l" { "gender" } th { "visits" }
                        th { "visits with attention known" } th { "watchers" }
                        th { "attention rate" } th { "mean s watched per watcher" }
                        th { "visits with attention unknown" }
                    }
                    @for r in &a.rows { (row(r, false)) }
                    (row(&a.total, true))
                }
                div class="charts" {
                    div {
                        (chart_or_error(chart::lines(
                            "watchers by hour of day (UTC), by age",
                            "watchers",
                            &Attention::hour_labels(),
                            &a.by_hour,
                        )))
                    }
                }
                p {
                    "By the hour of day each interval started, over the whole range; "
                    span id="attention-hours-unknown" { (a.by_hour_unknown) }
                    " visits with unknown attention are not in this chart."
                }
            }
        }
    }

    /// Re-sends with different numbers: kept aside, never merged.
    fn conflicts(&self) -> Markup {
        html! {
            h2 { "Conflicts" }
            p {
                "Intervals that came again with different numbers (e.g. a unit restarted and "
                "re-sent a completed interval). The first version stays in every total; these are "
                "kept aside, not merged."
            }
            table id="conflicts" {
                tr {
                    th class="l" { "interval" } th { "visits counted" }
                    th { "visits in the re-send" } th { "times received" }
                    th class="l" { "last received" }
                }
                @if self.conflicts.is_empty() {
                    tr { td class="l" colspan="5" { "none" } }
                }
                @for c in self.conflicts {
                    tr class="conflict" {
                        td class="l" { (c.interval_id) }
                        td { (c.stored_visits) }
                        td { (c.parked_visits) }
                        td { (c.times) }
                        td class="l" { (hm(c.last_received)) }
                    }
                }
            }
        }
    }

    /// The collector's counters since start.
    fn footer(&self) -> Markup {
        let m = self.metrics;
        html! {
            p style="color:#666;font-size:12px" {
                "collector: " (m.get(&m.received)) " messages received, " (m.get(&m.stored))
                " stored, " (m.get(&m.duplicates)) " duplicates, " (m.get(&m.conflicts))
                " conflicts, " (m.get(&m.rejected)) " rejected since start; page drawn "
                (hm(self.now))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(ago(5), "5 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(3 * 3600 + 5), "3 h ago");
        assert_eq!(ago(5 * 86_400), "5 days ago");
    }

    #[test]
    fn html_is_escaped() {
        let text = "<a href='x'>&";
        assert_eq!(
            html! { (text) }.into_string(),
            "&lt;a href='x'&gt;&amp;",
            "maud escapes & < > \" (a ' is harmless: attributes are in double quotes)"
        );
        assert_eq!(
            html! { td title=(text) { "-" } }.into_string(),
            "<td title=\"&lt;a href='x'&gt;&amp;\">-</td>"
        );
    }
}
