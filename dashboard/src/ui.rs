//! Building blocks of the pages: the layout, notices, form fields, pagers, numbers and
//! times for people, and bar charts drawn as SVG on the server.

use cloudsync_service::control::overview::UsageHour;
use leptos::prelude::*;

use crate::admin::Admin;

/// Renders a whole document.
pub fn document(view: impl IntoView + 'static) -> String {
    let owner = Owner::new();
    let html = owner.with(|| view.to_html());
    format!("<!DOCTYPE html>{html}")
}

/// A link in the breadcrumb trail.
#[derive(Clone, Debug)]
pub struct Crumb {
    /// Text.
    pub label: String,
    /// Target.
    pub href: String,
}

/// Breadcrumbs from `(label, href)` pairs.
pub fn crumbs(items: &[(&str, String)]) -> Vec<Crumb> {
    items.iter().map(|(l, h)| Crumb { label: (*l).to_string(), href: h.clone() }).collect()
}

/// The frame of every page: header with navigation and sign-out, breadcrumbs, title.
#[component]
pub fn Layout(
    /// Page title (also the `h1`).
    title: String,
    /// The signed-in user, if any.
    admin: Option<Admin>,
    /// Where the page sits.
    #[prop(optional)]
    crumbs: Vec<Crumb>,
    /// A notice to show above the content.
    #[prop(optional_no_strip)]
    notice: Option<String>,
    /// The page.
    children: Children,
) -> impl IntoView {
    let nav = admin.clone().map(|a| {
        let tenants = a.is_operator().then(|| view! { <li><a href="/admin/tenants">"Tenants"</a></li> });
        let own = a.tenant().map(|t| view! { <li><a href=format!("/admin/tenants/{t}")>"My tenant"</a></li> });
        view! {
            <nav aria-label="Main">
                <ul>
                    <li><a href="/admin">"Overview"</a></li>
                    {tenants}
                    {own}
                    <li><a href="/docs">"API docs"</a></li>
                </ul>
            </nav>
            <form method="post" action="/admin/logout" class="signout">
                <input type="hidden" name="csrf" value=a.csrf.clone()/>
                <span class="who">{a.label.clone()}</span>
                <button type="submit">"Sign out"</button>
            </form>
        }
    });
    let trail = (!crumbs.is_empty()).then(|| {
        view! {
            <nav aria-label="Breadcrumb" class="crumbs">
                <ol>
                    {crumbs
                        .into_iter()
                        .map(|c| view! { <li><a href=c.href>{c.label}</a></li> })
                        .collect_view()}
                </ol>
            </nav>
        }
    });
    let notice = notice.map(|n| view! { <p class="notice" role="status">{n}</p> });
    view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>{format!("{title} · CloudSync admin")}</title>
                <link rel="stylesheet" href="/admin/static/app.css"/>
            </head>
            <body>
                <a class="skip" href="#main">"Skip to content"</a>
                <header class="top">
                    <a class="brand" href="/admin">"CloudSync admin"</a>
                    {nav}
                </header>
                {trail}
                <main id="main" tabindex="-1">
                    <h1>{title}</h1>
                    {notice}
                    {children()}
                </main>
            </body>
        </html>
    }
}

/// The hidden CSRF field every form carries.
#[component]
pub fn Csrf(
    /// The session's token.
    token: String,
) -> impl IntoView {
    view! { <input type="hidden" name="csrf" value=token/> }
}

/// A labelled text input with its validation message.
#[component]
pub fn TextField(
    /// Field name (and id).
    name: &'static str,
    /// Label text.
    #[prop(into)]
    label: String,
    /// Current value.
    #[prop(optional)]
    value: String,
    /// Validation message.
    #[prop(optional_no_strip)]
    error: Option<String>,
    /// Help text.
    #[prop(optional_no_strip)]
    hint: Option<&'static str>,
    /// Whether it must be filled.
    #[prop(optional)]
    required: bool,
    /// Input type (default text).
    #[prop(optional_no_strip)]
    kind: Option<&'static str>,
    /// Element id, when two forms of a page share a field name (default `f-<name>`).
    #[prop(optional_no_strip)]
    id: Option<&'static str>,
) -> impl IntoView {
    let id = id.map_or_else(|| format!("f-{name}"), str::to_string);
    let err_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described = match (&error, hint) {
        (Some(_), Some(_)) => Some(format!("{err_id} {hint_id}")),
        (Some(_), None) => Some(err_id.clone()),
        (None, Some(_)) => Some(hint_id.clone()),
        (None, None) => None,
    };
    let invalid = error.is_some().then_some("true");
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <input
                type=kind.unwrap_or("text")
                id=id
                name=name
                value=value
                required=required
                aria-invalid=invalid
                aria-describedby=described
            />
            {hint.map(|h| view! { <p class="hint" id=hint_id>{h}</p> })}
            {error.map(|e| view! { <p class="error" id=err_id>{e}</p> })}
        </div>
    }
}

/// A "next page" link when there is one.
#[component]
pub fn Pager(
    /// The page's path (with any query it needs, ending in `?` or `&`).
    base: String,
    /// Query parameter carrying the cursor.
    param: &'static str,
    /// The next cursor, if more items follow.
    next: Option<String>,
) -> impl IntoView {
    next.map(|c| {
        view! { <p class="pager"><a href=format!("{base}{param}={c}")>"Next page →"</a></p> }
    })
}

/// An empty-state paragraph.
#[component]
pub fn Empty(
    /// What to say.
    text: &'static str,
) -> impl IntoView {
    view! { <p class="empty">{text}</p> }
}

/// A Unix-ms time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return "-".into();
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&fmt).unwrap_or_else(|_| "-".into())
}

/// An optional time.
pub fn when_opt(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), when)
}

