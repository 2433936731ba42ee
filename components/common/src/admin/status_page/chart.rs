//! The status page's charts, drawn as inline SVG from numbers alone: no script, no external asset, nothing
//! but the markup. Bars stacked by category ([`bars`]) and a line over time with an optional limit
//! ([`fn@line`]). Sizes are in the `viewBox`, so a chart scales to the width of the screen (a phone's too),
//! and every bar and line carries a `<title>` that says its numbers in words.

use std::fmt::Write;

use super::escape;

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 140.0;
/// Room for the y axis labels.
const LEFT: f64 = 34.0;
const RIGHT: f64 = 6.0;
const TOP: f64 = 8.0;
/// Room for the x axis labels.
const BOTTOM: f64 = 18.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;
const BASELINE: f64 = TOP + PLOT_HEIGHT;
/// A run of a line narrower than this also gets a dot, or it would not be seen.
const MIN_RUN_WIDTH: f64 = 3.0;

/// A label on the x axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Where, as a fraction of the plot's width (0: left edge, 1: right edge).
    pub at: f64,
    /// What it says.
    pub label: String,
}

/// A stacked category: its name (for the legend and tooltips) and colour.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// Name.
    pub name: &'a str,
    /// CSS colour.
    pub color: &'a str,
}

/// One bar: its tooltip, and one value per [`Key`], stacked bottom up in the keys' order.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Tooltip (e.g. the hour it covers and its numbers).
    pub title: String,
    /// One value per key.
    pub values: Vec<i64>,
}

/// Stacked bars, evenly spaced.
pub struct BarChart<'a> {
    /// `data-chart` attribute, for tests and styling.
    pub id: &'a str,
    /// Accessible name of the picture.
    pub title: &'a str,
    /// The categories.
    pub keys: &'a [Key<'a>],
    /// The bars, left to right.
    pub bars: &'a [Bar],
    /// Labels under the bars.
    pub x_ticks: &'a [Tick],
    /// Said in the plot when every value is 0.
    pub empty: &'a str,
}

/// A line over evenly spaced points; `None` points are gaps.
pub struct LineChart<'a> {
    /// `data-chart` attribute, for tests and styling.
    pub id: &'a str,
    /// Accessible name of the picture.
    pub title: &'a str,
    /// CSS colour of the line.
    pub color: &'a str,
    /// The values, left to right.
    pub points: &'a [Option<i64>],
    /// A limit drawn as a dashed line, with its label (e.g. a request budget).
    pub limit: Option<(i64, &'a str)>,
    /// Labels under the line.
    pub x_ticks: &'a [Tick],
    /// Said in the plot when there is no point at all.
    pub empty: &'a str,
}

/// The SVG of `chart`.
pub fn bars(chart: &BarChart<'_>) -> String {
    let top = chart
        .bars
        .iter()
        .map(|b| b.values.iter().map(|v| (*v).max(0)).sum::<i64>())
        .max()
        .unwrap_or(0);
    let scale = Scale::up_to(top);
    let mut body = String::new();
    let slot = PLOT_WIDTH / chart.bars.len().max(1) as f64;
    let width = (slot * 0.8).max(1.0);
    for (index, bar) in chart.bars.iter().enumerate() {
        let x = LEFT + slot * index as f64 + (slot - width) / 2.0;
        let mut rects = String::new();
        let mut stacked = 0;
        for (key, value) in chart.keys.iter().zip(&bar.values) {
            let value = (*value).max(0);
            if value == 0 {
                continue;
            }
            let (low, high) = (scale.y(stacked), scale.y(stacked + value));
            stacked += value;
            let _ = write!(
                rects,
                r#"<rect x="{x:.1}" y="{high:.1}" width="{width:.1}" height="{:.1}" fill="{}" data-key="{}"/>"#,
                low - high,
                escape(key.color),
                escape(key.name),
            );
        }
        if !rects.is_empty() {
            let _ = write!(body, "<g><title>{}</title>{rects}</g>", escape(&bar.title));
        }
    }
    let empty = (top == 0).then_some(chart.empty);
    frame(chart.id, chart.title, &scale, chart.x_ticks, empty, &body)
}

