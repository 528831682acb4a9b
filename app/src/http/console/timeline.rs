//! An order's story drawn to scale in time: every mark (an event, the
//! deadline) gets an x position proportional to its time since the first
//! mark, so five seconds between queries look like five seconds. Pure: the
//! page draws what [`layout`] says.

use chrono::{DateTime, Utc};

/// The drawing's width in SVG units; the page scales it to the screen.
pub const WIDTH: u32 = 1000;
/// Room left and right of the first and last mark (labels, dots).
pub const MARGIN: u32 = 20;

/// What a mark on the timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A stored event of the order.
    Event,
    /// The time the order must be certain by (its revoke is due then).
    Deadline,
}

/// One thing to draw at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub kind: MarkKind,
    pub label: String,
    pub at: DateTime<Utc>,
}

/// A mark with its place: `x` in `MARGIN..=WIDTH - MARGIN`, and its time
/// after the first mark in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub mark: Mark,
    pub x: u32,
    pub offset_ms: i64,
}

/// Places `marks` on a line from the earliest to the latest: linear in
/// time. One mark, or marks all at one instant, sit at the left margin.
pub fn layout(marks: Vec<Mark>) -> Vec<Placed> {
    let Some(first) = marks.iter().map(|mark| mark.at).min() else {
        return Vec::new();
    };
    let last = marks.iter().map(|mark| mark.at).max().unwrap_or(first);
    let span_ms = (last - first).num_milliseconds();
    let usable = i64::from(WIDTH - 2 * MARGIN);
    marks
        .into_iter()
        .map(|mark| {
            let offset_ms = (mark.at - first).num_milliseconds();
            let x = if span_ms == 0 {
                0
            } else {
                offset_ms * usable / span_ms
            };
            Placed {
                mark,
                // 0..=usable by construction, which fits in u32.
                x: MARGIN + u32::try_from(x).unwrap_or(0),
                offset_ms,
            }
        })
        .collect()
}

/// A time after the first mark for a person: `+0 s`, `+5 s`, `+2 min 5 s`,
/// `+3 h 2 min`, `+2 d 4 h`.
pub fn offset_text(offset_ms: i64) -> String {
    let secs = offset_ms / 1000;
    match secs {
        s if s < 60 => format!("+{s} s"),
        s if s < 3600 => format!("+{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("+{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("+{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn mark(secs: i64) -> Mark {
        Mark {
            kind: MarkKind::Event,
            label: format!("at {secs}"),
            at: Utc.with_ymd_and_hms(2026, 12, 3, 2, 0, 0).unwrap() + Duration::seconds(secs),
        }
    }

    #[test]
    fn marks_are_placed_in_proportion_to_their_time() {
        // Shows the scale: submitted at 0, queries 5 s apart, the deadline at
        // 30 s: equal gaps in time are equal gaps on the line, and the
        // deadline ends it.
        let mut marks: Vec<Mark> = [0, 5, 10, 15].into_iter().map(mark).collect();
        marks.push(Mark {
            kind: MarkKind::Deadline,
            ..mark(30)
        });
        let placed = layout(marks);
        let xs: Vec<u32> = placed.iter().map(|p| p.x).collect();
        // 960 units for 30 s: 160 per 5 s.
        assert_eq!(xs, vec![20, 180, 340, 500, 980]);
        let offsets: Vec<i64> = placed.iter().map(|p| p.offset_ms).collect();
        assert_eq!(offsets, vec![0, 5000, 10_000, 15_000, 30_000]);
    }

    #[test]
    fn a_lone_mark_sits_at_the_start_and_nothing_draws_nothing() {
        assert_eq!(layout(vec![mark(7)])[0].x, MARGIN);
        assert_eq!(
            layout(vec![mark(7), mark(7)])
                .iter()
                .map(|p| p.x)
                .collect::<Vec<_>>(),
            vec![MARGIN, MARGIN]
        );
        assert!(layout(Vec::new()).is_empty());
    }

    #[test]
    fn offsets_read_in_the_largest_units_that_fit() {
        assert_eq!(offset_text(0), "+0 s");
        assert_eq!(offset_text(5_400), "+5 s");
        assert_eq!(offset_text(125_000), "+2 min 5 s");
        assert_eq!(offset_text(3 * 3_600_000 + 120_000), "+3 h 2 min");
        assert_eq!(offset_text(2 * 86_400_000 + 4 * 3_600_000), "+2 d 4 h");
    }
}