/// A duration in ms as a short human text (`45 s`, `3 min`, `2 h`, `5 d`).
pub fn ago(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        ..=59 => format!("{} s", s.max(0)),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A byte count with a binary unit.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.unsigned_abs();
    let mut unit = 0;
    let mut frac = 0;
    while v >= 1024 && unit + 1 < UNITS.len() {
        frac = (v % 1024) * 10 / 1024;
        v /= 1024;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v}.{frac} {}", UNITS[unit])
    }
}

/// A count with thousands separators.
pub fn count(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// How a chart's values read.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// Plain counts.
    Count,
    /// Bytes.
    Bytes,
}

impl Unit {
    fn fmt(self, v: i64) -> String {
        match self {
            Unit::Count => count(v),
            Unit::Bytes => bytes(v),
        }
    }
}

/// One series of a bar chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: &'static str,
    /// CSS class giving its colour.
    pub class: &'static str,
    /// One value per hour.
    pub values: Vec<i64>,
}

/// The series of a usage chart: two counters of each hour.
pub fn usage_series(
    hours: &[UsageHour],
    a: (&'static str, fn(&UsageHour) -> i64),
    b: (&'static str, fn(&UsageHour) -> i64),
) -> Vec<Series> {
    vec![
        Series { name: a.0, class: "s1", values: hours.iter().map(a.1).collect() },
        Series { name: b.0, class: "s2", values: hours.iter().map(b.1).collect() },
    ]
}

const W: i64 = 720;
const H: i64 = 180;
const LEFT: i64 = 64;
const BOTTOM: i64 = 22;
const TOP: i64 = 8;

/// A grouped bar chart of hourly values, drawn on the server; the same numbers follow
/// in a table for screen readers and for copying.
#[component]
pub fn BarChart(
    /// Heading of the chart.
    title: &'static str,
    /// How values read.
    unit: Unit,
    /// Start of each hour (Unix ms).
    hours: Vec<i64>,
    /// The series.
    series: Vec<Series>,
) -> impl IntoView {
    let n = i64::try_from(hours.len()).unwrap_or(1).max(1);
    let k = i64::try_from(series.len()).unwrap_or(1).max(1);
    let max = series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0).max(1);
    let plot_w = W - LEFT - 4;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n;
    let bar = ((slot * 8 / 10) / k).max(1);
    let totals: Vec<String> =
        series.iter().map(|s| format!("{} {}", s.name, unit.fmt(s.values.iter().sum()))).collect();
    let label = format!("{title}, last {n} hours: {}", totals.join(", "));
    let grid = [0, max / 2, max].into_iter().map(|v| {
        let y = TOP + plot_h - v * plot_h / max;
        view! {
            <line x1=LEFT.to_string() x2=(W - 4).to_string() y1=y.to_string() y2=y.to_string() class="grid"/>
            <text x=(LEFT - 6).to_string() y=(y + 4).to_string() class="ylabel">{unit.fmt(v)}</text>
        }
    });
    let step = (n / 6).max(1);
    let xlabels = hours.iter().enumerate().filter(|(i, _)| i64::try_from(*i).unwrap_or(0) % step == 0).map(|(i, h)| {
        let x = LEFT + i64::try_from(i).unwrap_or(0) * slot;
        let text = when(*h).get(11..16).unwrap_or("").to_string();
        view! { <text x=x.to_string() y=(H - 6).to_string() class="xlabel">{text}</text> }
    });
    let bars = series.iter().enumerate().flat_map(|(si, s)| {
        let class = s.class;
        s.values
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(move |(i, v)| {
                let h = (v * plot_h / max).max(1);
                let x = LEFT + i64::try_from(i).unwrap_or(0) * slot + slot / 10 + i64::try_from(si).unwrap_or(0) * bar;
                view! {
                    <rect
                        x=x.to_string()
                        y=(TOP + plot_h - h).to_string()
                        width=bar.to_string()
                        height=h.to_string()
                        class=class
                    />
                }
            })
            .collect::<Vec<_>>()
    });
    let bars: Vec<_> = bars.collect();
    let legend = series
        .iter()
        .map(|s| view! { <li><span class=format!("swatch {}", s.class)></span>{s.name}</li> })
        .collect_view();
    let head = series.iter().map(|s| view! { <th scope="col">{s.name}</th> }).collect_view();
    let rows = hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let cells = series.iter().map(|s| view! { <td>{unit.fmt(s.values.get(i).copied().unwrap_or(0))}</td> });
            view! { <tr><th scope="row">{when(*h)}</th>{cells.collect_view()}</tr> }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>{title}</figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=label.clone() preserveAspectRatio="none">
                <title>{label.clone()}</title>
                {grid.collect_view()}
                {bars}
                {xlabels.collect_view()}
            </svg>
            <ul class="legend">{legend}</ul>
            <details>
                <summary>"Data"</summary>
                <table>
                    <thead><tr><th scope="col">"Hour"</th>{head}</tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </details>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_for_people() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(12), "12");
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(ago(90_000), "1 min");
        assert_eq!(ago(7_200_000), "2 h");
    }

    #[test]
    fn charts_scale_to_the_largest_value_and_list_their_data() {
        let html = document(view! {
            <BarChart
                title="Traffic"
                unit=Unit::Count
                hours=vec![0, 3_600_000]
                series=vec![Series { name: "in", class: "s1", values: vec![5, 10] }]
            />
        });
        // The largest bar fills the plot; zero values draw nothing.
        assert!(html.contains(&format!(r#"height="{}""#, H - TOP - BOTTOM)), "{html}");
        assert!(html.contains("Traffic, last 2 hours: in 15"), "{html}");
        assert!(html.contains("<td>10</td>"), "{html}");
    }
}