/// The SVG of `chart`.
pub fn line(chart: &LineChart<'_>) -> String {
    let peak = chart.points.iter().flatten().copied().max();
    let limit = chart.limit.map(|(value, _)| value).unwrap_or(0);
    let scale = Scale::up_to(peak.unwrap_or(0).max(limit));
    let step = PLOT_WIDTH / chart.points.len().max(1) as f64;
    let x = |index: usize| LEFT + step * index as f64;
    let mut body = String::new();
    // Each run of points without a gap is one filled line of steps, each value level across its own slot
    // (so a lone point shows too); equal neighbours make one step, which keeps a day of minutes small.
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut previous_was_point = false;
    for (index, point) in chart.points.iter().enumerate() {
        match point {
            Some(value) => {
                let y = scale.y((*value).max(0));
                if !previous_was_point {
                    runs.push(Vec::new());
                }
                if let Some(run) = runs.last_mut() {
                    match run.last_mut() {
                        Some(end) if end.1 == y => end.0 = x(index) + step,
                        _ => run.extend([(x(index), y), (x(index) + step, y)]),
                    }
                }
                previous_was_point = true;
            }
            None => previous_was_point = false,
        }
    }
    for run in &runs {
        let line: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let (first, last) = (run[0].0, run[run.len() - 1].0);
        if last - first < MIN_RUN_WIDTH {
            // A minute or two of a day is a fraction of a pixel on a phone: a dot shows it.
            let (_, y) = run[run.len() - 1];
            let _ = write!(
                body,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"#,
                (first + last) / 2.0,
                escape(chart.color),
            );
        }
        let _ = write!(
            body,
            r#"<polygon points="{first:.1},{BASELINE:.1} {} {last:.1},{BASELINE:.1}" fill="{color}" fill-opacity="0.15"/><polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>"#,
            line.join(" "),
            line.join(" "),
            color = escape(chart.color),
        );
    }
    if let Some((value, label)) = chart.limit {
        let y = scale.y(value);
        let _ = write!(
            body,
            r##"<g data-limit="{value}"><title>{label}</title><line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#c0392b" stroke-width="1" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c0392b">{label}</text></g>"##,
            LEFT + PLOT_WIDTH,
            LEFT + PLOT_WIDTH - 2.0,
            y + 11.0,
            label = escape(label),
        );
    }
    let empty = peak.is_none().then_some(chart.empty);
    frame(chart.id, chart.title, &scale, chart.x_ticks, empty, &body)
}

/// The y axis: from 0 to a round number at or above the highest value, in round steps.
struct Scale {
    step: i64,
    top: i64,
}

impl Scale {
    fn up_to(highest: i64) -> Self {
        // At most four steps of 1, 2 or 5 × 10ⁿ.
        let raw = (highest.max(1) + 3) / 4;
        let mut magnitude = 1;
        let step = loop {
            if let Some(step) = [1, 2, 5]
                .iter()
                .map(|m| m * magnitude)
                .find(|step| *step >= raw)
            {
                break step;
            }
            magnitude *= 10;
        };
        let top = (highest.max(1) + step - 1) / step * step;
        Self { step, top }
    }

    fn y(&self, value: i64) -> f64 {
        BASELINE - PLOT_HEIGHT * value as f64 / self.top as f64
    }
}

/// `12000` as `12k`: y labels stay short enough for the left margin.
fn short(value: i64) -> String {
    if value >= 10_000 && value % 1000 == 0 {
        format!("{}k", value / 1000)
    } else {
        value.to_string()
    }
}

