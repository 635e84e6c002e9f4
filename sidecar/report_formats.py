"""`sidecar report` as CSV, JSON or HTML (the table format is rich's, in the CLI). Same sections, same
figures; HTML is one self-contained page (no script, nothing loaded from elsewhere)."""

from __future__ import annotations

import csv
import io
import json
from html import escape

from sidecar.reports import Report


def _period(report: Report) -> str:
    return f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"


def as_csv(report: Report) -> str:
    """One block per question: a `# question` line, the header, the rows, a blank line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for section in report.sections:
        writer.writerow([f"# {section.question}"])
        writer.writerow(section.columns)
        writer.writerows(section.rows)
        writer.writerow([])
    return buffer.getvalue()


def as_json(report: Report) -> str:
    return json.dumps({
        "from": report.start.isoformat(), "to": report.end.isoformat(), "as_of": report.now.isoformat(),
        "sections": [{"key": s.key, "question": s.question, "how": s.how,
                      "rows": [dict(zip(s.columns, row, strict=True)) for row in s.rows]} for s in report.sections],
    }, indent=1, default=str)


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
          "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}"
          "p.how{color:#666;font-size:.9em}")


def as_html(report: Report) -> str:
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>Lead SLA report</title>"
             f"<style>{STYLE}</style><h1>Lead SLA report</h1><p>{escape(_period(report))}</p>"]
    for section in report.sections:
        parts.append(f"<h2>{escape(section.question)}</h2>")
        if not section.rows:
            parts.append("<p>none</p>")
        else:
            head = "".join(f"<th>{escape(c)}</th>" for c in section.columns)
            body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
                           for row in section.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        parts.append(f"<p class=how>{escape(section.how)}</p>")
    return "".join(parts) + "</html>\n"