/// The picture around `body`: grid lines and y labels, x labels, and the `empty` note.
fn frame(
    id: &str,
    title: &str,
    scale: &Scale,
    x_ticks: &[Tick],
    empty: Option<&str>,
    body: &str,
) -> String {
    let mut svg = format!(
        r##"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{title}" data-chart="{id}" font-family="system-ui,sans-serif" font-size="10" fill="#555"><title>{title}</title>"##,
        title = escape(title),
        id = escape(id),
    );
    let mut value = 0;
    while value <= scale.top {
        let y = scale.y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{}" stroke-width="1"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_WIDTH,
            if value == 0 { "#999" } else { "#e5e5e5" },
            LEFT - 4.0,
            y + 3.5,
            short(value),
        );
        value += scale.step;
    }
    for tick in x_ticks {
        let x = LEFT + PLOT_WIDTH * tick.at.clamp(0.0, 1.0);
        let anchor = match tick.at {
            at if at <= 0.05 => "start",
            at if at >= 0.95 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{BASELINE:.1}" y2="{:.1}" stroke="#999" stroke-width="1"/><text x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"##,
            BASELINE + 3.0,
            HEIGHT - 4.0,
            escape(&tick.label),
        );
    }
    svg.push_str(body);
    if let Some(note) = empty {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" data-empty="">{}</text>"#,
            LEFT + PLOT_WIDTH / 2.0,
            TOP + PLOT_HEIGHT / 2.0,
            escape(note),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    fn ticks() -> Vec<Tick> {
        vec![
            Tick {
                at: 0.0,
                label: "00:00".into(),
            },
            Tick {
                at: 0.5,
                label: "12:00".into(),
            },
        ]
    }

    const KEYS: [Key<'static>; 2] = [
        Key {
            name: "done",
            color: "#2a9d8f",
        },
        Key {
            name: "dead",
            color: "#d62828",
        },
    ];

    #[test]
    fn bars_stack_their_values_on_a_round_axis() {
        let data = [
            Bar {
                title: "first".into(),
                values: vec![3, 1],
            },
            Bar {
                title: "second".into(),
                values: vec![0, 0],
            },
            Bar {
                title: "third".into(),
                values: vec![7, 0],
            },
        ];
        let svg = bars(&BarChart {
            id: "events",
            title: "Events",
            keys: &KEYS,
            bars: &data,
            x_ticks: &ticks(),
            empty: "nothing",
        });
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains(r#"data-chart="events""#));
        // Three segments: 3 done + 1 dead, nothing for the empty bar, 7 done.
        assert_eq!(count(&svg, "<rect "), 3, "{svg}");
        assert_eq!(count(&svg, r#"data-key="dead""#), 1);
        assert!(svg.contains("<title>first</title>") && !svg.contains("<title>second</title>"));
        // The axis runs to 8 in steps of 2, so 7 is 7/8 of the plot's height.
        for label in [">0<", ">2<", ">4<", ">6<", ">8<"] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        let seven = PLOT_HEIGHT * 7.0 / 8.0;
        assert!(svg.contains(&format!(r#"height="{seven:.1}""#)), "{svg}");
        assert!(svg.contains(">00:00<") && svg.contains(">12:00<"));
        assert!(!svg.contains("nothing"), "not empty");
    }

    #[test]
    fn no_data_draws_the_axes_and_says_so() {
        let data = [Bar {
            title: "only".into(),
            values: vec![0, 0],
        }];
        let empty_bars = bars(&BarChart {
            id: "events",
            title: "Events",
            keys: &KEYS,
            bars: &data,
            x_ticks: &ticks(),
            empty: "no events yet",
        });
        assert_eq!(count(&empty_bars, "<rect "), 0);
        assert!(empty_bars.contains(">no events yet</text>"), "{empty_bars}");
        assert!(empty_bars.contains(">0</text>") && empty_bars.contains(">00:00</text>"));

        let empty_line = line(&LineChart {
            id: "queue",
            title: "Queue",
            color: "#333",
            points: &[None; 10],
            limit: None,
            x_ticks: &[],
            empty: "no samples yet",
        });
        assert_eq!(count(&empty_line, "<polyline"), 0);
        assert!(empty_line.contains(">no samples yet</text>"));
        assert!(bars(&BarChart {
            id: "none",
            title: "No bars",
            keys: &KEYS,
            bars: &[],
            x_ticks: &[],
            empty: "nothing at all",
        })
        .contains("nothing at all"));
    }

    #[test]
    fn a_line_breaks_at_gaps_and_shows_its_limit() {
        let points = [
            Some(1),
            Some(4),
            None,
            Some(2),
            None,
            None,
            Some(0),
            Some(3),
        ];
        let svg = line(&LineChart {
            id: "api-notion",
            title: "Notion",
            color: "#1d4ed8",
            points: &points,
            limit: Some((180, "budget 180/min")),
            x_ticks: &ticks(),
            empty: "unused",
        });
        assert_eq!(
            count(&svg, "<polyline"),
            3,
            "three runs between the gaps: {svg}"
        );
        assert_eq!(count(&svg, "<circle"), 0, "every run is wide enough to see");
        assert!(svg.contains(r#"data-limit="180""#) && svg.contains(">budget 180/min</text>"));
        // The scale reaches the budget even though the line stays far below it.
        assert!(svg.contains(">200</text>"), "{svg}");
        assert!(!svg.contains("unused"));
        // A lone point is drawn across its own slot, so it is visible.
        let step = PLOT_WIDTH / points.len() as f64;
        let lone = Scale::up_to(180).y(2);
        assert!(
            svg.contains(&format!(
                "{:.1},{lone:.1} {:.1},{lone:.1}\"",
                LEFT + 3.0 * step,
                LEFT + 4.0 * step
            )),
            "{svg}"
        );
    }

    #[test]
    fn a_flat_day_is_one_step() {
        let mut points = vec![Some(0); 1440];
        points[700] = Some(5);
        let svg = line(&LineChart {
            id: "api-s3",
            title: "S3",
            color: "#1d4ed8",
            points: &points,
            limit: None,
            x_ticks: &[],
            empty: "",
        });
        let polyline = svg.split("<polyline points=\"").nth(1).unwrap();
        let vertices = polyline.split('"').next().unwrap().split(' ').count();
        assert_eq!(
            vertices, 6,
            "flat, up for one minute, flat again: {polyline}"
        );
        assert!(svg.len() < 2_000, "{} bytes", svg.len());
        let mut lone = vec![None; 1440];
        lone[1439] = Some(2);
        let svg = line(&LineChart {
            id: "queue",
            title: "Queue",
            color: "#e07a1f",
            points: &lone,
            limit: None,
            x_ticks: &[],
            empty: "",
        });
        assert_eq!(
            count(&svg, "<circle"),
            1,
            "a single minute gets a dot: {svg}"
        );
    }

    #[test]
    fn text_is_escaped() {
        let data = [Bar {
            title: "<script>alert(1)</script>".into(),
            values: vec![1, 0],
        }];
        let svg = bars(&BarChart {
            id: "x\"y",
            title: "A & B",
            keys: &[Key {
                name: "<b>",
                color: "red\" onload=\"x",
            }],
            bars: &data,
            x_ticks: &[Tick {
                at: 0.5,
                label: "<i>".into(),
            }],
            empty: "",
        });
        assert!(!svg.contains("<script") && !svg.contains("<b>") && !svg.contains("<i>"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains(r#"data-chart="x&quot;y""#) && svg.contains("A &amp; B"));
        assert!(svg.contains(r#"fill="red&quot; onload=&quot;x""#), "{svg}");
    }

    #[test]
    fn the_axis_is_round() {
        let axis = |highest| {
            let scale = Scale::up_to(highest);
            (scale.step, scale.top)
        };
        assert_eq!(axis(0), (1, 1));
        assert_eq!(axis(3), (1, 3));
        assert_eq!(axis(7), (2, 8));
        assert_eq!(axis(180), (50, 200));
        assert_eq!(axis(600), (200, 600));
        assert_eq!(axis(1234), (500, 1500));
        assert_eq!(short(20_000), "20k");
        assert_eq!(short(1500), "1500");
    }
}
